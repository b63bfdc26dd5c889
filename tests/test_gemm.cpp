// GEMM family tests: the double-accumulating reference against hand-computed products, OpenBLAS
// and cuBLAS (exact fp32 and TF32) against the reference over all transposes, non-round and
// padded shapes, the ops' shape rules ((B, T, C) read as (B*T, C), bmm batches) and their errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/gemm.h"
#include "tensor/device_context.h"
#include "tensor/ops/gemm.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_close;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::poisoned;
using mp::testing::random_tensor;

namespace {

// ---------------------------------------------------------------- problems and operands

// One GEMM problem: C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, every stored row
// padded with `pad` unused elements (so lda, ldb, ldc exceed the column counts when pad > 0).
struct GemmCase {
    bool trans_a = false;
    bool trans_b = false;
    int64_t m = 1;
    int64_t n = 1;
    int64_t k = 1;
    double alpha = 1.0;
    double beta = 0.0;
    int64_t pad = 0;
};

std::string describe(const GemmCase& g) {
    return str("gemm trans_a=", g.trans_a, " trans_b=", g.trans_b, " m=", g.m, " n=", g.n, " k=", g.k,
               " alpha=", g.alpha, " beta=", g.beta, " pad=", g.pad);
}

// A, B and C of a case as stored: A is (m, k) or (k, m) when transposed, B is (k, n) or (n, k),
// each with `pad` extra columns that the GEMM must neither read as data nor write.
struct GemmOperands {
    Tensor a, b, c;
    int64_t lda = 0, ldb = 0, ldc = 0;
};

// The stored shapes of A, B and C (padding included) and their row strides.
struct GemmLayout {
    Shape a_shape, b_shape, c_shape;
    int64_t lda = 0, ldb = 0, ldc = 0;
};

GemmLayout layout_of(const GemmCase& g) {
    GemmLayout layout;
    layout.lda = (g.trans_a ? g.m : g.k) + g.pad;
    layout.ldb = (g.trans_b ? g.k : g.n) + g.pad;
    layout.ldc = g.n + g.pad;
    layout.a_shape = {g.trans_a ? g.k : g.m, layout.lda};
    layout.b_shape = {g.trans_b ? g.n : g.k, layout.ldb};
    layout.c_shape = {g.m, layout.ldc};
    return layout;
}

GemmOperands random_operands(const GemmCase& g, DType dtype, uint64_t seed) {
    const GemmLayout layout = layout_of(g);
    GemmOperands x;
    x.a = random_tensor(layout.a_shape, seed, 1.0, dtype);
    x.b = random_tensor(layout.b_shape, seed + 1, 1.0, dtype);
    x.c = random_tensor(layout.c_shape, seed + 2, 1.0, dtype);
    x.lda = layout.lda, x.ldb = layout.ldb, x.ldc = layout.ldc;
    return x;
}

// `batch` random instances of a case's operands packed into flat tensors, matrix i of A at
// element i * stride_a (likewise B and C); each stride leaves a gap after its matrix.
struct BatchedOperands {
    Tensor a, b, c;
    int64_t stride_a = 0, stride_b = 0, stride_c = 0;
    int64_t batch = 0;
    GemmLayout layout;
};

BatchedOperands random_batched_operands(const GemmCase& g, int64_t batch, uint64_t seed) {
    BatchedOperands x;
    x.layout = layout_of(g);
    x.batch = batch;
    x.stride_a = shape_numel(x.layout.a_shape) + 5;
    x.stride_b = shape_numel(x.layout.b_shape) + 3;
    x.stride_c = shape_numel(x.layout.c_shape) + 1;
    x.a = random_tensor({batch * x.stride_a}, seed);
    x.b = random_tensor({batch * x.stride_b}, seed + 1);
    x.c = random_tensor({batch * x.stride_c}, seed + 2);
    return x;
}

// Matrix i of a batch, as views of the packed tensors.
GemmOperands batch_entry(const BatchedOperands& x, int64_t i) {
    GemmOperands entry;
    entry.a = x.a.slice(i * x.stride_a, i * x.stride_a + shape_numel(x.layout.a_shape)).reshape(x.layout.a_shape);
    entry.b = x.b.slice(i * x.stride_b, i * x.stride_b + shape_numel(x.layout.b_shape)).reshape(x.layout.b_shape);
    entry.c = x.c.slice(i * x.stride_c, i * x.stride_c + shape_numel(x.layout.c_shape)).reshape(x.layout.c_shape);
    entry.lda = x.layout.lda, entry.ldb = x.layout.ldb, entry.ldc = x.layout.ldc;
    return entry;
}

// The reference result in float64 (inputs converted exactly), on a copy of C.
Tensor reference_result(const GemmCase& g, const GemmOperands& x) {
    Tensor a = x.a.to(DType::Float64), b = x.b.to(DType::Float64), c = x.c.to(DType::Float64);
    kernels::cpu::gemm_reference<double>(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha, a.data<double>(), x.lda,
                                         b.data<double>(), x.ldb, g.beta, c.data<double>(), x.ldc);
    return c;
}

// The CPU gemm (OpenBLAS when built with it) on a copy of C.
template <typename T>
Tensor cpu_gemm(const GemmCase& g, const GemmOperands& x, bool allow_tf32 = false) {
    Tensor c = x.c.clone();
    kernels::cpu::gemm<T>(g.trans_a, g.trans_b, g.m, g.n, g.k, static_cast<T>(g.alpha), x.a.data<T>(), x.lda,
                          x.b.data<T>(), x.ldb, static_cast<T>(g.beta), c.data<T>(), x.ldc, allow_tf32);
    return c;
}

// ---------------------------------------------------------------- tolerances
//
// A float GEMM against the float64 reference. For one output element write the dot product's
// terms t_p = op(A)_ip * op(B)_pj, S = sum_p |t_p| and Q = sqrt(sum_p t_p^2); the checks use the
// largest S and Q over all outputs (computed in float64 below), and u is the unit roundoff.
//
// BLAS-style accumulation (OpenBLAS, cuBLAS fp32): each of the k multiply-adds rounds once, by at
// most u times a partial sum, itself at most S. Worst case these k errors align: k*u*S. With
// random data their signs are random, so they add like a random walk, ~sqrt(k)*u*S; we allow
// 4*sqrt(k)*u*S, plus 2u for rounding alpha*dot + beta*c itself, all scaled by the output's
// magnitude bound |alpha|*S + |beta|*max|c|. (Measured with OpenBLAS over the size sweep: the
// worst error is 0.1 to 0.5 sqrt(k)*u*S, as partial sums are much smaller than S.) The bound is
// still tight enough to matter: a missed or doubled term moves an output by ~|t_p| ~ 1, orders
// of magnitude more than it allows at our sizes (7e-4 at k = 257).
//
// TF32 (tensor cores): both inputs keep 10 explicit mantissa bits, a relative change of up to
// 2^-10 each (if truncated; half that if rounded), so each term is off by up to ~2^-9 relative.
// Truncation's bias (toward zero, mean ~2^-10 per term) shifts the dot product in proportion to
// itself: rtol = 5e-3 > 2^-9 covers it. The remaining per-term errors are independent, a random
// walk of spread ~2^-10 * Q / sqrt(6); atol = 5e-3 * |alpha| * Q is >= 12 of those spreads. (The
// brief's "sqrt(k) * max|a||b|" is the bound Q <= sqrt(k) * max|a| * max|b|; Q itself is tighter.)
struct Tolerance {
    double rtol = 0.0;
    double atol = 0.0;
};

struct GemmScales {
    double abs_sum = 0.0;          // max over outputs of S
    double root_square_sum = 0.0;  // max over outputs of Q
    double max_abs_c = 0.0;        // max |C| before the product (0 when beta == 0: C is not read)
};

Tensor map_to_double(const Tensor& t, const std::function<double(double)>& fn) {
    std::vector<double> values = mp::testing::to_doubles(t);
    for (double& v : values) v = fn(v);
    return Tensor::from_vector(values, t.shape());
}

double max_of(const Tensor& t) {
    std::vector<double> values = mp::testing::to_doubles(t);
    return values.empty() ? 0.0 : *std::max_element(values.begin(), values.end());
}

GemmScales gemm_scales(const GemmCase& g, const GemmOperands& x) {
    auto product_over = [&](const std::function<double(double)>& fn) {
        Tensor a = map_to_double(x.a, fn), b = map_to_double(x.b, fn);
        Tensor out = Tensor::zeros({g.m, g.n}, DType::Float64);
        kernels::cpu::gemm_reference<double>(g.trans_a, g.trans_b, g.m, g.n, g.k, 1.0, a.data<double>(), x.lda,
                                             b.data<double>(), x.ldb, 0.0, out.data<double>(), g.n);
        return max_of(out);
    };
    GemmScales scales;
    scales.abs_sum = product_over([](double v) { return std::fabs(v); });
    scales.root_square_sum = std::sqrt(product_over([](double v) { return v * v; }));
    if (g.beta != 0.0) scales.max_abs_c = max_of(map_to_double(x.c, [](double v) { return std::fabs(v); }));
    return scales;
}

// `unit_roundoff` is 2^-24 for float; a float64 GEMM against the float64 reference passes twice
// 2^-53, since both sides round.
Tolerance blas_tolerance(const GemmCase& g, const GemmScales& s, double unit_roundoff) {
    const double magnitude = std::fabs(g.alpha) * s.abs_sum + std::fabs(g.beta) * s.max_abs_c;
    return {0.0, (4.0 * std::sqrt(static_cast<double>(g.k)) + 2.0) * unit_roundoff * magnitude};
}

const double kFloatRoundoff = std::ldexp(1.0, -24);
const double kDoubleRoundoffBothSides = 2.0 * std::ldexp(1.0, -53);

template <typename T>
double roundoff_of() {
    return std::is_same<T, float>::value ? kFloatRoundoff : kDoubleRoundoffBothSides;
}

// The float64 reference of a whole batch, packed like x.c: a loop of reference GEMMs.
Tensor batched_reference(const GemmCase& g, const BatchedOperands& x) {
    Tensor a = x.a.to(DType::Float64), b = x.b.to(DType::Float64), c = x.c.to(DType::Float64);
    for (int64_t i = 0; i < x.batch; ++i)
        kernels::cpu::gemm_reference<double>(g.trans_a, g.trans_b, g.m, g.n, g.k, g.alpha,
                                             a.data<double>() + i * x.stride_a, x.layout.lda,
                                             b.data<double>() + i * x.stride_b, x.layout.ldb, g.beta,
                                             c.data<double>() + i * x.stride_c, x.layout.ldc);
    return c;
}

// The fp32 tolerance of the batch's worst matrix.
Tolerance batched_fp32_tolerance(const GemmCase& g, const BatchedOperands& x) {
    Tolerance worst;
    for (int64_t i = 0; i < x.batch; ++i)
        worst.atol = std::max(worst.atol, blas_tolerance(g, gemm_scales(g, batch_entry(x, i)), kFloatRoundoff).atol);
    return worst;
}

const int64_t kSizes[] = {1, 7, 33, 257};

std::vector<GemmCase> all_transposes(GemmCase g) {
    std::vector<GemmCase> cases;
    for (bool trans_a : {false, true}) {
        for (bool trans_b : {false, true}) {
            g.trans_a = trans_a;
            g.trans_b = trans_b;
            cases.push_back(g);
        }
    }
    return cases;
}

// Every (m, n, k) from kSizes, every transpose pair.
std::vector<GemmCase> size_sweep(double alpha, double beta) {
    std::vector<GemmCase> cases;
    for (int64_t m : kSizes)
        for (int64_t n : kSizes)
            for (int64_t k : kSizes) {
                GemmCase g;
                g.m = m, g.n = n, g.k = k, g.alpha = alpha, g.beta = beta;
                for (const GemmCase& t : all_transposes(g)) cases.push_back(t);
            }
    return cases;
}

// Integer values in [-3, 3]: every product and every partial sum of a few hundred of them is an
// exact float (and TF32) value, so GEMMs on them agree bit for bit whatever the summation order.
Tensor small_integers(const Shape& shape, uint64_t seed, DType dtype = DType::Float32) {
    std::vector<int32_t> ids = mp::testing::random_ids(shape, 7, seed).to_vector<int32_t>();
    std::vector<double> values(ids.begin(), ids.end());
    for (double& v : values) v -= 3.0;
    return Tensor::from_vector(values, shape).to(dtype);
}

// float64 reference for two tensors already read as 2-D (rows, cols) matrices.
Tensor reference_product(const Tensor& a, int64_t a_rows, int64_t a_cols, bool trans_a, const Tensor& b,
                         int64_t b_rows, int64_t b_cols, bool trans_b, double alpha) {
    const int64_t m = trans_a ? a_cols : a_rows, k = trans_a ? a_rows : a_cols, n = trans_b ? b_rows : b_cols;
    Tensor a64 = a.to(Device::cpu()).to(DType::Float64), b64 = b.to(Device::cpu()).to(DType::Float64);
    Tensor out = Tensor::zeros({m, n}, DType::Float64);
    kernels::cpu::gemm_reference<double>(trans_a, trans_b, m, n, k, alpha, a64.data<double>(), a_cols,
                                         b64.data<double>(), b_cols, 0.0, out.data<double>(), n);
    return out;
}

// Sets the process-wide matmul precision for one scope and restores the previous setting.
class PrecisionScope {
  public:
    explicit PrecisionScope(MatmulPrecision precision) : previous_(matmul_precision()) {
        set_matmul_precision(precision);
    }
    ~PrecisionScope() { set_matmul_precision(previous_); }
    PrecisionScope(const PrecisionScope&) = delete;
    PrecisionScope& operator=(const PrecisionScope&) = delete;

