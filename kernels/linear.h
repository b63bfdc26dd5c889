// A linear layer's GEMM with its epilogue fused: y = x·Wᵀ + b, optionally followed by the tanh
// GELU, with the bias (and GELU) applied to the float32 accumulator before the one rounding to
// the output type — as cuBLASLt's BIAS and GELU_AUX_BIAS epilogues do, so no separate bias or
// activation pass over the output. And the bias gradient Σ_rows dy, accumulated in place into a
// gradient of the master's dtype.
// defines: linear_forward (cpu:: for float, double, bfloat16; cuda:: for float, bfloat16),
//          bias_grad (cpu:: and cuda::; bfloat16 dy into a float32 or bfloat16 gradient)
#pragma once

#include <cstdint>

#include "kernels/common/bfloat16.h"
#include "kernels/common/stream.h"

namespace mp::kernels {
enum class LinearEpilogue {
    None,      // y = x·Wᵀ (bias ignored)
    Bias,      // y = x·Wᵀ + b
    BiasGelu,  // pre = x·Wᵀ + b (kept for the backward), y = GELU(pre)
};
}  // namespace mp::kernels

// Shapes: x (rows, in), W (out, in), b (out), y and pre (rows, out), all row-major, contiguous.
// BiasGelu writes pre (rounded to T once) and y = GELU(the float32 pre, before its rounding).
namespace mp::kernels::cpu {
// The reference: the float32 product (the gemm of kernels/gemm.h, float64 for double), then the
// epilogue per element in compute_t<T>: GELU as kernels/activations.h's CPU GELU evaluates it (for float32
// its vectorized fast path, tested against the std::tanh reference; double and bfloat16 the reference).
template <typename T>
void linear_forward(const T* x, const T* w, const T* b, T* y, T* pre, int64_t rows, int64_t in, int64_t out,
                    LinearEpilogue epilogue);
// grad[j] = (accumulate ? grad[j] : 0) + Σ_r dy[r][j]: the sum in double, rounded to float32 (double
// for double), added to the old value there and rounded to G once (float32 masters: exactly
// sum_rows followed by axpy).
template <typename T, typename G>
void bias_grad(const T* dy, G* grad, int64_t rows, int64_t cols, bool accumulate);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
// cuBLASLt with the epilogue, float32 compute (TF32 for float when allow_tf32). Returns false
// without doing anything when cuBLASLt has no algorithm for the shapes or alignments (the caller
// then composes GEMM, bias and GELU kernels).
template <typename T>
bool linear_forward(const T* x, const T* w, const T* b, T* y, T* pre, int64_t rows, int64_t in, int64_t out,
                    LinearEpilogue epilogue, bool allow_tf32, cudaStream_t stream);
// Deterministic two-pass column sums (a fixed chunking of the rows, by shape only), float32
// accumulation. `workspace` holds bias_grad_workspace_floats(rows, cols) floats (may be null when 0).
size_t bias_grad_workspace_floats(int64_t rows, int64_t cols);
template <typename T, typename G>
void bias_grad(const T* dy, G* grad, int64_t rows, int64_t cols, bool accumulate, float* workspace,
               cudaStream_t stream);
}  // namespace mp::kernels::cuda
