// Optimizer steps: SGD and AdamW against closed forms and hand-computed sequences (float64 and
// float32 CPU), CPU float32 against float64, CUDA against the CPU over several steps on
// non-round sizes (float4 and scalar paths), and every argument error of both ops.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "tensor/ops/optimizer.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_close;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::random_tensor;

namespace {

// Hyper-parameters of the AdamW tests: PyTorch's defaults except a larger lr, so that updates
// are far above float rounding of the O(1) parameters.
constexpr double kLr = 1e-2;
constexpr double kBeta1 = 0.9;
constexpr double kBeta2 = 0.999;
constexpr double kEps = 1e-8;

// A gradient with every sign and magnitude regime: ordinary, zero (no move), and |g| ~ eps
// (where lr * g / (|g| + eps) is visibly less than lr).
const std::vector<double> kGrads = {0.5, -2.0, 0.0, 1e-8, -3e-8, 7.25};
const std::vector<double> kParams = {1.0, -0.5, 0.25, 2.0, -1.5, 0.125};

// lr * g / (|g| + eps): AdamW's first move from zero state, since the bias corrections turn
// m = (1 - beta1) g and v = (1 - beta2) g^2 back into g and g^2.
double first_adamw_move(double grad) { return kLr * grad / (std::fabs(grad) + kEps); }

template <typename T>
std::vector<T> cast_all(const std::vector<double>& values) {
    return std::vector<T>(values.begin(), values.end());
}

template <typename T>
Tensor tensor_of(const std::vector<double>& values) {
    return Tensor::from_vector(cast_all<T>(values), {static_cast<int64_t>(values.size())});
}

template <typename T>
void check_one_adamw_step_from_zero_state(double rtol) {
    const DType dtype = std::is_same_v<T, double> ? DType::Float64 : DType::Float32;
    const int64_t n = static_cast<int64_t>(kParams.size());
    Tensor param = tensor_of<T>(kParams);
    Tensor exp_avg = Tensor::zeros({n}, dtype);
    Tensor exp_avg_sq = Tensor::zeros({n}, dtype);
    ops::adamw_step_(param, tensor_of<T>(kGrads), exp_avg, exp_avg_sq, 1, kLr, kBeta1, kBeta2, kEps, 0.0);

    std::vector<double> expected_param, expected_exp_avg, expected_exp_avg_sq;
    for (size_t i = 0; i < kParams.size(); ++i) {
        // The inputs are exact in T, so the expectation is the exact result of the formula.
        const double grad = static_cast<T>(kGrads[i]);
        expected_param.push_back(static_cast<T>(kParams[i]) - first_adamw_move(grad));
        expected_exp_avg.push_back((1.0 - kBeta1) * grad);
        expected_exp_avg_sq.push_back((1.0 - kBeta2) * grad * grad);
    }
    expect_close(param, Tensor::from_vector(expected_param, {n}), rtol, 0.0, "param after one step");
    expect_close(exp_avg, Tensor::from_vector(expected_exp_avg, {n}), rtol, 0.0, "exp_avg after one step");
    expect_close(exp_avg_sq, Tensor::from_vector(expected_exp_avg_sq, {n}), rtol, 0.0, "exp_avg_sq after one step");
}

}  // namespace

// ---------------------------------------------------------------- AdamW closed forms

// Each value goes through about six roundings of the working precision, so 1e-14 in double
// (6 * 1.1e-16 is 7e-16, and the sqrt(1 - beta2) division cancels to within that) and
// 1e-6 in float (6 * 6e-8 = 3.6e-7).
TEST(AdamW, OneStepFromZeroStateMovesByLrTimesSignOfGrad) {
    check_one_adamw_step_from_zero_state<double>(1e-14);
    check_one_adamw_step_from_zero_state<float>(1e-6);
    // The closed form itself, checked by hand: an ordinary gradient moves by lr against its
    // sign, a zero gradient does not move, a gradient of size eps moves by lr / 2.
    EXPECT_NEAR(first_adamw_move(0.5), kLr, 1e-9);
    EXPECT_NEAR(first_adamw_move(-2.0), -kLr, 1e-9);
    EXPECT_EQ(first_adamw_move(0.0), 0.0);
    EXPECT_NEAR(first_adamw_move(1e-8), kLr / 2, 1e-15);
}

