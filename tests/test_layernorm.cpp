// LayerNorm tests: the CPU reference against closed forms and float64 central differences, the
// CUDA kernels against the CPU reference on NaN-poisoned outputs (both the float4 register path
// and the scalar fallback), run-to-run determinism, and every argument check of both ops.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/layernorm.h"
#include "tensor/device_context.h"
#include "tensor/ops/layernorm.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_close;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::poisoned;

namespace {

Tensor normal(const Shape& shape, uint64_t seed, double mean, double std, DType dtype = DType::Float32) {
    Generator gen(seed);
    return Tensor::randn(shape, gen, mean, std, dtype);
}

Shape leading_dims(const Shape& shape) { return Shape(shape.begin(), shape.end() - 1); }

// sum(a * b) over all elements, in double.
double dot(const Tensor& a, const Tensor& b) {
    std::vector<double> av = mp::testing::to_doubles(a), bv = mp::testing::to_doubles(b);
    double total = 0.0;
    for (size_t i = 0; i < av.size(); ++i) total += av[i] * bv[i];
    return total;
}

// Central differences of a scalar function of one float64 tensor, element by element.
Tensor numerical_gradient(const std::function<double(const Tensor&)>& loss, const Tensor& at, double step) {
    Tensor gradient = Tensor::empty(at.shape(), DType::Float64);
    for (int64_t i = 0; i < at.numel(); ++i) {
        Tensor plus = at.clone(), minus = at.clone();
        plus.data<double>()[i] += step;
        minus.data<double>()[i] -= step;
        gradient.data<double>()[i] = (loss(plus) - loss(minus)) / (2 * step);
    }
    return gradient;
}

// max over columns of sum over rows of |values[r, c]|: the scale of a column sum's rounding error.
double max_column_abs_sum(const std::vector<double>& values, int64_t rows, int64_t cols) {
    double largest = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
        double column = 0.0;
        for (int64_t r = 0; r < rows; ++r) column += std::fabs(values[r * cols + c]);
        largest = std::max(largest, column);
    }
    return largest;
}

// The raw CUDA kernels on NaN-poisoned outputs (and workspace), so an element a kernel fails to
// write shows up as NaN. Inputs are CUDA tensors; only called after MP_REQUIRE_GPU(), so in a
// CPU-only build (no kernel call compiled) some parameters are unused.
ops::LayerNormResult cuda_forward_poisoned(const Tensor& x, [[maybe_unused]] const Tensor& gamma,
                                           [[maybe_unused]] const Tensor& beta, [[maybe_unused]] double eps) {
    const Device gpu = x.device();
    ops::LayerNormResult out{poisoned(x.shape(), DType::Float32, gpu),
                             poisoned(leading_dims(x.shape()), DType::Float32, gpu),
                             poisoned(leading_dims(x.shape()), DType::Float32, gpu)};
#if MP_CUDA
    const int64_t cols = x.shape().back();
    kernels::cuda::layernorm_forward(x.data<float>(), gamma.data<float>(), beta.data<float>(), out.y.data<float>(),
                                     out.mean.data<float>(), out.rstd.data<float>(), x.numel() / cols, cols, eps,
                                     compute_stream(gpu.index));
#endif
    return out;
}

ops::LayerNormGrads cuda_backward_poisoned([[maybe_unused]] const Tensor& dy, const Tensor& x, const Tensor& gamma,
                                           [[maybe_unused]] const Tensor& mean, [[maybe_unused]] const Tensor& rstd) {
    const Device gpu = x.device();
    ops::LayerNormGrads out{poisoned(x.shape(), DType::Float32, gpu), poisoned(gamma.shape(), DType::Float32, gpu),
                            poisoned(gamma.shape(), DType::Float32, gpu)};
#if MP_CUDA
    const int64_t cols = x.shape().back();
    const int64_t rows = x.numel() / cols;
    Tensor workspace =
        poisoned({kernels::cuda::layernorm_backward_workspace_floats(rows, cols)}, DType::Float32, gpu);
    kernels::cuda::layernorm_backward(dy.data<float>(), x.data<float>(), gamma.data<float>(), mean.data<float>(),
                                      rstd.data<float>(), out.dx.data<float>(), out.dgamma.data<float>(),
                                      out.dbeta.data<float>(), workspace.data<float>(), rows, cols,
                                      compute_stream(gpu.index));
#endif
    return out;
}