  private:
    MatmulPrecision previous_;
};

// OpenMP's thread count in a parallel region, as the kernels see it.
int threads_in_a_region() {
    int threads = 0;
#pragma omp parallel
    {
#pragma omp single
        threads = omp_get_num_threads();
    }
    return threads;
}

}  // namespace

// ================================================================ CPU kernels

// [[1, 2, 3], [4, 5, 6]] * [[7, 8], [9, 10], [11, 12]] = [[58, 64], [139, 154]], and the same
// product from transposed storage; then alpha = 0.5, beta = -1 on C = ones: [[28, 31], [68.5, 76]].
template <typename T>
void check_hand_computed_2x3_times_3x2() {
    const std::vector<T> a = {1, 2, 3, 4, 5, 6};
    const std::vector<T> a_transposed = {1, 4, 2, 5, 3, 6};  // A^T stored (3, 2)
    const std::vector<T> b = {7, 8, 9, 10, 11, 12};
    const std::vector<T> b_transposed = {7, 9, 11, 8, 10, 12};  // B^T stored (2, 3)
    const std::vector<T> product = {58, 64, 139, 154};
    using Gemm = void (*)(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, int64_t, T, T*,
                          int64_t);
    const Gemm reference = kernels::cpu::gemm_reference<T>;
    const Gemm blas = [](bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* pa, int64_t lda,
                         const T* pb, int64_t ldb, T beta, T* pc, int64_t ldc) {
        kernels::cpu::gemm<T>(ta, tb, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, false);
    };
    for (Gemm gemm : {reference, blas}) {
        std::vector<T> c(4, std::numeric_limits<T>::quiet_NaN());
        gemm(false, false, 2, 2, 3, 1, a.data(), 3, b.data(), 2, 0, c.data(), 2);
        EXPECT_EQ(c, product);
        std::fill(c.begin(), c.end(), std::numeric_limits<T>::quiet_NaN());
        gemm(true, false, 2, 2, 3, 1, a_transposed.data(), 2, b.data(), 2, 0, c.data(), 2);
        EXPECT_EQ(c, product);
        std::fill(c.begin(), c.end(), std::numeric_limits<T>::quiet_NaN());
        gemm(false, true, 2, 2, 3, 1, a.data(), 3, b_transposed.data(), 3, 0, c.data(), 2);
        EXPECT_EQ(c, product);
        std::fill(c.begin(), c.end(), std::numeric_limits<T>::quiet_NaN());
        gemm(true, true, 2, 2, 3, 1, a_transposed.data(), 2, b_transposed.data(), 3, 0, c.data(), 2);
        EXPECT_EQ(c, product);
        std::fill(c.begin(), c.end(), T(1));
        gemm(false, false, 2, 2, 3, 0.5, a.data(), 3, b.data(), 2, -1, c.data(), 2);
        EXPECT_EQ(c, (std::vector<T>{28, 31, 68.5, 76}));
    }
}

