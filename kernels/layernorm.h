// LayerNorm over the last dimension: forward (saving the per-row mean and rstd) and backward
// (dx, dgamma, dbeta). The same raw-pointer signatures on CPU (reference) and CUDA (fast path).
// defines: layernorm_forward, layernorm_backward (cpu:: for float, double, bfloat16 — whose mean
//          and rstd are float32; cuda:: for float and bfloat16),
//          cuda::layernorm_backward_workspace_floats
#pragma once

#include <cstdint>

#include "kernels/common/bfloat16.h"
#include "kernels/common/stream.h"

namespace mp::kernels::cpu {
// x, y: (rows, cols); gamma, beta: (cols); mean, rstd: (rows). rstd = 1 / sqrt(var + eps) with
// the biased variance (divide by cols), as PyTorch.
template <typename T>
void layernorm_forward(const T* x, const T* gamma, const T* beta, T* y, compute_t<T>* mean, compute_t<T>* rstd,
                       int64_t rows, int64_t cols, double eps);
// dy, x, dx: (rows, cols); gamma, dgamma, dbeta: (cols); mean, rstd: (rows) as saved by forward.
template <typename T>
void layernorm_backward(const T* dy, const T* x, const T* gamma, const compute_t<T>* mean, const compute_t<T>* rstd,
                        T* dx, T* dgamma, T* dbeta, int64_t rows, int64_t cols);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t rows, int64_t cols, double eps, cudaStream_t stream);
// Floats of scratch memory layernorm_backward needs for (rows, cols): the per-chunk partial sums
// of dgamma and dbeta, reduced in a fixed order so the result is the same on every run.
int64_t layernorm_backward_workspace_floats(int64_t rows, int64_t cols);
void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                        float* dx, float* dgamma, float* dbeta, float* workspace, int64_t rows, int64_t cols,
                        cudaStream_t stream);
// bfloat16 tensors, float32 mean and rstd (as the CPU reference); computed in float32, each
// output rounded once.
void layernorm_forward(const bfloat16* x, const bfloat16* gamma, const bfloat16* beta, bfloat16* y, float* mean,
                       float* rstd, int64_t rows, int64_t cols, double eps, cudaStream_t stream);
void layernorm_backward(const bfloat16* dy, const bfloat16* x, const bfloat16* gamma, const float* mean,
                        const float* rstd, bfloat16* dx, bfloat16* dgamma, bfloat16* dbeta, float* workspace,
                        int64_t rows, int64_t cols, cudaStream_t stream);
}  // namespace mp::kernels::cuda
