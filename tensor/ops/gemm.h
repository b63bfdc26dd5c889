// Matrix products as tensor ops: matmul (an activation (B, T, C) times a weight, read as a
// (B*T, C) matrix), matmul_into (accumulating weight gradients in place) and bmm (attention's
// batched QK^T and AV). Float32 runs on CUDA with the precision of mp::matmul_precision().
#pragma once

#include "tensor/tensor.h"

namespace mp::ops {

// alpha * op(a) * op(b), op = transpose when the flag is set. Each operand is read as a matrix
// with rows = numel / last dim and cols = last dim (rank >= 1); op(a) is (M, K), op(b) is (K, N).
// The result is a's leading dims + (N) when a is not transposed and has rank > 2 (so (B, T, C)
// times (C, N) gives (B, T, N)), else (M, N).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false, double alpha = 1.0);

// out = alpha * op(a) * op(b) + beta * out, for an existing `out` that reads as an (M, N) matrix
// (rows = numel / last dim, last dim = N) and shares no storage with a or b. beta == 0 ignores
// out's old contents; beta == 1 accumulates (weight gradients over micro-batches). out has a's
// dtype, or is float32 for bfloat16 a and b (mixed precision: the float32 accumulator is added to
// out without rounding to bfloat16).
void matmul_into(Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, double alpha,
                 double beta);

// Batched product: a (..., M, K) and b (..., K, N) before their transposes, rank >= 3, with
// identical leading (batch) dims; returns (..., M, N) = alpha * op(a) * op(b) per batch entry.
Tensor bmm(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false, double alpha = 1.0);

}  // namespace mp::ops