// The thread count of set_cpu_threads survives OpenBLAS's configuration (on the first product:
// this is the binary's first test to run one) and a later set_cpu_threads. An OpenMP build of
// OpenBLAS sets OpenMP's count in openblas_set_num_threads(1): unrestored, the whole process would
// run on one thread. (This machine's OpenBLAS may be the pthreads build, where both pass anyway;
// LD_LIBRARY_PATH to an OpenMP build's libopenblas.so.0 checks the other.)
TEST(GemmCpu, ProductsKeepTheThreadCountOfSetCpuThreads) {
    const int threads_before = cpu_threads();
    const GemmCase g{false, true, 512, 512, 512, 1.0, 0.0, 0};  // 2^27 multiply-adds: cut into blocks
    const GemmOperands x = random_operands(g, DType::Float32, 640);
    set_cpu_threads(3);
    const Tensor first = cpu_gemm<float>(g, x);
    EXPECT_EQ(cpu_threads(), 3) << "after the first product (" << kernels::cpu::blas_description() << ")";
    EXPECT_EQ(threads_in_a_region(), 3);
    set_cpu_threads(2);
    set_cpu_threads(3);
    expect_equal(cpu_gemm<float>(g, x), first, "the same product again");
    EXPECT_EQ(cpu_threads(), 3) << "after set_cpu_threads and another product";
    EXPECT_EQ(threads_in_a_region(), 3);
    set_cpu_threads(threads_before);
}

TEST(GemmCpu, HandComputed2x3Times3x2) {
    check_hand_computed_2x3_times_3x2<float>();
    check_hand_computed_2x3_times_3x2<double>();
}

// I * X = X and X * I = X exactly: each output is one product by 1 plus exact zeros.
TEST(GemmCpu, IdentityLeavesMatrixUnchanged) {
    const int64_t rows = 7, cols = 33;
    Tensor x = random_tensor({rows, cols}, 11);
    auto identity = [](int64_t size) {
        Tensor eye = Tensor::zeros({size, size});
        float* values = eye.data<float>();
        for (int64_t i = 0; i < size; ++i) values[i * size + i] = 1.0f;
        return eye;
    };
    Tensor left = identity(rows), right = identity(cols);
    Tensor out = poisoned({rows, cols}, DType::Float32, Device::cpu());
    kernels::cpu::gemm<float>(false, false, rows, cols, rows, 1.0f, left.data<float>(), rows, x.data<float>(), cols,
                              0.0f, out.data<float>(), cols, false);
    expect_equal(out, x, "I * X");
    out = poisoned({rows, cols}, DType::Float32, Device::cpu());
    kernels::cpu::gemm<float>(false, false, rows, cols, cols, 1.0f, x.data<float>(), cols, right.data<float>(), cols,
                              0.0f, out.data<float>(), cols, false);
    expect_equal(out, x, "X * I");
}

// The float reference accumulates exactly as the double one (float products are exact in
// double) and rounds once, so it equals the double result rounded to float, bit for bit.
TEST(GemmCpu, FloatReferenceIsDoubleReferenceRounded) {
    for (GemmCase g : all_transposes({false, false, 33, 7, 257, 0.75, -1.5, 3})) {
        GemmOperands x = random_operands(g, DType::Float32, 21);
        Tensor c = x.c.clone();
        kernels::cpu::gemm_reference<float>(g.trans_a, g.trans_b, g.m, g.n, g.k, static_cast<float>(g.alpha),
                                            x.a.data<float>(), x.lda, x.b.data<float>(), x.ldb,
                                            static_cast<float>(g.beta), c.data<float>(), x.ldc);
        expect_equal(c, reference_result(g, x).to(DType::Float32), describe(g));
    }
}

template <typename T>
void check_cpu_gemm_against_reference(const GemmCase& g, uint64_t seed) {
    GemmOperands x = random_operands(g, dtype_of<T>(), seed);
    Tolerance tol = blas_tolerance(g, gemm_scales(g, x), roundoff_of<T>());
    expect_close(cpu_gemm<T>(g, x), reference_result(g, x), tol.rtol, tol.atol,
                 describe(g) + " " + dtype_name(dtype_of<T>()));
}

TEST(GemmCpu, MatchesReferenceForAllTransposesAndSizes) {
    uint64_t seed = 100;
    for (const GemmCase& g : size_sweep(1.0, 0.0)) {
        check_cpu_gemm_against_reference<float>(g, seed);
        check_cpu_gemm_against_reference<double>(g, seed);
        seed += 3;
    }
}

// Padded rows (lda, ldb, ldc > columns) with alpha, beta != 1: the padding of C is compared too,
// so a write past a row's n columns fails.
TEST(GemmCpu, PaddedLeadingDimensionsWithAlphaBeta) {
    for (GemmCase g : all_transposes({false, false, 33, 257, 7, 0.75, -1.5, 5})) {
        check_cpu_gemm_against_reference<float>(g, 200);
        check_cpu_gemm_against_reference<double>(g, 200);
    }
}

// The vocabulary projection's shapes: logits = x W^T (64 x 50257 x 33) and its weight gradient
// dW = dlogits^T x (50257 x 33 x 64), with alpha, beta != 1.
TEST(GemmCpu, WideVocabularySmallK) {
    check_cpu_gemm_against_reference<float>({false, true, 64, 50257, 33, -0.75, 0.5, 0}, 300);
    check_cpu_gemm_against_reference<float>({true, false, 50257, 33, 64, 0.5, 2.0, 0}, 301);
}

