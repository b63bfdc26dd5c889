// Activation tests: ReLU on hand values, GELU at closed-form points and against the float64
// formula, GELU's backward against float64 central differences, CUDA against the CPU reference
// (odd sizes, aligned and unaligned pointers, extreme inputs), and every argument error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/activations.h"
#include "kernels/cpu/parallel.h"
#include "tensor/device_context.h"
#include "tensor/ops/activations.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_close;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::poisoned;
using mp::testing::random_tensor;
using mp::testing::to_doubles;

namespace {

// GELU (tanh approximation) and its derivative, restated here in double.
double gelu_formula(double x) {
    const double c = std::sqrt(2.0 / M_PI);
    return 0.5 * x * (1.0 + std::tanh(c * (x + 0.044715 * x * x * x)));
}

double gelu_slope_formula(double x) {
    const double c = std::sqrt(2.0 / M_PI);
    const double t = std::tanh(c * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x * x);
}

Tensor doubles(const std::vector<double>& values, DType dtype) {
    return Tensor::from_vector(values, {static_cast<int64_t>(values.size())}).to(dtype);
}

// The float32 CPU references (the definition in double, rounded once), which the CUDA kernels are
// tested against: ops::gelu on a float32 CPU tensor takes the fast path instead.
Tensor gelu_reference(const Tensor& x) {
    std::vector<float> in = x.to_vector<float>(), out(in.size());
    kernels::cpu::gelu_forward_reference(in.data(), out.data(), static_cast<int64_t>(in.size()));
    return Tensor::from_vector(out, x.shape());
}

Tensor gelu_backward_reference(const Tensor& x, const Tensor& dy) {
    std::vector<float> in = x.to_vector<float>(), upstream = dy.to_vector<float>(), out(in.size());
    kernels::cpu::gelu_backward_reference(in.data(), upstream.data(), out.data(), static_cast<int64_t>(in.size()));
    return Tensor::from_vector(out, x.shape());
}

// x + delta elementwise, float64 on the CPU.
Tensor shifted(const Tensor& x, double delta) {
    std::vector<double> values = x.to_vector<double>();
    for (double& v : values) v += delta;
    return Tensor::from_vector(values, x.shape());
}

}  // namespace

TEST(Relu, ForwardAndBackwardOnHandValues) {
    for (DType dtype : {DType::Float32, DType::Float64}) {
        Tensor x = doubles({-2.0, -0.5, 0.0, 0.5, 3.0}, dtype);
        Tensor dy = doubles({1.0, 2.0, 3.0, 4.0, 5.0}, dtype);
        expect_equal(ops::relu(x), doubles({0.0, 0.0, 0.0, 0.5, 3.0}, dtype), "relu");
        // The gradient at x = 0 is taken as 0, as in PyTorch.
        expect_equal(ops::relu_backward(x, dy), doubles({0.0, 0.0, 0.0, 4.0, 5.0}, dtype), "relu_backward");
    }
}

TEST(Relu, NaNPropagatesForwardAndGivesZeroGradient) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    Tensor x = Tensor::from_vector<float>({nan, -1.0f}, {2});
    std::vector<float> y = ops::relu(x).to_vector<float>();
    EXPECT_TRUE(std::isnan(y[0]));
    EXPECT_EQ(y[1], 0.0f);
    std::vector<float> dx = ops::relu_backward(x, Tensor::full({2}, 7.0)).to_vector<float>();
    EXPECT_EQ(dx[0], 0.0f);
    EXPECT_EQ(dx[1], 0.0f);
}

TEST(Gelu, ClosedFormPoints) {
    for (DType dtype : {DType::Float32, DType::Float64}) {
        Tensor x = doubles({0.0, 10.0, 1e4, -10.0, -1e4}, dtype);
        std::vector<double> y = to_doubles(ops::gelu(x));
        std::vector<double> slope = to_doubles(ops::gelu_backward(x, Tensor::full({5}, 1.0, dtype)));
        EXPECT_EQ(y[0], 0.0);
        EXPECT_EQ(slope[0], 0.5);  // GELU'(0) = 0.5 (1 + tanh 0) = 0.5 exactly
        // For x >= 10, 1 - tanh(u) < 1e-37: GELU is x and its slope 1 to every digit of either type.
        EXPECT_EQ(y[1], 10.0);
        EXPECT_EQ(y[2], 1e4);
        EXPECT_EQ(slope[1], 1.0);
        EXPECT_EQ(slope[2], 1.0);
        // For x <= -10 the exact values are below 1e-36 (x * e^-87 at x = -10).
        EXPECT_LT(std::fabs(y[3]), 1e-30);
        EXPECT_LT(std::fabs(y[4]), 1e-30);
        EXPECT_LT(std::fabs(slope[3]), 1e-30);
        EXPECT_LT(std::fabs(slope[4]), 1e-30);
    }
}

