// Matrix multiply C = alpha * op(A) * op(B) + beta * C on row-major matrices (op = identity or
// transpose), single and strided-batched: every linear layer and both attention products run here.
// defines: gemm, gemm_strided_batched, gemm_reference (cpu:: for float, double; gemm and
//          gemm_strided_batched also for bfloat16; cuda:: for float and bfloat16); gemm with
//          bfloat16 operands into a float32 C (weight gradients accumulated into float32 masters);
//          blas_description (cpu::)
#pragma once

#include <cstdint>
#include <string>

#include "kernels/common/bfloat16.h"
#include "kernels/common/stream.h"

// Conventions shared by every function below:
//  - op(A) is m x k, op(B) is k x n, C is m x n. A is stored as m x k (k x m when trans_a), B as
//    k x n (n x k when trans_b), all row-major; lda, ldb, ldc are the row strides in elements of
//    the matrices as stored (>= their column counts, larger for padded rows).
//  - beta == 0 means C is write-only: its old contents are ignored, even NaN.
//  - Batched versions repeat the product `batch` times, matrix i starting at a + i * stride_a
//    (likewise b, c).
//  - allow_tf32 lets CUDA use TF32 tensor cores (inputs rounded to 10 mantissa bits); the CPU is
//    always exact and ignores it.

namespace mp::kernels::cpu {
// The readable reference: a triple loop accumulating each dot product in double, rounded once.
template <typename T>
void gemm_reference(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                    const T* b, int64_t ldb, T beta, T* c, int64_t ldc);
// OpenBLAS (cblas_sgemm / cblas_dgemm) when the build found it, else gemm_reference. Threaded over
// OpenMP's pool in blocks that depend on the shape only: the bits do not depend on the thread count.
template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc, bool allow_tf32);
template <typename T>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                          int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
                          int64_t ldc, int64_t stride_c, int64_t batch, bool allow_tf32);
// bfloat16 operands, as tensor cores take them: A and B widened to float32 (exactly), the product
// accumulated in float32 (the float32 gemm above), C rounded to nearest even once; alpha, beta
// and, when beta != 0, the old C in float32.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const bfloat16* a, int64_t lda,
          const bfloat16* b, int64_t ldb, float beta, bfloat16* c, int64_t ldc, bool allow_tf32);
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const bfloat16* a,
                          int64_t lda, int64_t stride_a, const bfloat16* b, int64_t ldb, int64_t stride_b, float beta,
                          bfloat16* c, int64_t ldc, int64_t stride_c, int64_t batch, bool allow_tf32);
// bfloat16 operands, float32 C: the product accumulated in float32 and added to beta * C without
// rounding to bfloat16 — a mixed-precision weight gradient accumulated in place in its master.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const bfloat16* a, int64_t lda,
          const bfloat16* b, int64_t ldb, float beta, float* c, int64_t ldc, bool allow_tf32);
// What runs the CPU products, for logs: "OpenBLAS Cooperlake" (the kernels OpenBLAS chose for this
// CPU, or OPENBLAS_CORETYPE), or the reference loops.
std::string blas_description();
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
// cuBLAS on `stream`, which must belong to the current device (as for every kernel launch). S is
// float (exact fp32, or TF32 tensor cores when allow_tf32) or bfloat16 (bf16 operands and C,
// float32 accumulation; allow_tf32 has no meaning there); alpha and beta are float32.
template <typename S>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const S* a, int64_t lda, const S* b,
          int64_t ldb, float beta, S* c, int64_t ldc, bool allow_tf32, cudaStream_t stream);
template <typename S>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const S* a,
                          int64_t lda, int64_t stride_a, const S* b, int64_t ldb, int64_t stride_b, float beta, S* c,
                          int64_t ldc, int64_t stride_c, int64_t batch, bool allow_tf32, cudaStream_t stream);
// bfloat16 operands, float32 C (cuBLAS: A/B CUDA_R_16BF, C CUDA_R_32F, float32 compute).
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const bfloat16* a, int64_t lda,
          const bfloat16* b, int64_t ldb, float beta, float* c, int64_t ldc, bool allow_tf32, cudaStream_t stream);
}  // namespace mp::kernels::cuda
