// Dropout op: applies the (seed, offset) mask to x; the same call on dy is the backward.
#pragma once

#include "tensor/tensor.h"

namespace mp::ops {

// out = x ⊙ mask / (1 − p), mask[i] = (uniform01(seed, offset + i) >= p). p in [0, 1).
Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset);

}  // namespace mp::ops
