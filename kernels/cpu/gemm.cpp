// CPU GEMM: the plain triple-loop reference (double accumulation) that every other GEMM is
// tested against, and the fast path through OpenBLAS's cblas_sgemm / cblas_dgemm when the build
// found OpenBLAS (MP_OPENBLAS=1); without it the reference is the CPU GEMM.
// Threads: one pool, OpenMP's. OpenBLAS runs single-threaded in whichever thread calls it (its own
// pthread pool, spinning in sched_yield, and OpenMP's took turns on the same cores). A
// large product is cut into blocks of C rows (or columns) whose sizes depend on the shape alone,
// never on the thread count, and the blocks are shared out over the threads: OpenBLAS's bits
// depend on how C is cut (its edge tiles round differently), so a fixed cut keeps them the same
// for any thread count. A batch of small products is shared out whole.
#include <omp.h>

#include <algorithm>
#include <climits>
#include <string>
#include <utility>
#include <vector>

#if MP_OPENBLAS
#include <cblas.h>
#endif

#include "base/error.h"
#include "kernels/common/bfloat16.h"
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
// OpenBLAS takes sizes as int (blasint in its LP64 build): every size checked before the first
// call, outside any parallel region (an exception must not leave one), so that blas_gemm, which
// runs inside them, only narrows values known to fit.
void check_blas_sizes(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
    const std::pair<int64_t, const char*> sizes[] = {{m, "m"}, {n, "n"}, {k, "k"}, {lda, "lda"}, {ldb, "ldb"},
                                                     {ldc, "ldc"}};
    for (const auto& [value, name] : sizes)
        MP_REQUIRE(value <= INT_MAX, "gemm: ", name, "=", value, " exceeds the int range of the BLAS interface");
}

CBLAS_TRANSPOSE blas_op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }

// Sizes checked by check_blas_sizes (a block's sizes are at most its whole product's).
void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
               const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, blas_op(trans_a), blas_op(trans_b), static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
                static_cast<int>(ldc));
}

void blas_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
               int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
    cblas_dgemm(CblasRowMajor, blas_op(trans_a), blas_op(trans_b), static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
                static_cast<int>(ldc));
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

// Products below this many multiply-adds are one OpenBLAS call on the calling thread: waking the
// pool costs ~10 µs, and OpenBLAS itself threads nothing below 2^18.
constexpr int64_t kMinSplitMultiplyAdds = int64_t(1) << 21;