// A constant gradient keeps m_hat = g and v_hat = g^2 exactly at every step (m_t = (1 - beta1^t) g,
// v_t = (1 - beta2^t) g^2), so every step moves by the same lr * g / (|g| + eps), after the
// decoupled decay p *= 1 - lr * wd. Five steps in double: ~30 roundings of 1.1e-16 (3.3e-15),
// so 1e-14 relative (every expected value here is >= 0.07, far from zero).
TEST(AdamW, ConstantGradientMovesByTheSameAmountEveryStep) {
    const double weight_decay = 0.1;
    const int64_t n = static_cast<int64_t>(kParams.size());
    Tensor param = tensor_of<double>(kParams);
    Tensor grad = tensor_of<double>(kGrads);
    Tensor exp_avg = Tensor::zeros({n}, DType::Float64);
    Tensor exp_avg_sq = Tensor::zeros({n}, DType::Float64);
    std::vector<double> expected = kParams;
    for (int64_t step = 1; step <= 5; ++step) {
        ops::adamw_step_(param, grad, exp_avg, exp_avg_sq, step, kLr, kBeta1, kBeta2, kEps, weight_decay);
        for (size_t i = 0; i < expected.size(); ++i)
            expected[i] = expected[i] * (1.0 - kLr * weight_decay) - first_adamw_move(kGrads[i]);
    }
    expect_close(param, Tensor::from_vector(expected, {n}), 1e-14, 0.0, "param after 5 constant-gradient steps");
}

// With a zero gradient m and v stay zero, the Adam move is 0 / (0 + eps) = 0, and only the
// decoupled weight decay acts: one multiplication by 1 - lr * wd per step, rounded once in
// float as in the kernel, so the result is bitwise the repeated product.
TEST(AdamW, WeightDecayAloneShrinksByOneMinusLrTimesWeightDecay) {
    const double lr = 0.05, weight_decay = 0.5;
    const int64_t n = static_cast<int64_t>(kParams.size());
    Tensor param = tensor_of<float>(kParams);
    Tensor zeros = Tensor::zeros({n});
    Tensor exp_avg = Tensor::zeros({n});
    Tensor exp_avg_sq = Tensor::zeros({n});
    std::vector<float> expected = cast_all<float>(kParams);
    const float decay = static_cast<float>(1.0 - lr * weight_decay);  // 0.975
    for (int64_t step = 1; step <= 3; ++step) {
        ops::adamw_step_(param, zeros, exp_avg, exp_avg_sq, step, lr, kBeta1, kBeta2, kEps, weight_decay);
        for (float& value : expected) value = value * decay;
    }
    expect_equal(param, Tensor::from_vector(expected, {n}), "param after 3 decay-only steps");
    expect_equal(exp_avg, zeros, "exp_avg stays zero");
    expect_equal(exp_avg_sq, zeros, "exp_avg_sq stays zero");
    EXPECT_LT(param.to_vector<float>()[0], 0.93f);  // 0.975^3 = 0.927: the decay did act
}

// ---------------------------------------------------------------- SGD hand-computed sequences

// lr 0.5, momentum 0.5, weight decay 0.25, param 2, gradients 1, -1, 0.5. All values are
// dyadic, so both precisions compute them exactly (bitwise check):
//   step 1: g = 1 + 0.25*2 = 1.5;            buf = 1.5 (first step);       p = 2 - 0.75 = 1.25
//   step 2: g = -1 + 0.25*1.25 = -0.6875;    buf = 0.75 - 0.6875 = 0.0625; p = 1.25 - 0.03125 = 1.21875
//   step 3: g = 0.5 + 0.25*1.21875 = 0.8046875; buf = 0.03125 + 0.8046875 = 0.8359375;
//           p = 1.21875 - 0.41796875 = 0.80078125
template <typename T>
void check_sgd_momentum_sequence() {
    const DType dtype = std::is_same_v<T, double> ? DType::Float64 : DType::Float32;
    Tensor param = tensor_of<T>({2.0});
    // NaN in the buffer: the first step must overwrite it without reading it.
    Tensor momentum_buffer = mp::testing::poisoned({1}, dtype, Device::cpu());
    const std::vector<double> grads = {1.0, -1.0, 0.5};
    const std::vector<double> expected_param = {1.25, 1.21875, 0.80078125};
    const std::vector<double> expected_buffer = {1.5, 0.0625, 0.8359375};
    for (size_t step = 0; step < grads.size(); ++step) {
        ops::sgd_step_(param, tensor_of<T>({grads[step]}), momentum_buffer, 0.5, 0.5, 0.25, step == 0);
        expect_equal(param, tensor_of<T>({expected_param[step]}), "param");
        expect_equal(momentum_buffer, tensor_of<T>({expected_buffer[step]}), "momentum_buffer");
    }
}