TEST(Gelu, MatchesTheFloat64Formula) {
    const std::vector<double> points = {-3.0, -1.0, -0.5, 0.25, 1.0, 2.5};
    std::vector<double> y_expected, slope_expected;
    for (double p : points) y_expected.push_back(gelu_formula(p)), slope_expected.push_back(gelu_slope_formula(p));
    // PyTorch's F.gelu(torch.tensor(1.0, dtype=torch.float64), approximate='tanh').
    EXPECT_NEAR(gelu_formula(1.0), 0.8411919906082768, 1e-15);

    Tensor x64 = doubles(points, DType::Float64);
    Tensor ones64 = Tensor::full({6}, 1.0, DType::Float64);
    // Float64: the same formula evaluated in the same precision.
    expect_close(ops::gelu(x64), doubles(y_expected, DType::Float64), 1e-15, 0.0, "gelu float64");
    expect_close(ops::gelu_backward(x64, ones64), doubles(slope_expected, DType::Float64), 1e-15, 0.0,
                 "gelu slope float64");
    // Float32: the reference evaluates in double and rounds once, so it is within half a float ulp
    // (2^-24 relative); 1.2e-7 is one ulp.
    Tensor x32 = doubles(points, DType::Float32);
    expect_close(ops::gelu(x32), doubles(y_expected, DType::Float64), 1.2e-7, 0.0, "gelu float32");
    expect_close(ops::gelu_backward(x32, Tensor::full({6}, 1.0)), doubles(slope_expected, DType::Float64), 1.2e-7,
                 0.0, "gelu slope float32");
}

// Each output depends only on its own input, so perturbing every element at once gives the whole
// diagonal Jacobian: dx = dy * (GELU(x + h) - GELU(x - h)) / 2h.
TEST(Gelu, BackwardMatchesCentralDifferencesInFloat64) {
    Tensor x = random_tensor({400}, 11, 3.0, DType::Float64);
    Tensor dy = random_tensor({400}, 12, 1.0, DType::Float64);
    const double h = 1e-5;
    std::vector<double> plus = ops::gelu(shifted(x, h)).to_vector<double>();
    std::vector<double> minus = ops::gelu(shifted(x, -h)).to_vector<double>();
    std::vector<double> upstream = dy.to_vector<double>();
    std::vector<double> numeric(plus.size());
    for (size_t i = 0; i < plus.size(); ++i) numeric[i] = upstream[i] * (plus[i] - minus[i]) / (2 * h);
    // Truncation h^2 |GELU'''| / 6 < 1e-10 and rounding 1e-16 |GELU| / h < 1e-10 for |x| < 15,
    // times |dy| < 5.
    expect_close(ops::gelu_backward(x, dy), Tensor::from_vector(numeric, x.shape()), 0.0, 1e-8,
                 "gelu_backward vs central differences");
}