#if MP_OPENBLAS
namespace {

// Once, before the first product (a function-local static: initialized once, thread-safely):
// OpenBLAS single-threaded, OpenMP's threads sharing the work out; returns the name of the
// kernels it chose for this CPU (OPENBLAS_CORETYPE overrides its choice). Called outside our
// parallel regions only (it may throw: the string).
//
// An OpenMP build of OpenBLAS (openblas_get_parallel() == 2) sets OpenMP's thread count to its own
// in openblas_set_num_threads, which would leave the whole process on one thread: the count is put
// back. OpenBLAS still runs each call on the calling thread alone: it threads a call only when its
// own count (blas_cpu_number, which nothing but openblas_set_num_threads changes while it is 1) is
// above 1 and the call is made outside a parallel region (num_cpu_avail in its common_thread.h), and
// ours are made either inside our regions or with that count at 1. The pthreads build's count is its
// own (no OpenMP to restore); the sequential build has none.
const std::string& openblas_configured() {
    static const std::string description = [] {
        const int openmp_threads = omp_get_max_threads();
        openblas_set_num_threads(1);
        if (openblas_get_parallel() == 2) omp_set_num_threads(openmp_threads);
        return str("OpenBLAS ", openblas_get_corename());
    }();
    return description;
}

// How C is cut: along its longer side (rows when m >= n), in blocks of 256 when that side has at
// least 1024 (an OpenBLAS call on 256 rows runs at ~95% of its speed on 2048), else of 64 (so a
// weight gradient's 128 to 512 rows still make an even number of blocks).
struct GemmBlocks {
    bool split_rows = true;
    int64_t extent = 0;  // the side that is cut
    int64_t block = 0;
    int64_t count = 1;
};

GemmBlocks gemm_blocks(int64_t m, int64_t n, int64_t k) {
    GemmBlocks blocks;
    blocks.split_rows = m >= n;
    blocks.extent = blocks.split_rows ? m : n;
    blocks.block = blocks.extent;
    if (m * n * k >= kMinSplitMultiplyAdds) blocks.block = blocks.extent >= 1024 ? 256 : 64;
    blocks.count = (blocks.extent + blocks.block - 1) / blocks.block;
    return blocks;
}

// OpenBLAS over the blocks of C, shared out over OpenMP's threads (serially inside a parallel
// region or with one thread: the same calls, so the same bits).
// Nothing here throws: the sizes are checked and OpenBLAS configured before (gemm_checked).
template <typename T>
void blas_gemm_blocked(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                       const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
    const GemmBlocks blocks = gemm_blocks(m, n, k);
    if (blocks.count == 1) {
        blas_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && omp_get_max_threads() > 1)
    for (int64_t index = 0; index < blocks.count; ++index) {
        const int64_t begin = index * blocks.block, size = std::min(blocks.block, blocks.extent - begin);
        if (blocks.split_rows) {  // rows begin.. of op(A) and of C
            blas_gemm(trans_a, trans_b, size, n, k, alpha, trans_a ? a + begin : a + begin * lda, lda, b, ldb, beta,
                      c + begin * ldc, ldc);
        } else {  // columns begin.. of op(B) and of C
            blas_gemm(trans_a, trans_b, m, size, k, alpha, a, lda, trans_b ? b + begin * ldb : b + begin, ldb, beta,
                      c + begin, ldc);
        }
    }
}

}  // namespace
#endif

namespace {

// Everything that can throw, done before any product (and so outside any parallel region): the
// arguments checked, OpenBLAS configured.
void prepare_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                  int64_t ldc) {
    check_gemm_arguments(trans_a, trans_b, m, n, k, lda, ldb, ldc);
#if MP_OPENBLAS
    check_blas_sizes(m, n, k, lda, ldb, ldc);
    openblas_configured();
#endif
}

// The product, after prepare_gemm: throws nothing, so it may run inside a parallel region.
template <typename T>
void gemm_checked(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                  const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
#if MP_OPENBLAS
    // BLAS rejects a row stride of 0, which an empty operand has; then the loops are free anyway.
    if (m == 0 || n == 0 || k == 0) {
        gemm_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    blas_gemm_blocked(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#else
    gemm_reference(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

}  // namespace

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc, bool allow_tf32) {
    (void)allow_tf32;  // the CPU is always exact
    prepare_gemm(trans_a, trans_b, m, n, k, lda, ldb, ldc);
    gemm_checked(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

std::string blas_description() {
#if MP_OPENBLAS
    return openblas_configured();
#else
    return "reference loops (built without OpenBLAS)";
#endif
}

// The products spread over the OpenMP threads whole (each single-threaded inside): attention's
// are many and small, too small to split.
template <typename T>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a,
                          int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T beta, T* c,
                          int64_t ldc, int64_t stride_c, int64_t batch, bool allow_tf32) {
    (void)allow_tf32;  // the CPU is always exact
    MP_REQUIRE(batch >= 0, "gemm_strided_batched: negative batch ", batch);
    // Prepared here, so that no product throws inside the parallel loop (every one has these sizes).
    prepare_gemm(trans_a, trans_b, m, n, k, lda, ldb, ldc);
#pragma omp parallel for schedule(static) if (batch > 1 && batch * m * n * k >= kMinSplitMultiplyAdds / 8)
    for (int64_t i = 0; i < batch; ++i)
        gemm_checked(trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
                     c + i * stride_c, ldc);
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