// beta == 0: C's old contents are not read, so NaN there must not reach the result.
TEST(GemmCpu, BetaZeroIgnoresNaNInC) {
    for (GemmCase g : all_transposes({false, false, 7, 33, 257, 1.25, 0.0, 0})) {
        GemmOperands x = random_operands(g, DType::Float32, 400);
        Tolerance tol = blas_tolerance(g, gemm_scales(g, x), kFloatRoundoff);
        x.c = poisoned({g.m, x.ldc}, DType::Float32, Device::cpu());
        expect_close(cpu_gemm<float>(g, x), reference_result(g, x), tol.rtol, tol.atol, describe(g) + " NaN C");

        GemmOperands x64 = random_operands(g, DType::Float64, 401);
        x64.c = poisoned({g.m, x64.ldc}, DType::Float64, Device::cpu());
        Tolerance tol64 = blas_tolerance(g, gemm_scales(g, x64), kDoubleRoundoffBothSides);
        expect_close(cpu_gemm<double>(g, x64), reference_result(g, x64), tol64.rtol, tol64.atol,
                     describe(g) + " NaN C float64");
    }
}

// allow_tf32 does nothing on the CPU: the result is bit-identical to the exact one.
TEST(GemmCpu, IgnoresTf32Flag) {
    GemmCase g{true, false, 33, 257, 257, 1.0, 0.0, 0};
    GemmOperands x = random_operands(g, DType::Float32, 500);
    expect_equal(cpu_gemm<float>(g, x, true), cpu_gemm<float>(g, x, false), "allow_tf32 on cpu");
}

// k == 0 is an empty sum: C = beta * C (zeros for beta == 0, whatever C held); m == 0 or n == 0
// touches nothing.
TEST(GemmCpu, EmptyDimensions) {
    const float unused = 0.0f;
    Tensor c = Tensor::full({3, 4}, 2.0);
    kernels::cpu::gemm<float>(false, false, 3, 4, 0, 1.0f, &unused, 0, &unused, 4, -1.5f, c.data<float>(), 4, false);
    expect_equal(c, Tensor::full({3, 4}, -3.0), "k = 0, beta = -1.5");
    c = poisoned({3, 4}, DType::Float32, Device::cpu());
    kernels::cpu::gemm<float>(true, true, 3, 4, 0, 1.0f, &unused, 3, &unused, 0, 0.0f, c.data<float>(), 4, false);
    expect_equal(c, Tensor::zeros({3, 4}), "k = 0, beta = 0 over NaN");
    c = Tensor::full({3, 4}, 2.0);
    kernels::cpu::gemm<float>(false, false, 0, 4, 5, 1.0f, &unused, 5, &unused, 4, 0.0f, c.data<float>(), 4, false);
    kernels::cpu::gemm<float>(false, false, 3, 0, 5, 1.0f, &unused, 5, &unused, 0, 0.0f, c.data<float>(), 4, false);
    expect_equal(c, Tensor::full({3, 4}, 2.0), "m = 0 and n = 0 leave C alone");
}

// The batched GEMM equals a loop of reference GEMMs over matrices spaced by strides larger than
// the matrices themselves (the gaps of C, compared too, must stay untouched); batch 0 is a no-op.
TEST(GemmCpu, StridedBatchedMatchesLoop) {
    for (GemmCase g : all_transposes({false, false, 7, 33, 257, 0.75, -1.5, 2})) {
        BatchedOperands x = random_batched_operands(g, 3, 600);
        Tensor expected = batched_reference(g, x);
        const Tolerance tol = batched_fp32_tolerance(g, x);
        const Tensor before = x.c.clone();
        kernels::cpu::gemm_strided_batched<float>(g.trans_a, g.trans_b, g.m, g.n, g.k, 0.75f, x.a.data<float>(),
                                                  x.layout.lda, x.stride_a, x.b.data<float>(), x.layout.ldb,
                                                  x.stride_b, 0.0f, x.c.data<float>(), x.layout.ldc, x.stride_c, 0,
                                                  false);
        expect_equal(x.c, before, describe(g) + " batch 0");
        kernels::cpu::gemm_strided_batched<float>(g.trans_a, g.trans_b, g.m, g.n, g.k, static_cast<float>(g.alpha),
                                                  x.a.data<float>(), x.layout.lda, x.stride_a, x.b.data<float>(),
                                                  x.layout.ldb, x.stride_b, static_cast<float>(g.beta),
                                                  x.c.data<float>(), x.layout.ldc, x.stride_c, x.batch, false);
        expect_close(x.c, expected, tol.rtol, tol.atol, describe(g) + " batched");
    }
}

// Products large enough to be cut into blocks and shared over the threads (a transformer's
// (B*T, C) x (C, 3C), its weight gradient, a wider-than-tall one cut by columns, and a batch of
// attention-sized ones) give the same bits on 1, 2 and 3 threads, within the reference's bound.
TEST(GemmCpu, BitsDoNotDependOnTheThreadCount) {
    const int threads_before = cpu_threads();
    const std::vector<GemmCase> cases = {{false, true, 2050, 390, 130, 1.0, 0.0, 0},
                                         {true, false, 390, 130, 2050, 1.0, 1.0, 0},
                                         {false, false, 70, 1100, 300, 0.5, 0.0, 3}};
    uint64_t seed = 650;
    for (const GemmCase& g : cases) {
        GemmOperands x = random_operands(g, DType::Float32, seed++);
        set_cpu_threads(1);
        const Tensor one_thread = cpu_gemm<float>(g, x);
        const Tolerance tol = blas_tolerance(g, gemm_scales(g, x), kFloatRoundoff);
        expect_close(one_thread, reference_result(g, x), tol.rtol, tol.atol, describe(g));
        for (int threads : {2, 3}) {
            set_cpu_threads(threads);
            expect_equal(cpu_gemm<float>(g, x), one_thread,
                         describe(g) + " on " + std::to_string(threads) + " threads");
        }
    }
    GemmCase g{false, true, 128, 128, 32, 1.0, 0.0, 0};
    BatchedOperands x = random_batched_operands(g, 13, 660);
    auto run_batch = [&] {
        Tensor c = x.c.clone();
        kernels::cpu::gemm_strided_batched<float>(false, true, g.m, g.n, g.k, 1.0f, x.a.data<float>(), x.layout.lda,
                                                  x.stride_a, x.b.data<float>(), x.layout.ldb, x.stride_b, 0.0f,
                                                  c.data<float>(), x.layout.ldc, x.stride_c, x.batch, false);
        return c;
    };
    set_cpu_threads(1);
    const Tensor one_thread = run_batch();
    set_cpu_threads(2);
    expect_equal(run_batch(), one_thread, "batched attention-sized products on 2 threads");
    set_cpu_threads(threads_before);
}