TEST(Sgd, MomentumThreeStepsOnAScalarMatchTheHandSequence) {
    check_sgd_momentum_sequence<double>();
    check_sgd_momentum_sequence<float>();
}

// Without momentum the update is p -= lr * (g + wd * p), and the buffer is neither needed nor
// touched. lr 0.5, wd 0.25: p = 2 - 0.5 * (1 + 0.5) = 1.25; p = -1 - 0.5 * (-2 - 0.25) = 0.125.
TEST(Sgd, WithoutMomentumTheBufferIsIgnored) {
    Tensor param = tensor_of<float>({2.0, -1.0});
    Tensor grad = tensor_of<float>({1.0, -2.0});
    Tensor no_buffer;
    ops::sgd_step_(param, grad, no_buffer, 0.5, 0.0, 0.25, true);
    expect_equal(param, tensor_of<float>({1.25, 0.125}), "param without momentum");
    Tensor unused_buffer = tensor_of<float>({7.0, 8.0});
    ops::sgd_step_(param, grad, unused_buffer, 0.0, 0.0, 0.0, true);  // lr 0: no move either
    expect_equal(param, tensor_of<float>({1.25, 0.125}), "param with lr 0");
    expect_equal(unused_buffer, tensor_of<float>({7.0, 8.0}), "buffer untouched when momentum is 0");
}

// ---------------------------------------------------------------- float32 against float64

// Five steps of each optimizer on the same (float-exact) data in both precisions. Each step
// rounds each value a handful of times at 6e-8, so after 5 steps the float result is within
// 1e-6 relative of the double one. An absolute term covers values that cancel to near zero
// (m = beta1 m + (1 - beta1) g, p - lr g): their error is a few ulps of the O(1) operands.
TEST(Optimizers, CpuFloatAgreesWithDoubleOverFiveSteps) {
    const int64_t n = 1000;
    Tensor param32 = random_tensor({n}, 1);
    Tensor param64 = param32.to(DType::Float64);
    Tensor m32 = Tensor::zeros({n}), v32 = Tensor::zeros({n});
    Tensor m64 = Tensor::zeros({n}, DType::Float64), v64 = Tensor::zeros({n}, DType::Float64);
    Tensor sgd32 = param32.clone(), sgd64 = param64.clone();
    Tensor buf32 = Tensor::zeros({n}), buf64 = Tensor::zeros({n}, DType::Float64);
    for (int64_t step = 1; step <= 5; ++step) {
        Tensor grad32 = random_tensor({n}, 100 + step);
        Tensor grad64 = grad32.to(DType::Float64);
        ops::adamw_step_(param32, grad32, m32, v32, step, kLr, kBeta1, kBeta2, kEps, 0.1);
        ops::adamw_step_(param64, grad64, m64, v64, step, kLr, kBeta1, kBeta2, kEps, 0.1);
        ops::sgd_step_(sgd32, grad32, buf32, 0.1, 0.9, 0.01, step == 1);
        ops::sgd_step_(sgd64, grad64, buf64, 0.1, 0.9, 0.01, step == 1);
    }
    expect_close(param32, param64, 1e-6, 1e-7, "adamw param float vs double");
    expect_close(m32, m64, 1e-6, 1e-6, "adamw exp_avg float vs double");
    expect_close(v32, v64, 1e-6, 0.0, "adamw exp_avg_sq float vs double (a sum of squares: no cancellation)");
    expect_close(sgd32, sgd64, 1e-6, 1e-6, "sgd param float vs double");
    expect_close(buf32, buf64, 1e-6, 1e-6, "sgd momentum_buffer float vs double");
}

// ---------------------------------------------------------------- CUDA against the CPU

