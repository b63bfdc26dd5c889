// Elementwise arithmetic and the reductions a training step needs: add / sub / mul, scale, axpy
// (gradient accumulation), bias_add with its gradient sum_rows, and the full sum and sum of squares
// (loss averaging, the global gradient L2 norm). Outputs come first, the CUDA stream last.
// defines: add, sub, mul, scale, axpy, bias_add, sum_rows, sum, sum_squares (cpu:: for float,
//          double and bfloat16; cuda:: for float, and bfloat16 for the elementwise ones) and the
//          CUDA workspace queries sum_rows_workspace_floats, sum_workspace_floats. bfloat16 is
//          computed in float32 and rounded to nearest even once on store.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/common/bfloat16.h"
#include "kernels/common/stream.h"

namespace mp::kernels::cpu {
// out[i] = a[i] + b[i], a[i] - b[i], a[i] * b[i] for i < n.
template <typename T> void add(T* out, const T* a, const T* b, int64_t n);
template <typename T> void sub(T* out, const T* a, const T* b, int64_t n);
template <typename T> void mul(T* out, const T* a, const T* b, int64_t n);
// out[i] = s * x[i].
template <typename T> void scale(T* out, const T* x, int64_t n, double s);
// y[i] += alpha * x[i], in place.
template <typename T> void axpy(T* y, const T* x, int64_t n, double alpha);
// out[r][c] = x[r][c] + bias[c] for a rows x cols matrix.
template <typename T> void bias_add(T* out, const T* x, const T* bias, int64_t rows, int64_t cols);
// out[c] = sum over r of x[r][c] (accumulated in double).
template <typename T> void sum_rows(T* out, const T* x, int64_t rows, int64_t cols);
// out[0] = sum of x[i]; out[0] = sum of x[i]^2 (accumulated in double).
template <typename T> void sum(T* out, const T* x, int64_t n);
template <typename T> void sum_squares(T* out, const T* x, int64_t n);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
void add(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream);
void sub(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream);
void mul(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream);
void scale(float* out, const float* x, int64_t n, double s, cudaStream_t stream);
void axpy(float* y, const float* x, int64_t n, double alpha, cudaStream_t stream);
void bias_add(float* out, const float* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);
void add(bfloat16* out, const bfloat16* a, const bfloat16* b, int64_t n, cudaStream_t stream);
void sub(bfloat16* out, const bfloat16* a, const bfloat16* b, int64_t n, cudaStream_t stream);
void mul(bfloat16* out, const bfloat16* a, const bfloat16* b, int64_t n, cudaStream_t stream);
void scale(bfloat16* out, const bfloat16* x, int64_t n, double s, cudaStream_t stream);
void axpy(bfloat16* y, const bfloat16* x, int64_t n, double alpha, cudaStream_t stream);
void bias_add(bfloat16* out, const bfloat16* x, const bfloat16* bias, int64_t rows, int64_t cols, cudaStream_t stream);
// out[i] = x[i] converted: float32 -> bfloat16 rounds to nearest even; bfloat16 -> float32 is exact.
void convert(bfloat16* out, const float* x, int64_t n, cudaStream_t stream);
void convert(float* out, const bfloat16* x, int64_t n, cudaStream_t stream);

// The reductions are deterministic: a fixed-shape two-pass tree whose partials go to a
// caller-provided `workspace` of at least <name>_workspace_floats(...) floats (nullptr is
// fine when that is 0). Neither query depends on the device, so results are bitwise
// reproducible run to run. `out` is device memory.
size_t sum_rows_workspace_floats(int64_t rows, int64_t cols);
void sum_rows(float* out, const float* x, int64_t rows, int64_t cols, float* workspace, cudaStream_t stream);
size_t sum_workspace_floats(int64_t n);  // for both sum and sum_squares
void sum(float* out, const float* x, int64_t n, float* workspace, cudaStream_t stream);
void sum_squares(float* out, const float* x, int64_t n, float* workspace, cudaStream_t stream);
// Multi-tensor (one launch per 192 tensors): out[0] = the sum over every tensor of the sum of its
// squares (float partials per 64k-element chunk, added in double), and every tensor scaled by s in
// place (bitwise as `scale` on each).
size_t sum_squares_multi_tensor_workspace_floats(const int64_t* sizes, int64_t count);
void sum_squares_multi_tensor(float* out, const float* const* tensors, const int64_t* sizes, int64_t count,
                              float* workspace, cudaStream_t stream);
void scale_multi_tensor(float* const* tensors, const int64_t* sizes, int64_t count, double s, cudaStream_t stream);
}  // namespace mp::kernels::cuda