TEST(GemmCpu, RejectsBadSizesAndStrides) {
    std::vector<float> a(64), b(64), c(64);
    auto gemm = [&](bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
        kernels::cpu::gemm<float>(ta, tb, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), ldc, false);
    };
    expect_invalid_argument([&] { gemm(false, false, -1, 2, 2, 2, 2, 2); }, {"gemm", "negative size", "m=-1"});
    expect_invalid_argument([&] { gemm(false, false, 2, 3, 4, 3, 3, 3); }, {"gemm", "lda=3", "4 columns of A"});
    expect_invalid_argument([&] { gemm(true, false, 5, 3, 4, 4, 3, 3); },
                            {"gemm", "lda=4", "5 columns of A", "trans_a"});
    expect_invalid_argument([&] { gemm(false, true, 2, 3, 4, 4, 3, 3); },
                            {"gemm", "ldb=3", "4 columns of B", "trans_b"});
    expect_invalid_argument([&] { gemm(false, false, 2, 3, 4, 4, 3, 2); }, {"gemm", "ldc=2", "3 columns of C"});
    expect_invalid_argument(
        [&] {
            kernels::cpu::gemm_strided_batched<float>(false, false, 2, 2, 2, 1.0f, a.data(), 2, 4, b.data(), 2, 4,
                                                      0.0f, c.data(), 2, 4, -2, false);
        },
        {"gemm_strided_batched", "negative batch -2"});
}

// ================================================================ ops on the CPU
// Inputs are small integers, so every result is exact in float and compared bit for bit.

TEST(Matmul, ReadsActivationsAsRowsOverLastDim) {
    Tensor x = small_integers({4, 7, 33}, 1);  // (B, T, C)
    Tensor w = small_integers({20, 33}, 2);    // a Linear weight (N, C)
    Tensor y = ops::matmul(x, w, false, true);
    EXPECT_EQ(y.shape(), (Shape{4, 7, 20}));
    expect_equal(y.reshape({28, 20}), reference_product(x, 28, 33, false, w, 20, 33, true, 1.0).to(DType::Float32),
                 "x W^T");

    Tensor w_in = small_integers({33, 20}, 3);  // (C, N), not transposed
    Tensor z = ops::matmul(x, w_in, false, false, 0.5);
    EXPECT_EQ(z.shape(), (Shape{4, 7, 20}));
    expect_equal(z.reshape({28, 20}), reference_product(x, 28, 33, false, w_in, 33, 20, false, 0.5).to(DType::Float32),
                 "0.5 x W");

    // A transposed activation gives a plain matrix: dW = dy^T x over all B*T rows, (20, 33).
    Tensor dy = small_integers({4, 7, 20}, 4);
    Tensor dw = ops::matmul(dy, x, true, false);
    EXPECT_EQ(dw.shape(), (Shape{20, 33}));
    expect_equal(dw, reference_product(dy, 28, 20, true, x, 28, 33, false, 1.0).to(DType::Float32), "dy^T x");

    // Rank 2 and rank 1 operands give (M, N); float64 goes through the double GEMM.
    Tensor a = small_integers({7, 33}, 5, DType::Float64), v = small_integers({33}, 6, DType::Float64);
    Tensor av = ops::matmul(a, v, false, true);
    EXPECT_EQ(av.shape(), (Shape{7, 1}));
    expect_equal(av, reference_product(a, 7, 33, false, v, 1, 33, true, 1.0), "a v (float64)");
    Tensor both = ops::matmul(a, a, true, false);
    EXPECT_EQ(both.shape(), (Shape{33, 33}));
    expect_equal(both, reference_product(a, 7, 33, true, a, 7, 33, false, 1.0), "a^T a (float64)");
}

TEST(Matmul, EmptyInnerDimensionGivesZeros) {
    Tensor a = Tensor::zeros({4, 0}), b = Tensor::zeros({0, 3});
    Tensor out = ops::matmul(a, b);
    EXPECT_EQ(out.shape(), (Shape{4, 3}));
    expect_equal(out, Tensor::zeros({4, 3}), "k = 0");
    Tensor no_rows = ops::matmul(Tensor::zeros({0, 5}), Tensor::zeros({5, 3}));
    EXPECT_EQ(no_rows.shape(), (Shape{0, 3}));
}

TEST(MatmulInto, AccumulatesAndOverwrites) {
    Tensor dy = small_integers({4, 7, 20}, 7), x = small_integers({4, 7, 33}, 8);
    Tensor grad = small_integers({20, 33}, 9);
    Tensor expected = grad.to(DType::Float64);
    kernels::cpu::gemm_reference<double>(true, false, 20, 33, 28, 0.5, dy.to(DType::Float64).data<double>(), 20,
                                         x.to(DType::Float64).data<double>(), 33, 1.0, expected.data<double>(), 33);
    ops::matmul_into(grad, dy, x, true, false, 0.5, 1.0);
    expect_equal(grad, expected.to(DType::Float32), "grad += 0.5 dy^T x");

    // beta = 0 over NaN, into an out that reads as the (28, 20) product through its (4, 7, 20) shape.
    Tensor w = small_integers({20, 33}, 10);
    Tensor y = poisoned({4, 7, 20}, DType::Float32, Device::cpu());
    ops::matmul_into(y, x, w, false, true, 1.0, 0.0);
    expect_equal(y.reshape({28, 20}), reference_product(x, 28, 33, false, w, 20, 33, true, 1.0).to(DType::Float32),
                 "y = x W^T over NaN");
}

TEST(Bmm, MultipliesEveryBatchEntry) {
    // Attention shapes: q, k, v (B, H, T, D) = (2, 3, 7, 5).
    Tensor q = small_integers({2, 3, 7, 5}, 11), k = small_integers({2, 3, 7, 5}, 12);
    Tensor scores = ops::bmm(q, k, false, true, 0.5);  // 0.5 q k^T
    EXPECT_EQ(scores.shape(), (Shape{2, 3, 7, 7}));
    Tensor v = small_integers({2, 3, 7, 5}, 13);
    Tensor mixed = ops::bmm(scores, v);  // scores v
    EXPECT_EQ(mixed.shape(), (Shape{2, 3, 7, 5}));
    Tensor grad_v = ops::bmm(scores, mixed, true, false);  // scores^T mixed
    EXPECT_EQ(grad_v.shape(), (Shape{2, 3, 7, 5}));
    Tensor both = ops::bmm(q, scores, true, true);  // q^T scores^T: (5, 7) per entry
    EXPECT_EQ(both.shape(), (Shape{2, 3, 5, 7}));

    auto entry = [](const Tensor& t, int64_t i) { return t.reshape({6, t.size(-2), t.size(-1)}).slice(i, i + 1); };
    for (int64_t i = 0; i < 6; ++i) {
        expect_equal(entry(scores, i).reshape({7, 7}),
                     reference_product(entry(q, i), 7, 5, false, entry(k, i), 7, 5, true, 0.5).to(DType::Float32),
                     str("q k^T entry ", i));
        expect_equal(entry(mixed, i).reshape({7, 5}),
                     reference_product(entry(scores, i), 7, 7, false, entry(v, i), 7, 5, false, 1.0)
                         .to(DType::Float32),
                     str("scores v entry ", i));
        expect_equal(entry(grad_v, i).reshape({7, 5}),
                     reference_product(entry(scores, i), 7, 7, true, entry(mixed, i), 7, 5, false, 1.0)
                         .to(DType::Float32),
                     str("scores^T mixed entry ", i));
        expect_equal(entry(both, i).reshape({5, 7}),
                     reference_product(entry(q, i), 7, 5, true, entry(scores, i), 7, 7, true, 1.0)
                         .to(DType::Float32),
                     str("q^T scores^T entry ", i));
    }

    // Rank 3 and float64.
    Tensor a = small_integers({4, 3, 5}, 14, DType::Float64), b = small_integers({4, 5, 2}, 15, DType::Float64);
    Tensor ab = ops::bmm(a, b);
    EXPECT_EQ(ab.shape(), (Shape{4, 3, 2}));
    for (int64_t i = 0; i < 4; ++i)
        expect_equal(ab.slice(i, i + 1).reshape({3, 2}),
                     reference_product(a.slice(i, i + 1), 3, 5, false, b.slice(i, i + 1), 5, 2, false, 1.0),
                     str("float64 entry ", i));
}

