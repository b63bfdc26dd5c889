// LayerNorm over the last dimension as tensor ops: forward (returning the saved mean and rstd)
// and backward (dx, dgamma, dbeta). Shapes and devices checked; CPU or CUDA by x's device.
// defines: LayerNormResult, layernorm, LayerNormGrads, layernorm_backward
#pragma once

#include "tensor/tensor.h"

namespace mp::ops {

// y has x's shape; mean and rstd have x's leading dims (x's shape without the last dim) and x's
// dtype (float32; float64 on the CPU for gradient checks). rstd = 1 / sqrt(var + eps), biased var.
struct LayerNormResult {
    Tensor y, mean, rstd;
};
LayerNormResult layernorm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps = 1e-5);

// mean and rstd as returned by layernorm on the same x.
struct LayerNormGrads {
    Tensor dx, dgamma, dbeta;
};
LayerNormGrads layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                  const Tensor& rstd);

}  // namespace mp::ops