namespace {

// How the CUDA buffers are laid out: aligned (float4 path when n % 4 == 0), or the gradient
// placed one float into its allocation (a dim-0 slice), which must force the scalar path.
enum class Layout { Aligned, GradOffsetByOneFloat };

Tensor to_cuda(const Tensor& host, Layout layout) {
    if (layout == Layout::Aligned) return host.to(Device::cuda(0));
    const int64_t n = host.numel();
    Tensor allocation = Tensor::empty({n + 1}, DType::Float32, Device::cuda(0));
    Tensor view = allocation.slice(1, n + 1);
    view.copy_from(host);
    return view;
}

const std::vector<int64_t> kCudaSizes = {1, 7, 33, 1000, 124 * 1000, 124 * 1000 + 3};

// Tolerances of the CUDA comparisons: both sides do the same float operations in the same
// order, except that nvcc contracts a * b + c into an FMA (one rounding instead of two) and
// sqrtf / division may differ by an ulp; over 5 steps that stays within 1e-6 relative, plus
// a few ulps (1e-6) of the O(1) operands where a value cancels to near zero.
constexpr double kCudaRtol = 1e-6;
constexpr double kCudaAtol = 1e-6;

void expect_adamw_cuda_matches_cpu(int64_t n, Layout layout) {
    SCOPED_TRACE(::testing::Message() << "n = " << n << (layout == Layout::Aligned ? "" : ", misaligned grad"));
    Tensor param_cpu = random_tensor({n}, 11);
    Tensor exp_avg_cpu = Tensor::zeros({n});
    Tensor exp_avg_sq_cpu = Tensor::zeros({n});
    Tensor param_gpu = param_cpu.to(Device::cuda(0));
    Tensor exp_avg_gpu = exp_avg_cpu.to(Device::cuda(0));
    Tensor exp_avg_sq_gpu = exp_avg_sq_cpu.to(Device::cuda(0));
    for (int64_t step = 1; step <= 5; ++step) {
        Tensor grad_cpu = random_tensor({n}, 200 + step);
        Tensor grad_gpu = to_cuda(grad_cpu, layout);
        ops::adamw_step_(param_cpu, grad_cpu, exp_avg_cpu, exp_avg_sq_cpu, step, kLr, kBeta1, kBeta2, kEps, 0.1);
        ops::adamw_step_(param_gpu, grad_gpu, exp_avg_gpu, exp_avg_sq_gpu, step, kLr, kBeta1, kBeta2, kEps, 0.1);
    }
    // An element the kernel skipped would still hold its start value, ~5 lr = 0.05 away.
    expect_close(param_gpu, param_cpu, kCudaRtol, kCudaAtol, "adamw param cuda vs cpu");
    expect_close(exp_avg_gpu, exp_avg_cpu, kCudaRtol, kCudaAtol, "adamw exp_avg cuda vs cpu");
    expect_close(exp_avg_sq_gpu, exp_avg_sq_cpu, kCudaRtol, 0.0, "adamw exp_avg_sq cuda vs cpu");
}

void expect_sgd_cuda_matches_cpu(int64_t n, Layout layout, double momentum) {
    SCOPED_TRACE(::testing::Message() << "n = " << n << ", momentum = " << momentum
                                      << (layout == Layout::Aligned ? "" : ", misaligned grad"));
    const bool has_momentum = momentum != 0.0;
    Tensor param_cpu = random_tensor({n}, 12);
    Tensor param_gpu = param_cpu.to(Device::cuda(0));
    // NaN-poisoned buffers: the first step must write every element without reading it.
    Tensor buffer_cpu, buffer_gpu;
    if (has_momentum) {
        buffer_cpu = mp::testing::poisoned({n}, DType::Float32, Device::cpu());
        buffer_gpu = mp::testing::poisoned({n}, DType::Float32, Device::cuda(0));
    }
    for (int64_t step = 1; step <= 5; ++step) {
        Tensor grad_cpu = random_tensor({n}, 300 + step);
        Tensor grad_gpu = to_cuda(grad_cpu, layout);
        ops::sgd_step_(param_cpu, grad_cpu, buffer_cpu, 0.1, momentum, 0.01, step == 1);
        ops::sgd_step_(param_gpu, grad_gpu, buffer_gpu, 0.1, momentum, 0.01, step == 1);
    }
    expect_close(param_gpu, param_cpu, kCudaRtol, kCudaAtol, "sgd param cuda vs cpu");
    if (has_momentum) expect_close(buffer_gpu, buffer_cpu, kCudaRtol, kCudaAtol, "sgd momentum_buffer cuda vs cpu");
}

}  // namespace