TEST(GemmOps, ErrorsNameTheOpAndShapes) {
    Tensor x = Tensor::zeros({4, 7, 33}), w = Tensor::zeros({20, 32});
    expect_invalid_argument([&] { ops::matmul(x, w, false, true); },
                            {"matmul", "a (4, 7, 33) [not transposed] has 33 columns",
                             "b (20, 32) [transposed] has 32 rows"});
    expect_invalid_argument([&] { ops::matmul(x, w, true, false); },
                            {"matmul", "a (4, 7, 33) [transposed] has 28 columns",
                             "b (20, 32) [not transposed] has 20 rows"});
    expect_invalid_argument([&] { ops::matmul(Tensor(), w); }, {"matmul", "a is an undefined tensor"});
    expect_invalid_argument([&] { ops::matmul(w, Tensor()); }, {"matmul", "b is an undefined tensor"});
    Tensor ids = Tensor::zeros({3, 3}, DType::Int32);
    expect_invalid_argument([&] { ops::matmul(ids, ids); }, {"matmul", "expects float32", "int32(3, 3)"});
    expect_invalid_argument([&] { ops::matmul(Tensor::zeros({3, 3}), Tensor::zeros({3, 3}, DType::Float64)); },
                            {"matmul", "dtype mismatch", "float32(3, 3)", "float64(3, 3)"});
    expect_invalid_argument([&] { ops::matmul(Tensor::full({}, 2.0), Tensor::zeros({1, 3})); },
                            {"matmul", "a needs at least 1 dimension(s)", "()"});
    expect_invalid_argument([&] { ops::matmul(Tensor::zeros({1, 3}), Tensor::full({}, 2.0)); },
                            {"matmul", "b needs at least 1 dimension(s)"});

    Tensor a = Tensor::zeros({6, 5}), b = Tensor::zeros({5, 4});
    Tensor wrong_out = Tensor::zeros({6, 5});
    expect_invalid_argument([&] { ops::matmul_into(wrong_out, a, b, false, false, 1.0, 0.0); },
                            {"matmul_into", "out (6, 5) reads as a (6, 5) matrix", "product is (6, 4)"});
    Tensor tall_out = Tensor::zeros({2, 6, 4});
    expect_invalid_argument([&] { ops::matmul_into(tall_out, a, b, false, false, 1.0, 0.0); },
                            {"matmul_into", "out (2, 6, 4) reads as a (12, 4) matrix", "product is (6, 4)"});
    Tensor undefined_out;
    expect_invalid_argument([&] { ops::matmul_into(undefined_out, a, b, false, false, 1.0, 0.0); },
                            {"matmul_into", "out is an undefined tensor"});
    Tensor double_out = Tensor::zeros({6, 4}, DType::Float64);
    expect_invalid_argument([&] { ops::matmul_into(double_out, a, b, false, false, 1.0, 0.0); },
                            {"matmul_into", "dtype mismatch", "float64(6, 4)"});
    Tensor scalar_out = Tensor::full({}, 1.0);
    expect_invalid_argument([&] { ops::matmul_into(scalar_out, a, b, false, false, 1.0, 0.0); },
                            {"matmul_into", "out needs at least 1 dimension(s)"});
    Tensor square = Tensor::zeros({5, 5});
    expect_invalid_argument([&] { ops::matmul_into(square, square, square, false, false, 1.0, 1.0); },
                            {"matmul_into", "out shares storage with a"});
    Tensor square_b = Tensor::zeros({5, 5});
    expect_invalid_argument([&] { ops::matmul_into(square_b, square, square_b, false, false, 1.0, 1.0); },
                            {"matmul_into", "out shares storage with b"});
    expect_invalid_argument([&] { ops::matmul_into(wrong_out, a, Tensor::zeros({4, 4}), false, false, 1.0, 0.0); },
                            {"matmul_into", "a (6, 5) [not transposed] has 5 columns", "has 4 rows"});

    Tensor q = Tensor::zeros({2, 3, 7, 5});
    expect_invalid_argument([&] { ops::bmm(Tensor::zeros({7, 5}), q); }, {"bmm", "a needs at least 3", "(7, 5)"});
    expect_invalid_argument([&] { ops::bmm(q, Tensor::zeros({5, 7})); }, {"bmm", "b needs at least 3", "(5, 7)"});
    expect_invalid_argument([&] { ops::bmm(q, Tensor::zeros({2, 4, 5, 7})); },
                            {"bmm", "batch dims differ", "a (2, 3, 7, 5) has (2, 3)", "b (2, 4, 5, 7) has (2, 4)"});
    expect_invalid_argument([&] { ops::bmm(q, Tensor::zeros({6, 5, 7})); },
                            {"bmm", "batch dims differ", "(2, 3)", "(6)"});
    expect_invalid_argument([&] { ops::bmm(q, q); },
                            {"bmm", "a (2, 3, 7, 5) [not transposed] has 5 columns",
                             "b (2, 3, 7, 5) [not transposed] has 7 rows"});
    expect_invalid_argument([&] { ops::bmm(ids.reshape({1, 3, 3}), ids.reshape({1, 3, 3})); },
                            {"bmm", "expects float32", "int32(1, 3, 3)"});
    expect_invalid_argument([&] { ops::bmm(q, Tensor::zeros({2, 3, 5, 7}, DType::Float64)); },
                            {"bmm", "dtype mismatch"});
    expect_invalid_argument([&] { ops::bmm(Tensor(), q); }, {"bmm", "a is an undefined tensor"});
}

// ================================================================ CUDA

TEST(GemmOpsCuda, DeviceMismatchIsAnError) {
    MP_REQUIRE_GPU();
    Tensor on_gpu = Tensor::zeros({3, 3}, DType::Float32, Device::cuda(0)), on_cpu = Tensor::zeros({3, 3});
    expect_invalid_argument([&] { ops::matmul(on_gpu, on_cpu); }, {"matmul", "different devices", "cuda:0", "cpu"});
    expect_invalid_argument([&] { ops::matmul_into(on_cpu, on_gpu, on_gpu, false, false, 1.0, 0.0); },
                            {"matmul_into", "different devices"});
    expect_invalid_argument([&] { ops::bmm(on_gpu.reshape({1, 3, 3}), on_cpu.reshape({1, 3, 3})); },
                            {"bmm", "different devices"});
}

