// Softmax over the last dimension of a (rows, cols) matrix, forward and backward, plus the
// causal-masked variant for attention scores: rows come in (seq_len, seq_len) blocks, row i of
// a block keeps columns j <= i (masked entries of y are exactly 0), and logits are scaled first.
// defines: softmax_forward, softmax_backward, causal_softmax_forward, causal_softmax_backward
//          (cpu:: for float, double and bfloat16; cuda:: for float), softmax_forward_reference,
//          causal_softmax_forward_reference (cpu::)
#pragma once

#include <cstdint>

#include "kernels/common/bfloat16.h"
#include "kernels/common/stream.h"

namespace mp::kernels::cpu {
// y[r, :] = softmax(x[r, :]).
template <typename T> void softmax_forward(const T* x, T* y, int64_t rows, int64_t cols);
// dx[r, j] = y[r, j] (dy[r, j] - sum_k dy[r, k] y[r, k]), y being the forward output.
template <typename T> void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t cols);
// rows = (number of blocks) * seq_len, each row seq_len long; row r is row i = r % seq_len of its
// block: y[r, j] = softmax_{k <= i}(scale * x[r, k]) at j for j <= i, and 0 for j > i.
template <typename T> void causal_softmax_forward(const T* x, T* y, int64_t rows, int64_t seq_len, double scale);
// dx[r, j] = scale * y[r, j] (dy[r, j] - sum_{k <= i} dy[r, k] y[r, k]) for j <= i, 0 for j > i.
template <typename T>
void causal_softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t seq_len, double scale);
// The forwards evaluate e^x with std::exp (the references, which double and bfloat16 run); float
// runs a fast path with a vectorized e^x and the same sums in the same order, equal to the
// reference within one float32 ulp (tests/test_softmax.cpp).
template <typename T> void softmax_forward_reference(const T* x, T* y, int64_t rows, int64_t cols);
template <typename T>
void causal_softmax_forward_reference(const T* x, T* y, int64_t rows, int64_t seq_len, double scale);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
// float32; outputs must not overlap the inputs. The causal kernels never read x, y or dy at a
// masked position (j > i).
void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols, cudaStream_t stream);
void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, cudaStream_t stream);
void causal_softmax_forward(const float* x, float* y, int64_t rows, int64_t seq_len, double scale,
                            cudaStream_t stream);
void causal_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t seq_len,
                             double scale, cudaStream_t stream);
}  // namespace mp::kernels::cuda