TEST(AdamW, CudaMatchesCpuOverFiveSteps) {
    MP_REQUIRE_GPU();
    for (int64_t n : kCudaSizes) expect_adamw_cuda_matches_cpu(n, Layout::Aligned);
    expect_adamw_cuda_matches_cpu(1000, Layout::GradOffsetByOneFloat);
    expect_adamw_cuda_matches_cpu(124 * 1000 + 3, Layout::GradOffsetByOneFloat);
}

TEST(Sgd, CudaMatchesCpuOverFiveSteps) {
    MP_REQUIRE_GPU();
    for (int64_t n : kCudaSizes) {
        expect_sgd_cuda_matches_cpu(n, Layout::Aligned, 0.9);
        expect_sgd_cuda_matches_cpu(n, Layout::Aligned, 0.0);
    }
    expect_sgd_cuda_matches_cpu(1000, Layout::GradOffsetByOneFloat, 0.9);
    expect_sgd_cuda_matches_cpu(124 * 1000 + 3, Layout::GradOffsetByOneFloat, 0.0);
}

// ---------------------------------------------------------------- argument errors

TEST(AdamW, ArgumentErrorsNameTheOpAndTheValues) {
    Tensor param = Tensor::zeros({7});
    Tensor grad = Tensor::zeros({7});
    Tensor exp_avg = Tensor::zeros({7});
    Tensor exp_avg_sq = Tensor::zeros({7});
    Tensor short_state = Tensor::zeros({6});
    Tensor state64 = Tensor::zeros({7}, DType::Float64);
    Tensor int_param = Tensor::zeros({7}, DType::Int32);
    Tensor undefined;

    expect_invalid_argument(
        [&] { ops::adamw_step_(undefined, grad, exp_avg, exp_avg_sq, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "param is an undefined tensor"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(int_param, grad, exp_avg, exp_avg_sq, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "int32(7)"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, undefined, exp_avg, exp_avg_sq, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "grad is an undefined tensor"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, short_state, exp_avg, exp_avg_sq, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "grad", "6 elements", "expected 7"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, grad, short_state, exp_avg_sq, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "exp_avg", "6 elements", "expected 7"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, grad, exp_avg, short_state, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "exp_avg_sq", "6 elements", "expected 7"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, state64, exp_avg, exp_avg_sq, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "grad is float64(7)", "expected float32", "param float32(7)"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, grad, state64, exp_avg_sq, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "exp_avg is float64(7)", "expected float32"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, grad, exp_avg, exp_avg_sq, 0, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "step", "1-based", "got 0"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, grad, exp_avg, exp_avg_sq, 1, -0.5, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "lr must be >= 0", "got -0.5"});
    expect_invalid_argument([&] { ops::adamw_step_(param, grad, exp_avg, exp_avg_sq, 1, kLr, 1.0, kBeta2, kEps, 0.0); },
                            {"adamw_step_", "beta1 must be in [0, 1)", "got 1"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, grad, exp_avg, exp_avg_sq, 1, kLr, -0.25, kBeta2, kEps, 0.0); },
        {"adamw_step_", "beta1", "got -0.25"});
    expect_invalid_argument([&] { ops::adamw_step_(param, grad, exp_avg, exp_avg_sq, 1, kLr, kBeta1, 1.5, kEps, 0.0); },
                            {"adamw_step_", "beta2 must be in [0, 1)", "got 1.5"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, grad, exp_avg, exp_avg_sq, 1, kLr, kBeta1, kBeta2, 0.0, 0.0); },
        {"adamw_step_", "eps must be > 0", "got 0"});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, grad, exp_avg, exp_avg_sq, 1, kLr, kBeta1, kBeta2, kEps, -0.125); },
        {"adamw_step_", "weight_decay must be >= 0", "got -0.125"});
    const double nan = std::numeric_limits<double>::quiet_NaN();
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, grad, exp_avg, exp_avg_sq, 1, nan, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "lr", "got nan"});
    // Nothing was updated by the rejected calls.
    expect_equal(param, Tensor::zeros({7}), "param untouched");
}