// float32 GELU's fast path (vectorized, the sigmoid of e^{-2|u|} in double) against the reference
// (the definition in double with std::tanh), on odd sizes from unaligned starts, both serial and
// split over threads. Each evaluates in double and rounds once, so away from cancellation they are
// the same float but where a double lands within ~1e-15 of a float rounding midpoint: one ulp,
// rtol 2^-23. Where the reference's 1 + tanh u cancels (u << 0) its absolute error is up to
// |x| 2^-53 in GELU and (1 + |x| du/dx) 2^-53 in GELU', times |dy|: atol per element, 2^-52 times
// that. And bitwise: a slice of the input (a micro-batch) gives the slice of the whole's output.
TEST(Gelu, Float32FastPathMatchesTheReference) {
    const std::vector<float> extremes = {0.0f, 10.0f, -10.0f, 1e4f, -1e4f, 1e20f, -1e20f, -4.5f, -7.25f};
    for (int64_t n : {1, 17, 1000, 100003}) {
        for (int64_t shift : {0, 3}) {
            SCOPED_TRACE(::testing::Message() << "n = " << n << ", shift = " << shift);
            std::vector<float> x = random_tensor({n + shift}, 300 + n, 3.0).to_vector<float>();
            std::vector<float> dy = random_tensor({n + shift}, 400 + n).to_vector<float>();
            for (size_t i = 0; i < extremes.size() && i + shift < x.size(); ++i) x[i + shift] = extremes[i];
            std::vector<float> y(n + shift), y_ref(n + shift), dx(n + shift), dx_ref(n + shift);
            kernels::cpu::gelu_forward(x.data() + shift, y.data() + shift, n);
            kernels::cpu::gelu_forward_reference(x.data() + shift, y_ref.data() + shift, n);
            kernels::cpu::gelu_backward(x.data() + shift, dy.data() + shift, dx.data() + shift, n);
            kernels::cpu::gelu_backward_reference(x.data() + shift, dy.data() + shift, dx_ref.data() + shift, n);
            int64_t forward_differ = 0, backward_differ = 0;
            for (int64_t i = shift; i < n + shift; ++i) {
                const double v = x[i], du_dx = kernels::kGeluSqrt2OverPi * (1.0 + 3.0 * kernels::kGeluCubic * v * v);
                const double ulp = std::ldexp(1.0, -23), eps = std::ldexp(1.0, -52);
                if (std::fabs(v) > 1e3) {  // beyond the cubic's double range checks: the closed forms
                    ASSERT_EQ(y[i], y_ref[i]) << "x = " << v;
                    continue;
                }
                ASSERT_LE(std::fabs(y[i] - y_ref[i]), ulp * std::fabs(y_ref[i]) + eps * std::fabs(v)) << "x = " << v;
                ASSERT_LE(std::fabs(dx[i] - dx_ref[i]),
                          ulp * std::fabs(dx_ref[i]) + eps * std::fabs(dy[i]) * (1.0 + std::fabs(v) * du_dx))
                    << "x = " << v << ", dy = " << dy[i];
                forward_differ += y[i] != y_ref[i] && v > -4.0;
                backward_differ += dx[i] != dx_ref[i] && v > -4.0;
            }
            // For x > -4 the reference is within ~3e-12 relative, so a differing float is a rare tie.
            EXPECT_LE(forward_differ, n / 1000) << "forward outputs differing for x > -4";
            EXPECT_LE(backward_differ, n / 1000) << "backward outputs differing for x > -4";

            const int64_t offset = n / 3;  // a micro-batch: the same bits as in the whole
            std::vector<float> y_part(n - offset), dx_part(n - offset);
            kernels::cpu::gelu_forward(x.data() + shift + offset, y_part.data(), n - offset);
            kernels::cpu::gelu_backward(x.data() + shift + offset, dy.data() + shift + offset, dx_part.data(),
                                        n - offset);
            for (int64_t i = 0; i < n - offset; ++i) {
                ASSERT_EQ(std::memcmp(&y_part[i], &y[shift + offset + i], sizeof(float)), 0) << "y at " << i;
                ASSERT_EQ(std::memcmp(&dx_part[i], &dx[shift + offset + i], sizeof(float)), 0) << "dx at " << i;
            }
        }
    }
    // NaN and infinities as the reference has them: NaN in, NaN out; GELU(inf) = inf; 0 * inf
    // makes GELU(-inf) and both slopes at infinity NaN.
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> specials = {nan, inf, -inf};
    const std::vector<float> ones(3, 1.0f);
    std::vector<float> y(3), y_ref(3), dx(3), dx_ref(3);
    kernels::cpu::gelu_forward(specials.data(), y.data(), 3);
    kernels::cpu::gelu_forward_reference(specials.data(), y_ref.data(), 3);
    kernels::cpu::gelu_backward(specials.data(), ones.data(), dx.data(), 3);
    kernels::cpu::gelu_backward_reference(specials.data(), ones.data(), dx_ref.data(), 3);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(std::isnan(y[i]), std::isnan(y_ref[i])) << specials[i];
        if (!std::isnan(y_ref[i])) {
            EXPECT_EQ(y[i], y_ref[i]) << specials[i];
        }
        EXPECT_EQ(std::isnan(dx[i]), std::isnan(dx_ref[i])) << specials[i];
    }
}