// Forward tolerances (inputs x ~ N(0.5, 2^2), gamma ~ N(1, 0.3^2)), CUDA fp32 vs the CPU's double:
//  - mean: fp32 row sums in a different order; the error is ~1e-7 of the row's mean |x|, so
//    1e-6 relative plus 1e-6 absolute (for means near 0) has a wide margin.
//  - rstd: rsqrtf is within 2 ulp (2.4e-7) and the fp32 variance sum adds ~1e-7 relative: 2e-6.
//  - y = xhat * gamma + beta with |xhat| <~ 5, |gamma| <~ 2: rstd's relative error times ~10,
//    plus a few ulp of the products: 1e-5 absolute and relative.
void expect_forward_close(const ops::LayerNormResult& gpu, const ops::LayerNormResult& cpu, const std::string& what) {
    expect_close(gpu.mean, cpu.mean, 1e-6, 1e-6, what + " mean");
    expect_close(gpu.rstd, cpu.rstd, 2e-6, 0.0, what + " rstd");
    expect_close(gpu.y, cpu.y, 1e-5, 1e-5, what + " y");
}

// Backward tolerances, CUDA fp32 vs the CPU's double, given the forward's saved statistics:
//  - dx: fp32 row sums of |g| <~ 10 terms in another order plus a few ulp per element, times
//    rstd ~ 0.5: ~1e-6, so 1e-5 absolute and relative.
//  - dgamma, dbeta: column sums over rows. For <= 4099 rows the CUDA sum adds <= 5 rows per
//    thread, then 8 row-lanes, then <= 128 chunks, each step in fp32: a worst-case rounding error
//    of (5 + 8 + 128) * 2^-24 ~ 8.4e-6 of the column's sum of |terms| (plus ~2e-7 from forming
//    xhat in fp32), so 1e-5 of the largest such sum.
void expect_backward_close(const ops::LayerNormGrads& gpu, const ops::LayerNormGrads& cpu, const Tensor& dy,
                           const Tensor& x, const Tensor& mean, const Tensor& rstd, const std::string& what) {
    expect_close(gpu.dx, cpu.dx, 1e-5, 1e-5, what + " dx");
    const int64_t cols = x.shape().back();
    const int64_t rows = x.numel() / cols;
    std::vector<double> xv = mp::testing::to_doubles(x), dyv = mp::testing::to_doubles(dy);
    std::vector<double> meanv = mp::testing::to_doubles(mean), rstdv = mp::testing::to_doubles(rstd);
    std::vector<double> dgamma_terms(xv.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            dgamma_terms[r * cols + c] = dyv[r * cols + c] * (xv[r * cols + c] - meanv[r]) * rstdv[r];
    expect_close(gpu.dgamma, cpu.dgamma, 0.0, 1e-5 * max_column_abs_sum(dgamma_terms, rows, cols), what + " dgamma");
    expect_close(gpu.dbeta, cpu.dbeta, 0.0, 1e-5 * max_column_abs_sum(dyv, rows, cols), what + " dbeta");
}

}  // namespace

// ---------------------------------------------------------------- CPU reference

TEST(LayerNormCpu, ConstantRowsGiveBetaExactly) {
    const int64_t cols = 7;
    const std::vector<float> constants = {3.7f, -2.25f, 0.0f};
    std::vector<float> values;
    for (float constant : constants) values.insert(values.end(), cols, constant);
    Tensor x = Tensor::from_vector(values, {3, cols});
    Tensor gamma = normal({cols}, 1, 1.0, 0.5);
    Tensor beta = normal({cols}, 2, 0.0, 1.0);
    ops::LayerNormResult result = ops::layernorm(x, gamma, beta, 1e-5);
    // Seven copies of a float sum exactly in double and divide back exactly, so x - mean is 0,
    // y = 0 * gamma + beta exactly, and rstd = 1 / sqrt(0 + eps) rounded once to float.
    for (int64_t row = 0; row < 3; ++row)
        expect_equal(result.y.slice(row, row + 1).reshape({cols}), beta, "y of a constant row");
    expect_equal(result.mean, Tensor::from_vector(constants, {3}), "mean of constant rows");
    expect_equal(result.rstd, Tensor::full({3}, 1.0 / std::sqrt(1e-5)), "rstd = 1/sqrt(eps) for zero variance");
}

