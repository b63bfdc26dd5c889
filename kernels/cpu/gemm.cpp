// CPU GEMM: the plain triple-loop reference (double accumulation) that every other GEMM is
// tested against, and the fast path through OpenBLAS's cblas_sgemm / cblas_dgemm when the build
// found OpenBLAS (MP_OPENBLAS=1); without it the reference is the CPU GEMM.
#include <climits>
#include <vector>

#if MP_OPENBLAS
#include <cblas.h>
#endif

#include "kernels/common/bfloat16.h"
#include "base/error.h"
#include "kernels/gemm.h"

namespace mp::kernels::cpu {

namespace {

// Element (row, col) of op(X), X stored row-major with row stride ld.
template <typename T>
double op_element(const T* x, int64_t ld, bool trans, int64_t row, int64_t col) {
    return trans ? static_cast<double>(x[col * ld + row]) : static_cast<double>(x[row * ld + col]);
}

// Sizes must be non-negative and each row stride must cover its matrix's columns as stored;
// BLAS would otherwise print a complaint and return without computing anything.
void check_gemm_arguments(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                          int64_t ldc) {
    MP_REQUIRE(m >= 0 && n >= 0 && k >= 0, "gemm: negative size m=", m, " n=", n, " k=", k);
    const int64_t a_cols = trans_a ? m : k;
    const int64_t b_cols = trans_b ? k : n;
    MP_REQUIRE(lda >= a_cols, "gemm: lda=", lda, " is less than the ", a_cols, " columns of A as stored",
               trans_a ? " (k x m, trans_a)" : " (m x k)");
    MP_REQUIRE(ldb >= b_cols, "gemm: ldb=", ldb, " is less than the ", b_cols, " columns of B as stored",
               trans_b ? " (n x k, trans_b)" : " (k x n)");
    MP_REQUIRE(ldc >= n, "gemm: ldc=", ldc, " is less than the ", n, " columns of C (m x n)");
}

#if MP_OPENBLAS
// OpenBLAS takes sizes as int (blasint in its LP64 build).
int blas_int(int64_t value, const char* name) {
    MP_REQUIRE(value <= INT_MAX, "gemm: ", name, "=", value, " exceeds the int range of the BLAS interface");
    return static_cast<int>(value);
}

CBLAS_TRANSPOSE blas_op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, blas_op(trans_a), blas_op(trans_b), blas_int(m, "m"), blas_int(n, "n"),
                blas_int(k, "k"), alpha, a, blas_int(lda, "lda"), b, blas_int(ldb, "ldb"), beta, c,
                blas_int(ldc, "ldc"));
}

void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
               int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
    cblas_dgemm(CblasRowMajor, blas_op(trans_a), blas_op(trans_b), blas_int(m, "m"), blas_int(n, "n"),
                blas_int(k, "k"), alpha, a, blas_int(lda, "lda"), b, blas_int(ldb, "ldb"), beta, c,
                blas_int(ldc, "ldc"));
}
#endif

}  // namespace

template <typename T>
void gemm_reference(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                    const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
#pragma omp parallel for
    for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) {
            double dot = 0.0;
            for (int64_t p = 0; p < k; ++p)
                dot += op_element(a, lda, trans_a, i, p) * op_element(b, ldb, trans_b, p, j);
            // beta == 0 must not read C: 0 * NaN would be NaN.
            const double previous = beta == T(0) ? 0.0 : static_cast<double>(beta) * c[i * ldc + j];
            c[i * ldc + j] = static_cast<T>(static_cast<double>(alpha) * dot + previous);
        }
    }
}

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc, bool allow_tf32) {
    (void)allow_tf32;  // the CPU is always exact
    check_gemm_arguments(trans_a, trans_b, m, n, k, lda, ldb, ldc);
#if MP_OPENBLAS
    // BLAS rejects a row stride of 0, which an empty operand has; then the loops are free anyway.
    if (m == 0 || n == 0 || k == 0) {
        gemm_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
    gemm_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

// A plain loop: OpenBLAS already spreads each product over its own threads.
template <typename T>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                          int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
                          int64_t ldc, int64_t stride_c, int64_t batch, bool allow_tf32) {
    MP_REQUIRE(batch >= 0, "gemm_strided_batched: negative batch ", batch);
    for (int64_t i = 0; i < batch; ++i)
        gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c,
             ldc, allow_tf32);
}

namespace {

// The rows x ld block of a stored matrix, widened to float32.
std::vector<float> widened(const bfloat16* x, int64_t rows, int64_t ld) {
    std::vector<float> out(static_cast<size_t>(rows * ld));
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(x[i]);
    return out;
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const bfloat16* a, int64_t lda,
          const bfloat16* b, int64_t ldb, float beta, bfloat16* c, int64_t ldc, bool allow_tf32) {
    check_gemm_arguments(trans_a, trans_b, m, n, k, lda, ldb, ldc);
    const std::vector<float> a_wide = widened(a, trans_a ? k : m, lda), b_wide = widened(b, trans_b ? n : k, ldb);
    std::vector<float> c_wide(static_cast<size_t>(m * ldc), 0.0f);
    if (beta != 0.0f)  // beta == 0 must not read C (it may hold NaN)
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) c_wide[i * ldc + j] = static_cast<float>(c[i * ldc + j]);
    gemm<float>(trans_a, trans_b, m, n, k, alpha, a_wide.data(), lda, b_wide.data(), ldb, beta, c_wide.data(), ldc,
                allow_tf32);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = bfloat16(c_wide[i * ldc + j]);
}

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const bfloat16* a, int64_t lda,
          const bfloat16* b, int64_t ldb, float beta, float* c, int64_t ldc, bool allow_tf32) {
    check_gemm_arguments(trans_a, trans_b, m, n, k, lda, ldb, ldc);
    const std::vector<float> a_wide = widened(a, trans_a ? k : m, lda), b_wide = widened(b, trans_b ? n : k, ldb);
    gemm<float>(trans_a, trans_b, m, n, k, alpha, a_wide.data(), lda, b_wide.data(), ldb, beta, c, ldc, allow_tf32);
}

void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const bfloat16* a,
                          int64_t lda, int64_t stride_a, const bfloat16* b, int64_t ldb, int64_t stride_b, float beta,
                          bfloat16* c, int64_t ldc, int64_t stride_c, int64_t batch, bool allow_tf32) {
    MP_REQUIRE(batch >= 0, "gemm_strided_batched: negative batch ", batch);
    for (int64_t i = 0; i < batch; ++i)
        gemm(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta, c + i * stride_c,
             ldc, allow_tf32);
}

template void gemm_reference<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                                    int64_t, float, float*, int64_t);
template void gemm_reference<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                                     const double*, int64_t, double, double*, int64_t);
template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                          float, float*, int64_t, bool);
template void gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                           int64_t, double, double*, int64_t, bool);
template void gemm_strided_batched<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, int64_t,
                                          const float*, int64_t, int64_t, float, float*, int64_t, int64_t, int64_t,
                                          bool);
template void gemm_strided_batched<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                                           int64_t, const double*, int64_t, int64_t, double, double*, int64_t,
                                           int64_t, int64_t, bool);

}  // namespace mp::kernels::cpu