// The ops on CUDA in both precisions against the CPU ops, on small integers: exact in fp32 and
// in TF32 (integers up to 3 need 2 mantissa bits), so bit-for-bit equal whatever cuBLAS does.
TEST(GemmOpsCuda, MatchCpuOpsInBothPrecisions) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    for (MatmulPrecision precision : {MatmulPrecision::Exact, MatmulPrecision::TF32}) {
        PrecisionScope scope(precision);
        const std::string mode = precision == MatmulPrecision::TF32 ? " (tf32)" : " (exact)";
        Tensor x = small_integers({4, 7, 33}, 21), w = small_integers({50, 33}, 22);
        Tensor y = ops::matmul(x.to(gpu), w.to(gpu), false, true, 0.5);
        EXPECT_EQ(y.shape(), (Shape{4, 7, 50}));
        expect_equal(y, ops::matmul(x, w, false, true, 0.5), "matmul x W^T" + mode);

        Tensor dy = small_integers({4, 7, 50}, 23);
        Tensor grad = small_integers({50, 33}, 24);
        Tensor grad_gpu = grad.to(gpu);
        ops::matmul_into(grad_gpu, dy.to(gpu), x.to(gpu), true, false, 1.0, 1.0);
        ops::matmul_into(grad, dy, x, true, false, 1.0, 1.0);
        expect_equal(grad_gpu, grad, "matmul_into grad += dy^T x" + mode);

        Tensor out_gpu = poisoned({4, 7, 33}, DType::Float32, gpu);
        ops::matmul_into(out_gpu, dy.to(gpu), w.to(gpu), false, false, -2.0, 0.0);
        expect_equal(out_gpu, ops::matmul(dy, w, false, false, -2.0), "matmul_into over NaN" + mode);

        // bmm with op(a) (7, 5) and op(b) (5, 4) per entry of a (2, 3) batch, stored as each flag asks.
        for (bool trans_a : {false, true}) {
            for (bool trans_b : {false, true}) {
                Tensor a = small_integers(trans_a ? Shape{2, 3, 5, 7} : Shape{2, 3, 7, 5}, 25);
                Tensor b = small_integers(trans_b ? Shape{2, 3, 4, 5} : Shape{2, 3, 5, 4}, 26);
                Tensor product = ops::bmm(a.to(gpu), b.to(gpu), trans_a, trans_b, 0.5);
                EXPECT_EQ(product.shape(), (Shape{2, 3, 7, 4}));
                expect_equal(product, ops::bmm(a, b, trans_a, trans_b, 0.5),
                             str("bmm trans_a=", trans_a, " trans_b=", trans_b, mode));
            }
        }
        Tensor empty_k =
            ops::matmul(Tensor::zeros({4, 0}, DType::Float32, gpu), Tensor::zeros({0, 3}, DType::Float32, gpu));
        expect_equal(empty_k, Tensor::zeros({4, 3}), "k = 0 gives zeros" + mode);
    }
}

#if MP_CUDA
// Raw cuBLAS-kernel tests: they call kernels::cuda:: directly, which only a CUDA build links.
namespace {

// Fills the m x n matrix starting at element `offset` of a contiguous tensor (row stride ld)
// with NaN, leaving the padding after each row's n elements alone.
void poison_matrix(const Tensor& t, int64_t offset, int64_t m, int64_t n, int64_t ld) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Tensor flat = t.reshape({-1});
    if (ld == n) {
        flat.slice(offset, offset + m * n).fill_(nan);
        return;
    }
    for (int64_t row = 0; row < m; ++row) flat.slice(offset + row * ld, offset + row * ld + n).fill_(nan);
}

// The TF32 bound derived at the top of this file.
Tolerance tf32_tolerance(const GemmCase& g, const GemmScales& s) {
    const Tolerance fp32 = blas_tolerance(g, s, kFloatRoundoff);
    return {5e-3, 5e-3 * std::fabs(g.alpha) * s.root_square_sum + fp32.atol};
}

// kernels::cuda::gemm on GPU copies of the operands. When beta == 0, C is write-only: its m x n
// matrix is poisoned with NaN first, so an element cuBLAS skipped shows up (its padding keeps
// the random values, so a stray write there shows up too).
Tensor cuda_gemm(const GemmCase& g, const GemmOperands& x, bool allow_tf32) {
    const Device gpu = Device::cuda(0);
    Tensor a = x.a.to(gpu), b = x.b.to(gpu), c = x.c.to(gpu);
    if (g.beta == 0.0) poison_matrix(c, 0, g.m, g.n, x.ldc);
    kernels::cuda::gemm(g.trans_a, g.trans_b, g.m, g.n, g.k, static_cast<float>(g.alpha), a.data<float>(), x.lda,
                        b.data<float>(), x.ldb, static_cast<float>(g.beta), c.data<float>(), x.ldc, allow_tf32,
                        compute_stream(0));
    return c.to(Device::cpu());
}

void check_cuda_gemm(const GemmCase& g, uint64_t seed, bool allow_tf32) {
    GemmOperands x = random_operands(g, DType::Float32, seed);
    const GemmScales scales = gemm_scales(g, x);
    const Tolerance tol = allow_tf32 ? tf32_tolerance(g, scales) : blas_tolerance(g, scales, kFloatRoundoff);
    expect_close(cuda_gemm(g, x, allow_tf32), reference_result(g, x), tol.rtol, tol.atol,
                 describe(g) + (allow_tf32 ? " cuda tf32" : " cuda fp32"));
}

}  // namespace

TEST(GemmCuda, ExactMatchesReferenceForAllTransposesAndSizes) {
    MP_REQUIRE_GPU();
    uint64_t seed = 700;
    for (const GemmCase& g : size_sweep(1.0, 0.0)) check_cuda_gemm(g, seed += 3, false);
    for (const GemmCase& g : size_sweep(-0.75, 0.5)) check_cuda_gemm(g, seed += 3, false);
}

TEST(GemmCuda, ExactPaddedWideAndDeep) {
    MP_REQUIRE_GPU();
    for (const GemmCase& g : all_transposes({false, false, 33, 257, 7, 0.75, -1.5, 5})) check_cuda_gemm(g, 800, false);
    check_cuda_gemm({false, true, 64, 50257, 33, -0.75, 0.5, 0}, 801, false);  // logits = x W^T
    check_cuda_gemm({true, false, 50257, 33, 64, 1.0, 0.0, 0}, 802, false);    // dW = dlogits^T x
    check_cuda_gemm({false, true, 7, 1000, 3072, 1.0, 0.0, 0}, 803, false);   // a deep k (MLP projection)
}

TEST(GemmCuda, Tf32WithinItsBoundAndActuallyUsed) {
    MP_REQUIRE_GPU();
    for (const GemmCase& g : all_transposes({false, false, 33, 257, 257, 1.0, 0.0, 0})) check_cuda_gemm(g, 900, true);
    check_cuda_gemm({false, true, 64, 50257, 33, -0.75, 0.0, 0}, 901, true);
    check_cuda_gemm({false, true, 7, 1000, 3072, 1.0, 0.0, 0}, 902, true);
    // With beta != 0 the rtol term no longer covers truncation's bias (alpha * dot and beta * c
    // may cancel), but at k = 7 that bias, <= 2^-10 |alpha dot| <= 2^-10 sqrt(7) |alpha| Q, is
    // still within the atol term 5e-3 |alpha| Q.
    check_cuda_gemm({true, false, 33, 257, 7, 0.75, -1.5, 5}, 903, true);

    // Random floats have more than 10 mantissa bits, so TF32 must change some outputs: this
    // proves allow_tf32 reaches cuBLAS (the bound above alone would also pass in exact mode).
    GemmCase g{false, false, 33, 257, 257, 1.0, 0.0, 0};
    GemmOperands x = random_operands(g, DType::Float32, 904);
    std::vector<float> tf32 = cuda_gemm(g, x, true).to_vector<float>();
    std::vector<float> exact = cuda_gemm(g, x, false).to_vector<float>();
    double largest_difference = 0.0;
    for (size_t i = 0; i < tf32.size(); ++i)
        largest_difference = std::max(largest_difference, std::fabs(static_cast<double>(tf32[i]) - exact[i]));
    EXPECT_GT(largest_difference, 0.0) << "TF32 and exact results are identical: allow_tf32 had no effect";
}