TEST(LayerNormCpu, FourElementRowByHand) {
    // x = (1, 2, 3, 4): mean 2.5, biased variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25. With
    // eps = 0, rstd = 1 / sqrt(1.25) = 2 / sqrt(5) and xhat = (-3, -1, 1, 3) / sqrt(5).
    Tensor x = Tensor::from_vector<double>({1, 2, 3, 4}, {1, 4});
    Tensor gamma = Tensor::from_vector<double>({1, 2, 0.5, -1}, {4});
    Tensor beta = Tensor::from_vector<double>({0, 1, -1, 0.5}, {4});
    const double root5 = std::sqrt(5.0);
    const double a = 1 / root5;  // xhat = (-3a, -a, a, 3a); y = xhat * gamma + beta
    Tensor expected_y = Tensor::from_vector<double>({-3 * a, -2 * a + 1, 0.5 * a - 1, -3 * a + 0.5}, {1, 4});

    ops::LayerNormResult result = ops::layernorm(x, gamma, beta, 0.0);
    expect_close(result.y, expected_y, 0.0, 1e-15, "y, float64 (a few ulp of values ~1)");
    expect_equal(result.mean, Tensor::from_vector<double>({2.5}, {1}), "mean (exact in binary)");
    expect_close(result.rstd, Tensor::from_vector<double>({2 / root5}, {1}), 1e-15, 0.0, "rstd, float64");

    // eps goes under the root with the variance: rstd = 1 / sqrt(1.25 + eps).
    ops::LayerNormResult with_eps = ops::layernorm(x, gamma, beta, 0.01);
    expect_close(with_eps.rstd, Tensor::from_vector<double>({1 / std::sqrt(1.26)}, {1}), 1e-15, 0.0, "rstd, eps 0.01");

    // float32 computes in double and rounds once: within half a float ulp (6e-8 relative).
    ops::LayerNormResult single =
        ops::layernorm(x.to(DType::Float32), gamma.to(DType::Float32), beta.to(DType::Float32), 0.0);
    expect_close(single.y, expected_y, 6e-8, 0.0, "y, float32");
}

TEST(LayerNormCpu, NormalisedRowsHaveZeroMeanAndUnitScaledVariance) {
    // With gamma = 1, beta = 0 each row of y has mean 0 and mean square var / (var + eps), and
    // mean and rstd equal the row statistics computed directly here.
    const int64_t rows = 5, cols = 33;
    const double eps = 1e-3;  // large enough to change the variance visibly
    Tensor x = normal({rows, cols}, 3, 0.7, 0.2, DType::Float64);
    ops::LayerNormResult result =
        ops::layernorm(x, Tensor::full({cols}, 1.0, DType::Float64), Tensor::zeros({cols}, DType::Float64), eps);
    std::vector<double> xv = x.to_vector<double>(), yv = result.y.to_vector<double>();
    for (int64_t r = 0; r < rows; ++r) {
        double mean = 0.0, var = 0.0, y_mean = 0.0, y_square = 0.0;
        for (int64_t c = 0; c < cols; ++c) mean += xv[r * cols + c] / cols;
        for (int64_t c = 0; c < cols; ++c) var += (xv[r * cols + c] - mean) * (xv[r * cols + c] - mean) / cols;
        for (int64_t c = 0; c < cols; ++c) {
            y_mean += yv[r * cols + c] / cols;
            y_square += yv[r * cols + c] * yv[r * cols + c] / cols;
        }
        // float64 sums of 33 terms of size ~1: errors ~1e-15.
        EXPECT_NEAR(result.mean.to_vector<double>()[r], mean, 1e-14) << "row " << r;
        EXPECT_NEAR(result.rstd.to_vector<double>()[r], 1 / std::sqrt(var + eps), 1e-12) << "row " << r;
        EXPECT_NEAR(y_mean, 0.0, 1e-14) << "row " << r;
        EXPECT_NEAR(y_square, var / (var + eps), 1e-14) << "row " << r;
        EXPECT_LT(y_square, 0.99) << "eps should visibly shrink the variance of row " << r;
    }
}

