// Linear layers as tensor ops: the forward with its epilogue fused into the GEMM (bias; bias +
// GELU, returning the pre-activation the backward needs), and the weight and bias gradients
// accumulated in place into existing gradients — mixed precision: bfloat16 activations into
// float32 masters, never rounded to bfloat16 on the way.
#pragma once

#include <utility>

#include "tensor/tensor.h"

namespace mp::ops {

// x (..., in) · weightᵀ (out, in) + bias (out) -> (..., out); bias may be undefined. The bias is
// added to the float32 accumulator, one rounding to x's dtype (float32: bitwise matmul then
// bias_add). One dtype and device for all three.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// {GELU(x·Wᵀ + b), x·Wᵀ + b}: the output and the pre-activation, each rounded once from float32
// (the GELU of the unrounded pre-activation). float32: bitwise linear then gelu.
std::pair<Tensor, Tensor> linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias);

// grad (out, in) = (accumulate ? grad : 0) + dyᵀ · x over every row of dy (..., out) and
// x (..., in), in place. grad has dy's dtype, or float32 for bfloat16 dy and x.
void weight_grad_(Tensor& grad, const Tensor& dy, const Tensor& x, bool accumulate);

// grad (out) = (accumulate ? grad : 0) + the sum of dy (..., out) over every row, in place; the
// sum rounded once to grad's dtype (dy's, or float32 for bfloat16 dy) and then added.
void bias_grad_(Tensor& grad, const Tensor& dy, bool accumulate);

}  // namespace mp::ops