// Threads change only where each span runs (kernels/cpu/parallel.h): float32 GELU's fast path gives
// the same bits on 1, 2 and 3 threads at a size it splits over them.
TEST(Gelu, Float32BitsDoNotDependOnTheThreadCount) {
    const int64_t n = 100003;
    static_assert(100003 > kernels::cpu::kMinParallelElements, "the size must be threaded");
    const std::vector<float> x = random_tensor({n}, 820, 3.0).to_vector<float>();
    const std::vector<float> dy = random_tensor({n}, 821).to_vector<float>();
    const int threads_before = cpu_threads();
    std::vector<float> y_one, dx_one;
    for (int threads : {1, 2, 3}) {
        set_cpu_threads(threads);
        std::vector<float> y(n), dx(n);
        kernels::cpu::gelu_forward(x.data(), y.data(), n);
        kernels::cpu::gelu_backward(x.data(), dy.data(), dx.data(), n);
        if (threads == 1) {
            y_one = y, dx_one = dx;
            continue;
        }
        EXPECT_EQ(std::memcmp(y.data(), y_one.data(), n * sizeof(float)), 0) << "gelu on " << threads << " threads";
        EXPECT_EQ(std::memcmp(dx.data(), dx_one.data(), n * sizeof(float)), 0)
            << "gelu_backward on " << threads << " threads";
    }
    set_cpu_threads(threads_before);
}

// The raw CUDA kernels on NaN-poisoned outputs against the CPU reference. Each case runs twice:
// with every pointer 16-byte aligned (the float4 path plus an n % 4 tail), and with every pointer
// one float past the buffer start (the scalar path).
#if MP_CUDA  // calls raw kernels::cuda:: functions, which a CPU-only build does not have
TEST(ActivationsCuda, MatchCpuOnOddSizesAlignedAndUnaligned) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    cudaStream_t stream = compute_stream(0);
    const std::vector<double> extremes = {0.0, 10.0, -10.0, 1e4, -1e4, 1e20, -1e20};
    for (int64_t n : {1, 7, 33, 257, 1000, 1001, 3 * 50257}) {
        for (int64_t shift : {0, 1}) {
            SCOPED_TRACE(::testing::Message() << "n = " << n << ", shift = " << shift);
            std::vector<float> values = random_tensor({n + shift}, 100 + n, 3.0).to_vector<float>();
            for (size_t i = 0; i < extremes.size() && i + shift < values.size(); ++i)
                values[i + shift] = static_cast<float>(extremes[i]);
            Tensor x = Tensor::from_vector(values, {n + shift});
            Tensor dy = random_tensor({n + shift}, 200 + n);
            Tensor x_gpu = x.to(gpu), dy_gpu = dy.to(gpu);
            Tensor x_part = x.slice(shift, shift + n), dy_part = dy.slice(shift, shift + n);
            const float* x_ptr = x_gpu.data<float>() + shift;
            const float* dy_ptr = dy_gpu.data<float>() + shift;

            Tensor out = poisoned({n + shift}, DType::Float32, gpu);
            kernels::cuda::relu_forward(x_ptr, out.data<float>() + shift, n, stream);
            // Selecting or zeroing values is exact.
            expect_equal(out.slice(shift, shift + n), ops::relu(x_part), "relu");
            if (shift == 1) {
                EXPECT_TRUE(std::isnan(to_doubles(out)[0])) << "relu wrote before its range";
            }

            out = poisoned({n + shift}, DType::Float32, gpu);
            kernels::cuda::relu_backward(x_ptr, dy_ptr, out.data<float>() + shift, n, stream);
            expect_equal(out.slice(shift, shift + n), ops::relu_backward(x_part, dy_part), "relu_backward");

            out = poisoned({n + shift}, DType::Float32, gpu);
            kernels::cuda::gelu_forward(x_ptr, out.data<float>() + shift, n, stream);
            // u = sqrt(2/pi)(x + 0.044715 x^3) in float is ~3e-7 relative off, which exp(-2|u|) turns
            // into ~2|u| * 3e-7 relative error where GELU is x * exp(-2|u|)-small: at most ~1e-7
            // absolute (largest near x = -1.2); elsewhere a few ulps, < 1e-6 relative. A host
            // emulation of the kernel's float arithmetic over 2e7 inputs stays within a quarter of this.
            expect_close(out.slice(shift, shift + n), gelu_reference(x_part), 1e-6, 1e-7, "gelu");

            out = poisoned({n + shift}, DType::Float32, gpu);
            kernels::cuda::gelu_backward(x_ptr, dy_ptr, out.data<float>() + shift, n, stream);
            // GELU' in float is within ~2.4e-7 absolute (two ulps of 1, the emulation's worst is 0.12 of
            // this tolerance); it crosses 0 near x = -0.75, so the check needs an absolute part. dy ~ N(0, 1).
            expect_close(out.slice(shift, shift + n), gelu_backward_reference(x_part, dy_part), 1e-6, 1e-6,
                         "gelu_backward");
        }
    }
}
#endif  // MP_CUDA