// Rows are shared over the threads and each column sum of dgamma / dbeta runs over the rows in order
// on one thread: dx, dgamma and dbeta have the same bits on 1, 2 and 3 threads, at a shape whose
// column sums are split over them (cols >= kMinParallelElements / rows).
TEST(LayerNormCpu, BackwardBitsDoNotDependOnTheThreadCount) {
    const int64_t rows = 64, cols = 1030;
    static_assert(1030 >= kernels::cpu::kMinParallelElements / 64, "the column sums must be threaded");
    const std::vector<float> x = normal({rows, cols}, 840, 0.5, 2.0).to_vector<float>();
    const std::vector<float> dy = normal({rows, cols}, 841, 0.0, 1.0).to_vector<float>();
    const std::vector<float> gamma = normal({cols}, 842, 1.0, 0.3).to_vector<float>();
    const std::vector<float> beta = normal({cols}, 843, 0.0, 0.3).to_vector<float>();
    std::vector<float> y(x.size()), mean(rows), rstd(rows);
    kernels::cpu::layernorm_forward(x.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), rows,
                                    cols, 1e-5);
    const int threads_before = cpu_threads();
    std::vector<float> one_thread;
    for (int threads : {1, 2, 3}) {
        set_cpu_threads(threads);
        std::vector<float> grads(x.size() + 2 * cols);  // dx, dgamma, dbeta one after the other
        float *dx = grads.data(), *dgamma = dx + x.size(), *dbeta = dgamma + cols;
        kernels::cpu::layernorm_backward(dy.data(), x.data(), gamma.data(), mean.data(), rstd.data(), dx, dgamma,
                                         dbeta, rows, cols);
        if (threads == 1) {
            one_thread = grads;
            continue;
        }
        EXPECT_EQ(std::memcmp(dx, one_thread.data(), x.size() * sizeof(float)), 0) << "dx, " << threads << " threads";
        EXPECT_EQ(std::memcmp(dgamma, one_thread.data() + x.size(), cols * sizeof(float)), 0)
            << "dgamma, " << threads << " threads";
        EXPECT_EQ(std::memcmp(dbeta, one_thread.data() + x.size() + cols, cols * sizeof(float)), 0)
            << "dbeta, " << threads << " threads";
    }
    set_cpu_threads(threads_before);
}

TEST(LayerNormCpu, BackwardMatchesFiniteDifferences) {
    // L = sum(w * layernorm(x, gamma, beta).y), so dy = w. Central differences in float64 with
    // step 1e-5: truncation ~ step^2 * |L'''| ~ 1e-9 and rounding ~ 1e-16 * |L| / step ~ 1e-10,
    // so 1e-7 absolute (plus 1e-6 relative) separates a right gradient from a wrong one.
    const Shape shape{2, 3, 5};
    const double eps = 1e-5, step = 1e-5;
    Tensor x = normal(shape, 11, 0.3, 1.5, DType::Float64);
    Tensor gamma = normal({5}, 12, 1.0, 0.5, DType::Float64);
    Tensor beta = normal({5}, 13, 0.0, 1.0, DType::Float64);
    Tensor w = normal(shape, 14, 0.0, 1.0, DType::Float64);

    ops::LayerNormResult forward = ops::layernorm(x, gamma, beta, eps);
    EXPECT_EQ(forward.mean.shape(), (Shape{2, 3}));
    ops::LayerNormGrads grads = ops::layernorm_backward(w, x, gamma, forward.mean, forward.rstd);

    auto loss_of_x = [&](const Tensor& at) { return dot(ops::layernorm(at, gamma, beta, eps).y, w); };
    auto loss_of_gamma = [&](const Tensor& at) { return dot(ops::layernorm(x, at, beta, eps).y, w); };
    auto loss_of_beta = [&](const Tensor& at) { return dot(ops::layernorm(x, gamma, at, eps).y, w); };
    expect_close(grads.dx, numerical_gradient(loss_of_x, x, step), 1e-6, 1e-7, "dx vs central differences");
    expect_close(grads.dgamma, numerical_gradient(loss_of_gamma, gamma, step), 1e-6, 1e-7,
                 "dgamma vs central differences");
    expect_close(grads.dbeta, numerical_gradient(loss_of_beta, beta, step), 1e-6, 1e-7,
                 "dbeta vs central differences");
}

// ---------------------------------------------------------------- CUDA against the CPU

TEST(LayerNormCuda, ForwardMatchesCpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    uint64_t seed = 100;
    // 1, 7, 33: scalar path; 768, 1000: float4 register path (6 and 8 float4 per lane, 1000
    // leaving lanes idle in the last slot); 2048: too wide for registers, scalar path.
    for (int64_t cols : {1, 7, 33, 768, 1000, 2048}) {
        for (int64_t rows : {1, 5, 257, 4099}) {
            const std::string what = "forward (" + std::to_string(rows) + ", " + std::to_string(cols) + ")";
            Tensor x = normal({rows, cols}, seed++, 0.5, 2.0);
            Tensor gamma = normal({cols}, seed++, 1.0, 0.3);
            Tensor beta = normal({cols}, seed++, 0.0, 0.5);
            ops::LayerNormResult cpu = ops::layernorm(x, gamma, beta, 1e-5);
            ops::LayerNormResult cuda = cuda_forward_poisoned(x.to(gpu), gamma.to(gpu), beta.to(gpu), 1e-5);
            expect_forward_close(cuda, cpu, what);
        }
    }
}