TEST(Sgd, ArgumentErrorsNameTheOpAndTheValues) {
    Tensor param = Tensor::zeros({5});
    Tensor grad = Tensor::zeros({5});
    Tensor buffer = Tensor::zeros({5});
    Tensor long_tensor = Tensor::zeros({9});
    Tensor tensor64 = Tensor::zeros({5}, DType::Float64);
    Tensor int_param = Tensor::zeros({5}, DType::Int32);
    Tensor undefined;

    expect_invalid_argument([&] { ops::sgd_step_(undefined, grad, buffer, 0.1, 0.9, 0.0, true); },
                            {"sgd_step_", "param is an undefined tensor"});
    expect_invalid_argument([&] { ops::sgd_step_(int_param, grad, buffer, 0.1, 0.9, 0.0, true); },
                            {"sgd_step_", "int32(5)"});
    expect_invalid_argument([&] { ops::sgd_step_(param, long_tensor, buffer, 0.1, 0.9, 0.0, true); },
                            {"sgd_step_", "grad", "9 elements", "expected 5"});
    expect_invalid_argument([&] { ops::sgd_step_(param, tensor64, buffer, 0.1, 0.9, 0.0, true); },
                            {"sgd_step_", "grad is float64(5)", "expected float32"});
    expect_invalid_argument([&] { ops::sgd_step_(param, grad, undefined, 0.1, 0.9, 0.0, true); },
                            {"sgd_step_", "momentum is 0.9", "momentum_buffer is an undefined tensor"});
    expect_invalid_argument([&] { ops::sgd_step_(param, grad, long_tensor, 0.1, 0.9, 0.0, true); },
                            {"sgd_step_", "momentum_buffer", "9 elements", "expected 5"});
    expect_invalid_argument([&] { ops::sgd_step_(param, grad, tensor64, 0.1, 0.9, 0.0, true); },
                            {"sgd_step_", "momentum_buffer is float64(5)", "expected float32"});
    expect_invalid_argument([&] { ops::sgd_step_(param, grad, buffer, -1.0, 0.9, 0.0, true); },
                            {"sgd_step_", "lr must be >= 0", "got -1"});
    expect_invalid_argument([&] { ops::sgd_step_(param, grad, buffer, 0.1, -0.5, 0.0, true); },
                            {"sgd_step_", "momentum must be >= 0", "got -0.5"});
    expect_invalid_argument([&] { ops::sgd_step_(param, grad, buffer, 0.1, 0.9, -0.01, true); },
                            {"sgd_step_", "weight_decay must be >= 0", "got -0.01"});
}