TEST(ActivationsCuda, OpsDispatchToTheGpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    Tensor x = random_tensor({4, 33}, 5, 2.0), dy = random_tensor({4, 33}, 6);
    Tensor x_gpu = x.to(gpu), dy_gpu = dy.to(gpu);
    Tensor y = ops::gelu(x_gpu);
    EXPECT_TRUE(y.device().is_cuda());
    EXPECT_EQ(y.shape(), x.shape());
    // Tolerances as in MatchCpuOnOddSizesAlignedAndUnaligned.
    expect_close(y, gelu_reference(x), 1e-6, 1e-7, "gelu op");
    expect_close(ops::gelu_backward(x_gpu, dy_gpu), gelu_backward_reference(x, dy), 1e-6, 1e-6, "gelu_backward op");
    expect_equal(ops::relu(x_gpu), ops::relu(x), "relu op");
    expect_equal(ops::relu_backward(x_gpu, dy_gpu), ops::relu_backward(x, dy), "relu_backward op");
}

TEST(Activations, ForwardArgumentErrorsNameTheOpAndValues) {
    Tensor undefined;
    Tensor ints = Tensor::zeros({2, 3}, DType::Int32);
    expect_invalid_argument([&] { ops::relu(undefined); }, {"relu", "x is an undefined tensor"});
    expect_invalid_argument([&] { ops::relu(ints); }, {"relu", "expects float32", "int32(2, 3)"});
    expect_invalid_argument([&] { ops::gelu(undefined); }, {"gelu", "x is an undefined tensor"});
    expect_invalid_argument([&] { ops::gelu(ints); }, {"gelu", "expects float32", "int32(2, 3)"});
}

TEST(Activations, BackwardArgumentErrorsNameTheOpAndValues) {
    Tensor x = Tensor::zeros({2, 3});
    Tensor undefined;
    Tensor ints = Tensor::zeros({2, 3}, DType::Int32);
    Tensor doubles64 = Tensor::zeros({2, 3}, DType::Float64);
    Tensor transposed = Tensor::zeros({3, 2});
    for (const char* name : {"relu_backward", "gelu_backward"}) {
        const bool is_relu = std::string(name) == "relu_backward";
        auto call = [&](const Tensor& a, const Tensor& b) {
            return is_relu ? ops::relu_backward(a, b) : ops::gelu_backward(a, b);
        };
        expect_invalid_argument([&] { call(undefined, x); }, {name, "x is an undefined tensor"});
        expect_invalid_argument([&] { call(x, undefined); }, {name, "dy is an undefined tensor"});
        expect_invalid_argument([&] { call(ints, ints); }, {name, "expects float32", "int32(2, 3)"});
        expect_invalid_argument([&] { call(x, doubles64); }, {name, "dtype mismatch", "float32(2, 3)", "float64(2, 3)"});
        expect_invalid_argument([&] { call(x, transposed); }, {name, "shape mismatch", "(2, 3)", "(3, 2)"});
    }
}