TEST(LayerNormCuda, UnalignedParametersTakeTheScalarPath) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    const int64_t rows = 257, cols = 768;
    Tensor x = normal({rows, cols}, 21, 0.5, 2.0);
    // Elements [1, cols + 1) of a longer vector: 4 bytes past a 16-byte boundary, so the
    // launcher must not use float4 loads on them.
    Tensor gamma = normal({cols + 1}, 22, 1.0, 0.3).to(gpu).slice(1, cols + 1);
    Tensor beta = normal({cols + 1}, 23, 0.0, 0.5).to(gpu).slice(1, cols + 1);
    ops::LayerNormResult cpu = ops::layernorm(x, gamma.to(Device::cpu()), beta.to(Device::cpu()), 1e-5);
    expect_forward_close(cuda_forward_poisoned(x.to(gpu), gamma, beta, 1e-5), cpu, "forward, unaligned gamma/beta");

    Tensor dy = normal({rows, cols}, 24, 0.0, 1.0);
    ops::LayerNormGrads cpu_grads = ops::layernorm_backward(dy, x, gamma.to(Device::cpu()), cpu.mean, cpu.rstd);
    ops::LayerNormGrads cuda_grads =
        cuda_backward_poisoned(dy.to(gpu), x.to(gpu), gamma, cpu.mean.to(gpu), cpu.rstd.to(gpu));
    expect_backward_close(cuda_grads, cpu_grads, dy, x, cpu.mean, cpu.rstd, "backward, unaligned gamma");
}

TEST(LayerNormCuda, BackwardMatchesCpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    uint64_t seed = 200;
    for (int64_t cols : {1, 7, 33, 768, 1000, 2048}) {
        for (int64_t rows : {1, 5, 257, 4099}) {
            const std::string what = "backward (" + std::to_string(rows) + ", " + std::to_string(cols) + ")";
            Tensor x = normal({rows, cols}, seed++, 0.5, 2.0);
            Tensor gamma = normal({cols}, seed++, 1.0, 0.3);
            Tensor beta = normal({cols}, seed++, 0.0, 0.5);
            Tensor dy = normal({rows, cols}, seed++, 0.0, 1.0);
            // Both sides get the same saved statistics, so only the backward is compared.
            ops::LayerNormResult forward = ops::layernorm(x, gamma, beta, 1e-5);
            ops::LayerNormGrads cpu = ops::layernorm_backward(dy, x, gamma, forward.mean, forward.rstd);
            ops::LayerNormGrads cuda = cuda_backward_poisoned(dy.to(gpu), x.to(gpu), gamma.to(gpu),
                                                              forward.mean.to(gpu), forward.rstd.to(gpu));
            expect_backward_close(cuda, cpu, dy, x, forward.mean, forward.rstd, what);
        }
    }
}

TEST(LayerNormCuda, RunsAreBitwiseDeterministic) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    const int64_t rows = 4099, cols = 768;
    Tensor x = normal({rows, cols}, 31, 0.5, 2.0).to(gpu);
    Tensor gamma = normal({cols}, 32, 1.0, 0.3).to(gpu);
    Tensor beta = normal({cols}, 33, 0.0, 0.5).to(gpu);
    Tensor dy = normal({rows, cols}, 34, 0.0, 1.0).to(gpu);
    ops::LayerNormResult first = cuda_forward_poisoned(x, gamma, beta, 1e-5);
    ops::LayerNormResult second = cuda_forward_poisoned(x, gamma, beta, 1e-5);
    expect_equal(second.y, first.y, "forward y, two runs");
    ops::LayerNormGrads grads_first = cuda_backward_poisoned(dy, x, gamma, first.mean, first.rstd);
    ops::LayerNormGrads grads_second = cuda_backward_poisoned(dy, x, gamma, first.mean, first.rstd);
    expect_equal(grads_second.dx, grads_first.dx, "dx, two runs");
    expect_equal(grads_second.dgamma, grads_first.dgamma, "dgamma, two runs (fixed-order reduction)");
    expect_equal(grads_second.dbeta, grads_first.dbeta, "dbeta, two runs (fixed-order reduction)");
}