TEST(Optimizers, DeviceMismatchIsAnError) {
    MP_REQUIRE_GPU();
    Tensor param = Tensor::zeros({3}, DType::Float32, Device::cuda(0));
    Tensor grad_cpu = Tensor::zeros({3});
    Tensor grad = Tensor::zeros({3}, DType::Float32, Device::cuda(0));
    Tensor state = Tensor::zeros({3}, DType::Float32, Device::cuda(0));
    Tensor state_cpu = Tensor::zeros({3});
    expect_invalid_argument(
        [&] { ops::adamw_step_(param, grad_cpu, state, state, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_", "grad is float32(3) on cpu", "expected cuda:0", "param float32(3) on cuda:0"});
    expect_invalid_argument([&] { ops::adamw_step_(param, grad, state_cpu, state, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
                            {"adamw_step_", "exp_avg is float32(3) on cpu", "expected cuda:0"});
    expect_invalid_argument([&] { ops::adamw_step_(param, grad, state, state_cpu, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
                            {"adamw_step_", "exp_avg_sq is float32(3) on cpu", "expected cuda:0"});
    expect_invalid_argument([&] { ops::sgd_step_(param, grad_cpu, state, 0.1, 0.9, 0.0, true); },
                            {"sgd_step_", "grad is float32(3) on cpu", "expected cuda:0"});
    expect_invalid_argument([&] { ops::sgd_step_(param, grad, state_cpu, 0.1, 0.9, 0.0, true); },
                            {"sgd_step_", "momentum_buffer is float32(3) on cpu", "expected cuda:0"});
}

// ---------------------------------------------------------------- lists of parameters (multi-tensor)

namespace {

// A list of parameters of the given sizes with their state after `steps` updates by the list op
// (or by one adamw_step_ per parameter), gradients drawn per step and parameter.
struct AdamWList {
    std::vector<Tensor> params, exp_avgs, exp_avg_sqs;
};

AdamWList run_adamw(const std::vector<int64_t>& sizes, Device device, bool as_list, int steps) {
    AdamWList s;
    for (size_t i = 0; i < sizes.size(); ++i) {
        s.params.push_back(random_tensor({sizes[i]}, 500 + i).to(device));
        s.exp_avgs.push_back(Tensor::zeros({sizes[i]}, DType::Float32, device));
        s.exp_avg_sqs.push_back(Tensor::zeros({sizes[i]}, DType::Float32, device));
    }
    for (int step = 1; step <= steps; ++step) {
        std::vector<Tensor> grads;
        for (size_t i = 0; i < sizes.size(); ++i) grads.push_back(random_tensor({sizes[i]}, 900 + 31 * step + i).to(device));
        if (as_list) {
            ops::adamw_step_(s.params, grads, s.exp_avgs, s.exp_avg_sqs, step, kLr, kBeta1, kBeta2, kEps, 0.1);
        } else {
            for (size_t i = 0; i < sizes.size(); ++i)
                ops::adamw_step_(s.params[i], grads[i], s.exp_avgs[i], s.exp_avg_sqs[i], step, kLr, kBeta1, kBeta2,
                                 kEps, 0.1);
        }
    }
    return s;
}

void expect_lists_equal(const AdamWList& a, const AdamWList& b, const std::string& what) {
    for (size_t i = 0; i < a.params.size(); ++i) {
        expect_equal(a.params[i], b.params[i], str(what, " param ", i));
        expect_equal(a.exp_avgs[i], b.exp_avgs[i], str(what, " exp_avg ", i));
        expect_equal(a.exp_avg_sqs[i], b.exp_avg_sqs[i], str(what, " exp_avg_sq ", i));
    }
}

}  // namespace

// The list op is the per-parameter op on each entry: on the CPU, bit for bit.
TEST(AdamW, ListStepEqualsOneStepPerParameterOnCpu) {
    const std::vector<int64_t> sizes = {7, 1, 130, 0, 33};
    expect_lists_equal(run_adamw(sizes, Device::cpu(), true, 3), run_adamw(sizes, Device::cpu(), false, 3), "cpu");
}

// On CUDA every float32 parameter goes through one multi-tensor launch (per 192 tensors) whose
// chunks are 64k elements: more than 192 tensors, a tensor spanning several chunks with a tail,
// odd sizes (scalar path) and empty tensors. The element function is the per-tensor kernel's, so
// the results are the per-tensor kernel's bit for bit.
TEST(AdamW, CudaListStepEqualsOneStepPerParameter) {
    MP_REQUIRE_GPU();
    std::vector<int64_t> sizes = {3 * 65536 + 5, 65536, 0, 1, 7, 4096};
    for (int i = 0; i < 200; ++i) sizes.push_back(1 + (i * 37) % 300);
    expect_lists_equal(run_adamw(sizes, Device::cuda(0), true, 3), run_adamw(sizes, Device::cuda(0), false, 3),
                       "cuda multi-tensor vs per-tensor");
}

TEST(AdamW, ListArgumentErrorsNameTheEntry) {
    Tensor p = Tensor::zeros({4}), g = Tensor::zeros({4}), m = Tensor::zeros({4}), v = Tensor::zeros({4});
    Tensor short_grad = Tensor::zeros({3});
    expect_invalid_argument(
        [&] { ops::adamw_step_({p, p}, {g}, {m, m}, {v, v}, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_ (list)", "one entry per parameter", "2 params, 1 grads"});
    expect_invalid_argument(
        [&] { ops::adamw_step_({p, p}, {g, short_grad}, {m, m}, {v, v}, 1, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_ (list) entry 1", "grad float32(3) on cpu has 3 elements, expected 4"});
    expect_invalid_argument(
        [&] { ops::adamw_step_({p, p}, {g, g}, {m, m}, {v, v}, 0, kLr, kBeta1, kBeta2, kEps, 0.0); },
        {"adamw_step_ (list)", "step is 1-based", "got 0"});
}
