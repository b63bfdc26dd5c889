// Dropout with a mask that is never stored: element i is kept when uniform01(seed, offset + i)
// >= p (counter-based, kernels/common/counter_rng.h), and kept values are scaled by 1/(1−p).
// The same call applied to dy gives dx, so backward regenerates the mask from (seed, offset).
// defines: dropout_apply (cpu:: for float, double, bfloat16; cuda:: for float, bfloat16)
#pragma once

#include <cstdint>

#include "kernels/common/bfloat16.h"

#include "kernels/common/stream.h"

namespace mp::kernels::cpu {
template <typename T> void dropout_apply(T* out, const T* in, int64_t n, double p, uint64_t seed, uint64_t offset);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
void dropout_apply(float* out, const float* in, int64_t n, double p, uint64_t seed, uint64_t offset, cudaStream_t stream);
void dropout_apply(bfloat16* out, const bfloat16* in, int64_t n, double p, uint64_t seed, uint64_t offset,
                   cudaStream_t stream);
}  // namespace mp::kernels::cuda