TEST(LayerNormCuda, OpsDispatchToCudaWithLeadingDims) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    const Shape shape{4, 7, 768};
    Tensor x = normal(shape, 41, 0.5, 2.0);
    Tensor gamma = normal({768}, 42, 1.0, 0.3);
    Tensor beta = normal({768}, 43, 0.0, 0.5);
    Tensor dy = normal(shape, 44, 0.0, 1.0);
    ops::LayerNormResult cpu = ops::layernorm(x, gamma, beta);
    ops::LayerNormResult cuda = ops::layernorm(x.to(gpu), gamma.to(gpu), beta.to(gpu));
    EXPECT_EQ(cuda.mean.shape(), (Shape{4, 7}));
    EXPECT_TRUE(cuda.y.device().is_cuda());
    expect_forward_close(cuda, cpu, "op forward");
    ops::LayerNormGrads cpu_grads = ops::layernorm_backward(dy, x, gamma, cpu.mean, cpu.rstd);
    ops::LayerNormGrads cuda_grads =
        ops::layernorm_backward(dy.to(gpu), x.to(gpu), gamma.to(gpu), cpu.mean.to(gpu), cpu.rstd.to(gpu));
    expect_backward_close(cuda_grads, cpu_grads, dy, x, cpu.mean, cpu.rstd, "op backward");
}

TEST(LayerNormCuda, MixedDevicesAreAnError) {
    MP_REQUIRE_GPU();
    Tensor x = Tensor::zeros({4, 8}, DType::Float32, Device::cuda(0));
    Tensor on_cpu = Tensor::zeros({8});
    Tensor on_gpu = Tensor::zeros({8}, DType::Float32, Device::cuda(0));
    expect_invalid_argument([&] { ops::layernorm(x, on_cpu, on_gpu); },
                            {"layernorm", "different devices", "cuda:0", "float32(8) on cpu"});
    Tensor stats = Tensor::zeros({4}, DType::Float32, Device::cuda(0));
    expect_invalid_argument([&] { ops::layernorm_backward(x, x, on_gpu, stats, Tensor::zeros({4})); },
                            {"layernorm_backward", "different devices", "float32(4) on cpu"});
}

// ---------------------------------------------------------------- argument checks

TEST(LayerNormOps, ForwardArgumentErrorsNameTheOpAndValues) {
    Tensor x = Tensor::zeros({4, 7, 512});
    Tensor gamma = Tensor::zeros({512});
    Tensor beta = Tensor::zeros({512});
    expect_invalid_argument([&] { ops::layernorm(Tensor(), gamma, beta); }, {"layernorm", "x is an undefined tensor"});
    expect_invalid_argument([&] { ops::layernorm(x, Tensor(), beta); }, {"layernorm", "gamma is an undefined tensor"});
    expect_invalid_argument([&] { ops::layernorm(x, gamma, Tensor()); }, {"layernorm", "beta is an undefined tensor"});
    expect_invalid_argument([&] { ops::layernorm(Tensor::zeros({4, 512}, DType::Int32), gamma, beta); },
                            {"layernorm", "expects float32", "int32(4, 512)"});
    expect_invalid_argument([&] { ops::layernorm(Tensor::full({}, 1.0), gamma, beta); },
                            {"layernorm", "x needs at least 1 dimension", "()"});
    expect_invalid_argument([&] { ops::layernorm(Tensor::zeros({4, 0}), Tensor::zeros({0}), Tensor::zeros({0})); },
                            {"layernorm", "x has shape (4, 0)", "must be non-empty"});
    expect_invalid_argument([&] { ops::layernorm(x, Tensor::zeros({511}), beta); },
                            {"layernorm", "gamma has shape (511)", "expected (512)", "x (4, 7, 512)"});
    expect_invalid_argument([&] { ops::layernorm(x, gamma, Tensor::zeros({513})); },
                            {"layernorm", "beta has shape (513)", "expected (512)", "x (4, 7, 512)"});
    expect_invalid_argument([&] { ops::layernorm(x, Tensor::zeros({512}, DType::Float64), beta); },
                            {"layernorm", "dtype mismatch", "float32(4, 7, 512)", "float64(512)"});
    expect_invalid_argument([&] { ops::layernorm(x, gamma, beta, -1e-5); }, {"layernorm", "eps must be >= 0", "-1e-05"});
}