// Strided batched on CUDA against a loop of reference GEMMs, with gaps between the matrices and
// padded rows that must stay untouched, and each C matrix poisoned with NaN when beta == 0.
TEST(GemmCuda, StridedBatchedMatchesReferenceLoop) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    for (double beta : {0.0, -1.5}) {
        for (GemmCase g : all_transposes({false, false, 7, 33, 257, 0.75, beta, 2})) {
            BatchedOperands x = random_batched_operands(g, 5, 1000);
            Tensor expected = batched_reference(g, x);
            const Tolerance tol = batched_fp32_tolerance(g, x);
            Tensor a = x.a.to(gpu), b = x.b.to(gpu), c = x.c.to(gpu);
            if (beta == 0.0)
                for (int64_t i = 0; i < x.batch; ++i) poison_matrix(c, i * x.stride_c, g.m, g.n, x.layout.ldc);
            kernels::cuda::gemm_strided_batched(g.trans_a, g.trans_b, g.m, g.n, g.k, static_cast<float>(g.alpha),
                                                a.data<float>(), x.layout.lda, x.stride_a, b.data<float>(),
                                                x.layout.ldb, x.stride_b, static_cast<float>(g.beta),
                                                c.data<float>(), x.layout.ldc, x.stride_c, x.batch, false,
                                                compute_stream(0));
            expect_close(c, expected, tol.rtol, tol.atol, describe(g) + " cuda batched");
        }
    }
}

// k == 0 takes the scaling kernel: C = beta * C, zeros over NaN for beta == 0, padding untouched.
TEST(GemmCuda, EmptyInnerDimensionScalesC) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    Tensor c = Tensor::full({3, 5}, 2.0, DType::Float32, gpu);
    kernels::cuda::gemm<float>(false, false, 3, 4, 0, 1.0f, nullptr, 1, nullptr, 4, -1.5f, c.data<float>(), 5, false,
                               compute_stream(0));
    std::vector<float> expected(15, -3.0f);
    for (int row = 0; row < 3; ++row) expected[row * 5 + 4] = 2.0f;  // padding column
    EXPECT_EQ(c.to_vector<float>(), expected);

    Tensor batched = poisoned({2, 3, 4}, DType::Float32, gpu);
    kernels::cuda::gemm_strided_batched<float>(true, true, 3, 4, 0, 1.0f, nullptr, 3, 0, nullptr, 1, 0, 0.0f,
                                               batched.data<float>(), 4, 12, 2, false, compute_stream(0));
    expect_equal(batched, Tensor::zeros({2, 3, 4}), "batched k = 0, beta = 0 over NaN");
}

TEST(GemmCuda, SizesBeyondIntAreRejected) {
    MP_REQUIRE_GPU();
    float* unused = nullptr;
    expect_invalid_argument(
        [&] {
            kernels::cuda::gemm(false, false, 2, 2, int64_t{1} << 32, 1.0f, unused, 2, unused, 2, 0.0f, unused, 2,
                                false, compute_stream(0));
        },
        {"gemm (cuda)", "k=4294967296", "int range"});
}
#endif  // MP_CUDA

// ---------------------------------------------------------------- bfloat16 (CPU)

// bfloat16 matmul as tensor cores do it: the operands widened to float32 exactly, float32
// accumulation, one rounding of C to nearest even — bit for bit the float32 matmul of the widened
// operands, rounded. Against float32 on unrounded operands: each product a b moves by at most
// ((1 + u)^2 - 1)|a b| (u = 2^-8), the float32 accumulation by k 2^-24 Σ|a b| (negligible), and
// C's rounding by u|C̃|: |C̃ - C| <= 2.01 u Σ_p |a_ip b_pj| + u |C̃| (plus float32's share).
TEST(GemmBf16, IsTheWidenedFloat32ProductRoundedOnceAndWithinItsBound) {
    const int64_t m = 13, k = 29, n = 11;
    Tensor a = mp::testing::random_tensor({m, k}, 1), b = mp::testing::random_tensor({n, k}, 2);  // b used transposed
    Tensor ab = a.to(DType::BFloat16), bb = b.to(DType::BFloat16);
    Tensor c = ops::matmul(ab, bb, false, true);
    ASSERT_EQ(c.dtype(), DType::BFloat16);
    std::vector<bfloat16> got = c.to_vector<bfloat16>();
    std::vector<float> wide = ops::matmul(ab.to(DType::Float32), bb.to(DType::Float32), false, true).to_vector<float>();
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i].bits, bfloat16(wide[i]).bits) << i;

    const double u = std::ldexp(1.0, -8);
    std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>();
    std::vector<float> c32 = ops::matmul(a, b, false, true).to_vector<float>();
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double abs_sum = 0;
            for (int64_t p = 0; p < k; ++p) abs_sum += std::fabs(double(av[i * k + p]) * bv[j * k + p]);
            const double c16 = static_cast<float>(got[i * n + j]);
            EXPECT_LE(std::fabs(c16 - c32[i * n + j]), 2.01 * u * abs_sum + u * std::fabs(c16) + 1e-6 * abs_sum)
                << i << "," << j;
        }
    // bmm and matmul_into (beta = 1 reads the old C in float32, rounds once).
    Tensor batched = ops::bmm(ab.reshape({1, m, k}), bb.reshape({1, n, k}), false, true);
    std::vector<bfloat16> batched_values = batched.to_vector<bfloat16>();
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(batched_values[i].bits, got[i].bits) << i;
    Tensor acc = c.clone();
    ops::matmul_into(acc, ab, bb, false, true, 1.0, 1.0);
    std::vector<bfloat16> doubled = acc.to_vector<bfloat16>();
    for (size_t i = 0; i < got.size(); ++i)
        EXPECT_EQ(doubled[i].bits, bfloat16(static_cast<float>(got[i]) + wide[i]).bits) << i;
}

// On the GPU: cuBLAS with bfloat16 operands and float32 accumulation. Its summation order differs
// from OpenBLAS's, so C can differ by the float32 reassociation (~k 2^-24 Σ|ab|) and then by one
// bfloat16 rounding (2^-8 relative): compared at rtol 2^-7 plus that reassociation.
TEST(GemmCudaBf16, MatchesCpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    Tensor a = mp::testing::random_tensor({37, 65}, 5).to(DType::BFloat16);
    Tensor b = mp::testing::random_tensor({23, 65}, 6).to(DType::BFloat16);
    mp::testing::expect_close(ops::matmul(a.to(gpu), b.to(gpu), false, true), ops::matmul(a, b, false, true),
                              std::ldexp(1.0, -7), 1e-4, "matmul");
    mp::testing::expect_close(ops::bmm(a.to(gpu).reshape({1, 37, 65}), b.to(gpu).reshape({1, 23, 65}), false, true),
                              ops::bmm(a.reshape({1, 37, 65}), b.reshape({1, 23, 65}), false, true),
                              std::ldexp(1.0, -7), 1e-4, "bmm");
}