TEST(ActivationsCuda, DeviceMismatchIsAnError) {
    MP_REQUIRE_GPU();
    Tensor x = Tensor::zeros({2, 3});
    Tensor dy_gpu = Tensor::zeros({2, 3}, DType::Float32, Device::cuda(0));
    expect_invalid_argument([&] { ops::relu_backward(x, dy_gpu); },
                            {"relu_backward", "different devices", "on cpu", "on cuda:0"});
    expect_invalid_argument([&] { ops::gelu_backward(x, dy_gpu); },
                            {"gelu_backward", "different devices", "on cpu", "on cuda:0"});
}

// ---------------------------------------------------------------- bfloat16

// bfloat16 activations: the float64 definition evaluated on the bfloat16 input, rounded to float32
// and then to nearest even (ReLU is exact). Against float32 on the unrounded input x: the input's
// rounding moves GELU by at most |GELU'(x)| u |x| (u = 2^-8; |GELU'| <= 1.13) and the output's by
// u |GELU(x)|, so |g̃ - g| <= u (1.13 |x| + |g̃|), checked with 1% slack for second-order terms.
TEST(ActivationsBf16, EachOutputIsTheDefinitionRoundedOnce) {
    Tensor x = mp::testing::random_tensor({31, 17}, 5, 3.0).to(DType::BFloat16);
    Tensor dy = mp::testing::random_tensor({31, 17}, 6).to(DType::BFloat16);
    Tensor xw = x.to(DType::Float64), dyw = dy.to(DType::Float64);
    auto expect_rounded = [](const Tensor& got, const Tensor& wide, const std::string& what) {
        std::vector<bfloat16> g = got.to_vector<bfloat16>();
        std::vector<double> w = wide.to_vector<double>();
        for (size_t i = 0; i < g.size(); ++i)
            ASSERT_EQ(g[i].bits, element_from_double<bfloat16>(w[i]).bits) << what << " element " << i;
    };
    expect_rounded(ops::relu(x), ops::relu(xw), "relu");
    expect_rounded(ops::relu_backward(x, dy), ops::relu_backward(xw, dyw), "relu_backward");
    expect_rounded(ops::gelu(x), ops::gelu(xw), "gelu");
    expect_rounded(ops::gelu_backward(x, dy), ops::gelu_backward(xw, dyw), "gelu_backward");

    const double u = std::ldexp(1.0, -8);
    Tensor xf = mp::testing::random_tensor({400}, 7, 3.0);
    std::vector<float> xs = xf.to_vector<float>(), g32 = ops::gelu(xf).to_vector<float>();
    std::vector<double> g16 = ops::gelu(xf.to(DType::BFloat16)).to(DType::Float64).to_vector<double>();
    for (size_t i = 0; i < xs.size(); ++i)
        EXPECT_LE(std::fabs(g16[i] - g32[i]), 1.01 * u * (1.13 * std::fabs(xs[i]) + std::fabs(g16[i]))) << xs[i];
}

// The CUDA bfloat16 kernels compute in float32 (expf) where the CPU uses float64: ReLU is
// bitwise; GELU agrees to one bfloat16 rounding (2^-8 relative) plus float32's error, tiny beside it.
TEST(ActivationsCudaBf16, MatchCpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    for (int64_t n : {1, 5, 4099}) {
        Tensor x = mp::testing::random_tensor({n}, 20 + n, 3.0).to(DType::BFloat16);
        Tensor dy = mp::testing::random_tensor({n}, 30 + n).to(DType::BFloat16);
        const std::string what = "n=" + std::to_string(n);
        mp::testing::expect_equal(ops::relu(x.to(gpu)), ops::relu(x), "relu " + what);
        mp::testing::expect_equal(ops::relu_backward(x.to(gpu), dy.to(gpu)), ops::relu_backward(x, dy), "relu' " + what);
#if MP_CUDA  // the raw kernel into a NaN-poisoned output: every element must be written
        Tensor y = poisoned({n}, DType::BFloat16, gpu), xg = x.to(gpu);
        kernels::cuda::gelu_forward(xg.data<bfloat16>(), y.data<bfloat16>(), n, compute_stream(0));
        mp::testing::expect_close(y, ops::gelu(x), std::ldexp(1.0, -8), 1e-6, "gelu " + what);
#endif
        mp::testing::expect_close(ops::gelu_backward(x.to(gpu), dy.to(gpu)), ops::gelu_backward(x, dy),
                                  std::ldexp(1.0, -8), 1e-6, "gelu' " + what);
    }
}