TEST(LayerNormOps, BackwardArgumentErrorsNameTheOpAndValues) {
    Tensor x = Tensor::zeros({4, 7, 512});
    Tensor dy = Tensor::zeros({4, 7, 512});
    Tensor gamma = Tensor::zeros({512});
    Tensor stats = Tensor::zeros({4, 7});
    const char* op = "layernorm_backward";
    expect_invalid_argument([&] { ops::layernorm_backward(Tensor(), x, gamma, stats, stats); },
                            {op, "dy is an undefined tensor"});
    expect_invalid_argument([&] { ops::layernorm_backward(dy, Tensor(), gamma, stats, stats); },
                            {op, "x is an undefined tensor"});
    expect_invalid_argument([&] { ops::layernorm_backward(dy, x, Tensor(), stats, stats); },
                            {op, "gamma is an undefined tensor"});
    expect_invalid_argument([&] { ops::layernorm_backward(dy, x, gamma, Tensor(), stats); },
                            {op, "mean is an undefined tensor"});
    expect_invalid_argument([&] { ops::layernorm_backward(dy, x, gamma, stats, Tensor()); },
                            {op, "rstd is an undefined tensor"});
    expect_invalid_argument(
        [&] { ops::layernorm_backward(dy, Tensor::zeros({4, 7, 512}, DType::Int32), gamma, stats, stats); },
        {op, "expects float32", "int32(4, 7, 512)"});
    expect_invalid_argument([&] { ops::layernorm_backward(dy, Tensor::full({}, 1.0), gamma, stats, stats); },
                            {op, "x needs at least 1 dimension", "()"});
    expect_invalid_argument(
        [&] {
            ops::layernorm_backward(Tensor::zeros({4, 0}), Tensor::zeros({4, 0}), Tensor::zeros({0}),
                                    Tensor::zeros({4}), Tensor::zeros({4}));
        },
        {op, "x has shape (4, 0)", "must be non-empty"});
    expect_invalid_argument([&] { ops::layernorm_backward(dy, x, Tensor::zeros({511}), stats, stats); },
                            {op, "gamma has shape (511)", "expected (512)", "x (4, 7, 512)"});
    expect_invalid_argument([&] { ops::layernorm_backward(Tensor::zeros({4, 8, 512}), x, gamma, stats, stats); },
                            {op, "dy has shape (4, 8, 512)", "expected x's shape (4, 7, 512)"});
    expect_invalid_argument([&] { ops::layernorm_backward(dy, x, gamma, Tensor::zeros({4, 6}), stats); },
                            {op, "mean has shape (4, 6)", "expected (4, 7)", "(4, 7, 512)"});
    expect_invalid_argument([&] { ops::layernorm_backward(dy, x, gamma, stats, Tensor::zeros({28})); },
                            {op, "rstd has shape (28)", "expected (4, 7)", "(4, 7, 512)"});
    expect_invalid_argument(
        [&] { ops::layernorm_backward(dy, x, gamma, Tensor::zeros({4, 7}, DType::Float64), stats); },
        {op, "dtype mismatch", "float32(4, 7, 512)", "float64(4, 7)"});
}

// ---------------------------------------------------------------- bfloat16 (CPU)

// bfloat16 LayerNorm keeps its statistics in float64 while computing and saves mean and rstd as
// float32 (never rounded to 8 bits); y, dx, dgamma and dbeta are the float64 path on the widened
// inputs, rounded to float32 and then to nearest even, bit for bit. Against float32 on unrounded
// inputs: x, gamma and beta each move by at most u = 2^-8 relative; xhat is scale-invariant, so a
// rounding of x moves it by at most about 2u |x| rstd; y = xhat gamma + beta then moves by at most
// u(2 |x - mean| rstd |gamma| + |xhat gamma| + |beta|) before its own rounding u|ỹ| (1% slack).
TEST(LayerNormBf16, IsTheFloat64PathRoundedOnceAndWithinItsBound) {
    const int64_t rows = 9, cols = 37;
    Tensor x = mp::testing::random_tensor({rows, cols}, 3, 2.0), gam = mp::testing::random_tensor({cols}, 4), bet = mp::testing::random_tensor({cols}, 5);
    Tensor dy = mp::testing::random_tensor({rows, cols}, 6).to(DType::BFloat16);
    Tensor xb = x.to(DType::BFloat16), gb = gam.to(DType::BFloat16), bb = bet.to(DType::BFloat16);
    ops::LayerNormResult fwd = ops::layernorm(xb, gb, bb, 1e-5);
    EXPECT_EQ(fwd.mean.dtype(), DType::Float32);
    EXPECT_EQ(fwd.rstd.dtype(), DType::Float32);
    ops::LayerNormResult wide = ops::layernorm(xb.to(DType::Float64), gb.to(DType::Float64), bb.to(DType::Float64), 1e-5);
    auto expect_rounded = [](const Tensor& got, const Tensor& w, const std::string& what) {
        std::vector<bfloat16> g = got.to_vector<bfloat16>();
        std::vector<double> e = w.to_vector<double>();
        for (size_t i = 0; i < g.size(); ++i)
            ASSERT_EQ(g[i].bits, element_from_double<bfloat16>(e[i]).bits) << what << " element " << i;
    };
    expect_rounded(fwd.y, wide.y, "y");
    std::vector<float> mean = fwd.mean.to_vector<float>();
    std::vector<double> mean_wide = wide.mean.to_vector<double>();
    for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(mean[r], static_cast<float>(mean_wide[r])) << r;

    ops::LayerNormGrads grads = ops::layernorm_backward(dy, xb, gb, fwd.mean, fwd.rstd);
    ops::LayerNormGrads grads_wide = ops::layernorm_backward(dy.to(DType::Float64), xb.to(DType::Float64),
                                                             gb.to(DType::Float64), fwd.mean.to(DType::Float64),
                                                             fwd.rstd.to(DType::Float64));
    expect_rounded(grads.dx, grads_wide.dx, "dx");
    expect_rounded(grads.dgamma, grads_wide.dgamma, "dgamma");
    expect_rounded(grads.dbeta, grads_wide.dbeta, "dbeta");

    const double u = std::ldexp(1.0, -8);
    ops::LayerNormResult f32 = ops::layernorm(x, gam, bet, 1e-5);
    std::vector<float> xs = x.to_vector<float>(), g = gam.to_vector<float>(), b = bet.to_vector<float>();
    std::vector<float> y32 = f32.y.to_vector<float>(), m32 = f32.mean.to_vector<float>(), r32 = f32.rstd.to_vector<float>();
    std::vector<double> y16 = fwd.y.to(DType::Float64).to_vector<double>();
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
            const size_t i = static_cast<size_t>(r * cols + c);
            const double xhat = (xs[i] - m32[r]) * r32[r];
            const double bound = u * (2 * std::fabs(xs[i] - m32[r]) * r32[r] * std::fabs(g[c]) +
                                      std::fabs(xhat * g[c]) + std::fabs(b[c]) + std::fabs(y16[i]));
            EXPECT_LE(std::fabs(y16[i] - y32[i]), 1.01 * bound + 1e-6) << r << "," << c;
        }
}

namespace {
void check_layernorm_cuda_bf16(int64_t rows, int64_t cols) {
    SCOPED_TRACE(::testing::Message() << "rows " << rows << ", cols " << cols);
    const Device gpu = Device::cuda(0);
    Tensor x = mp::testing::random_tensor({rows, cols}, 1).to(DType::BFloat16);
    Tensor gam = mp::testing::random_tensor({cols}, 2).to(DType::BFloat16);
    Tensor bet = mp::testing::random_tensor({cols}, 3).to(DType::BFloat16);
    Tensor dy = mp::testing::random_tensor({rows, cols}, 4).to(DType::BFloat16);
    ops::LayerNormResult cpu = ops::layernorm(x, gam, bet, 1e-5);
    ops::LayerNormResult dev = ops::layernorm(x.to(gpu), gam.to(gpu), bet.to(gpu), 1e-5);
    EXPECT_EQ(dev.mean.dtype(), DType::Float32);
    mp::testing::expect_close(dev.y, cpu.y, std::ldexp(1.0, -8), 1e-5, "y");
    ops::LayerNormGrads g_cpu = ops::layernorm_backward(dy, x, gam, cpu.mean, cpu.rstd);
    ops::LayerNormGrads g_dev = ops::layernorm_backward(dy.to(gpu), x.to(gpu), gam.to(gpu), dev.mean, dev.rstd);
    mp::testing::expect_close(g_dev.dx, g_cpu.dx, std::ldexp(1.0, -7), 1e-4, "dx");
    mp::testing::expect_close(g_dev.dgamma, g_cpu.dgamma, std::ldexp(1.0, -7), 1e-4, "dgamma");
}
}  // namespace

// On the GPU: the bfloat16 kernels (loads widened to float32, float32 statistics where the CPU
// keeps float64, each output rounded once): y and the gradients agree with the CPU to one
// bfloat16 rounding; mean and rstd are float32. A non-round shape and GPT-2's width.
TEST(LayerNormCudaBf16, MatchesCpu) {
    MP_REQUIRE_GPU();
    for (const auto& [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{7, 33}, {65, 768}})
        check_layernorm_cuda_bf16(rows, cols);
}

