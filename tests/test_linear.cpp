// The fused linear ops: forward with its epilogue (bias; bias + GELU) against the composed ops
// (bitwise in float32 and float64) and against its definition in bfloat16 (one rounding from the
// float32 accumulator), the in-place weight and bias gradients (float32 masters from bfloat16),
// argument errors; on CUDA, cuBLASLt's epilogues and the column sums against the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/activations.h"
#include "kernels/cpu/parallel.h"
#include "kernels/linear.h"
#include "tensor/device_context.h"
#include "tensor/ops/activations.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/gemm.h"
#include "tensor/ops/linear.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_close;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::random_tensor;

namespace {

// Non-round shapes: x (2, 7, 13) -> 29 outputs.
const Shape kX = {2, 7, 13};
constexpr int64_t kIn = 13, kOut = 29;

struct Operands {
    Tensor x, w, b;
};

Operands operands(DType dtype = DType::Float32, Device device = Device::cpu()) {
    return {random_tensor(kX, 1).to(dtype).to(device), random_tensor({kOut, kIn}, 2, 0.3).to(dtype).to(device),
            random_tensor({kOut}, 3).to(dtype).to(device)};
}

}  // namespace

// float32 and float64: the epilogue adds the bias to the same accumulator bias_add would read and
// GELU reads the same pre-activation, so fused and composed agree bit for bit.
TEST(LinearCpu, FusedEqualsComposedBitwise) {
    for (DType dtype : {DType::Float32, DType::Float64}) {
        const Operands o = operands(dtype);
        const Tensor product = ops::matmul(o.x, o.w, false, true);
        expect_equal(ops::linear(o.x, o.w, Tensor()), product, "no bias");
        const Tensor with_bias = ops::bias_add(product, o.b);
        expect_equal(ops::linear(o.x, o.w, o.b), with_bias, "bias");
        auto [y, pre] = ops::linear_gelu(o.x, o.w, o.b);
        expect_equal(pre, with_bias, "pre-activation");
        expect_equal(y, ops::gelu(with_bias), "bias + gelu");
        EXPECT_EQ(y.shape(), (Shape{2, 7, kOut}));
    }
}

// bfloat16: the float32 accumulator of the widened operands, plus the bias, rounded once (the
// composed ops would round twice); GELU of the unrounded pre-activation, rounded once.
TEST(LinearCpu, Bf16RoundsOnceFromTheFloat32Accumulator) {
    const Operands o = operands(DType::BFloat16);
    const Tensor acc = ops::matmul(o.x.to(DType::Float32), o.w.to(DType::Float32), false, true);
    const std::vector<float> a = acc.to_vector<float>();
    const std::vector<double> bias = mp::testing::to_doubles(o.b);
    std::vector<float> expected_y, expected_pre, expected_gelu;
    for (size_t i = 0; i < a.size(); ++i) {
        const float v = a[i] + static_cast<float>(bias[i % kOut]);
        expected_pre.push_back(static_cast<float>(bfloat16(v)));
        expected_gelu.push_back(static_cast<float>(element_from_double<bfloat16>(kernels::gelu_in_double(v))));
    }
    const Tensor pre_expected = Tensor::from_vector(expected_pre, {2, 7, kOut}).to(DType::BFloat16);
    expect_equal(ops::linear(o.x, o.w, o.b), pre_expected, "bf16 linear");
    auto [y, pre] = ops::linear_gelu(o.x, o.w, o.b);
    expect_equal(pre, pre_expected, "bf16 pre-activation");
    expect_equal(y, Tensor::from_vector(expected_gelu, {2, 7, kOut}).to(DType::BFloat16), "bf16 gelu");
    // Against float32 on the same (bfloat16-exact) operands: the same float32 accumulator, rounded
    // once to nearest, so |y_bf16 − y_fp32| <= 2^-8·|y_fp32|.
    const Tensor y32 = ops::linear(o.x.to(DType::Float32), o.w.to(DType::Float32), o.b.to(DType::Float32));
    expect_close(ops::linear(o.x, o.w, o.b).to(DType::Float32), y32, 1.0 / 256, 0.0, "bf16 vs float32");
}

// weight_grad_: dW = dyᵀ·x written, then accumulated in place (beta = 1); bfloat16 dy and x into
// a float32 gradient keep the float32 accumulator unrounded: exactly the float32 product of the
// widened operands, added in float32.
TEST(LinearCpu, WeightAndBiasGradientsAccumulateInPlace) {
    const Tensor dy = random_tensor({2, 7, kOut}, 4), x = random_tensor(kX, 5);
    const Tensor product = ops::matmul(dy, x, true, false);
    Tensor grad = Tensor::empty({kOut, kIn});
    ops::weight_grad_(grad, dy, x, false);
    expect_close(grad, product, 1e-6, 1e-7, "written");
    const Tensor first = grad.clone();
    ops::weight_grad_(grad, dy, x, true);
    expect_close(grad, ops::add(first, product), 1e-6, 1e-7, "accumulated");

    const Tensor dy16 = dy.to(DType::BFloat16), x16 = x.to(DType::BFloat16);
    Tensor mixed = Tensor::full({kOut, kIn}, 0.25);
    ops::weight_grad_(mixed, dy16, x16, true);
    const Tensor widened = ops::matmul(dy16.to(DType::Float32), x16.to(DType::Float32), true, false);
    expect_close(mixed, ops::add(Tensor::full({kOut, kIn}, 0.25), widened), 1e-6, 1e-7, "bf16 into float32");
    EXPECT_EQ(mixed.dtype(), DType::Float32);

    // Bias: the column sums, rounded once to the gradient's dtype, then added (as sum_rows + axpy).
    Tensor bias_grad = Tensor::empty({kOut});
    ops::bias_grad_(bias_grad, dy, false);
    expect_equal(bias_grad, ops::sum_rows(dy), "bias written");
    ops::bias_grad_(bias_grad, dy, true);
    expect_equal(bias_grad, ops::add(ops::sum_rows(dy), ops::sum_rows(dy)), "bias accumulated");
    Tensor bias_mixed = Tensor::zeros({kOut});
    ops::bias_grad_(bias_mixed, dy16, true);
    expect_equal(bias_mixed, ops::sum_rows(dy16.to(DType::Float32)), "bf16 dy into a float32 bias gradient");
}

// The bias gradient's column sums run over the rows in order, each column on one thread: the same
// bits on 1, 2 and 3 threads, written and accumulated, at a shape whose columns are split over them.
TEST(LinearCpu, BiasGradBitsDoNotDependOnTheThreadCount) {
    const int64_t rows = 64, cols = 1030;
    static_assert(1030 >= kernels::cpu::kMinParallelElements / 64, "the column sums must be threaded");
    const std::vector<float> dy = random_tensor({rows, cols}, 850).to_vector<float>();
    const std::vector<float> start = random_tensor({cols}, 851).to_vector<float>();
    const int threads_before = cpu_threads();
    std::vector<float> written_one, accumulated_one;
    for (int threads : {1, 2, 3}) {
        set_cpu_threads(threads);
        std::vector<float> written(cols), accumulated = start;
        kernels::cpu::bias_grad(dy.data(), written.data(), rows, cols, false);
        kernels::cpu::bias_grad(dy.data(), accumulated.data(), rows, cols, true);
        if (threads == 1) {
            written_one = written, accumulated_one = accumulated;
            continue;
        }
        EXPECT_EQ(std::memcmp(written.data(), written_one.data(), cols * sizeof(float)), 0)
            << "written, " << threads << " threads";
        EXPECT_EQ(std::memcmp(accumulated.data(), accumulated_one.data(), cols * sizeof(float)), 0)
            << "accumulated, " << threads << " threads";
    }
    set_cpu_threads(threads_before);
}

TEST(LinearCpu, ArgumentErrorsNameTheTensors) {
    const Operands o = operands();
    expect_invalid_argument([&] { ops::linear(o.x, random_tensor({kOut, 12}, 6), o.b); },
                            {"linear", "has 13 features", "takes 12"});
    expect_invalid_argument([&] { ops::linear(o.x, o.w, random_tensor({28}, 7)); },
                            {"linear: bias", "must be (29)"});
    expect_invalid_argument([&] { ops::linear(o.x, random_tensor({kOut, kIn, 1}, 8), o.b); },
                            {"linear: weight must be (out, in)"});
    expect_invalid_argument([&] { ops::linear_gelu(o.x, o.w, Tensor()); }, {"linear_gelu: needs a bias"});
    Tensor wrong = Tensor::empty({kOut + 1});
    expect_invalid_argument([&] { ops::bias_grad_(wrong, random_tensor({3, kOut}, 9), false); },
                            {"bias_grad_: grad", "must be (29)"});
    Tensor grad = Tensor::empty({kOut, kIn});
    expect_invalid_argument(
        [&] { ops::weight_grad_(grad, random_tensor({3, kOut}, 9), random_tensor({4, kIn}, 9), false); },
        {"weight_grad_", "different row counts"});
}

// ---------------------------------------------------------------- CUDA against the CPU

namespace {

// GPT-2-like and non-round shapes: (rows, in, out). The odd ones may be declined by cuBLASLt
// (alignment) and take the composed path; either way the answer must match.
const std::vector<std::array<int64_t, 3>> kCudaShapes = {{64, 768, 3072}, {37, 13, 29}, {96, 64, 50}, {5, 8, 8}};

void expect_cuda_linear_matches_cpu(DType dtype, double rtol, double atol) {
    const Device gpu = Device::cuda(0);
    for (const auto& [rows, in, out] : kCudaShapes) {
        const std::string what = str(dtype_name(dtype), " rows ", rows, " in ", in, " out ", out);
        const Tensor x = random_tensor({rows, in}, 11).to(dtype), w = random_tensor({out, in}, 12, 0.05).to(dtype),
                     b = random_tensor({out}, 13).to(dtype);
        const Tensor y_cpu = ops::linear(x, w, b);
        auto [g_cpu, pre_cpu] = ops::linear_gelu(x, w, b);
        expect_close(ops::linear(x.to(gpu), w.to(gpu), b.to(gpu)).to(Device::cpu()), y_cpu, rtol, atol,
                     what + " bias");
        auto [g_gpu, pre_gpu] = ops::linear_gelu(x.to(gpu), w.to(gpu), b.to(gpu));
        expect_close(pre_gpu.to(Device::cpu()), pre_cpu, rtol, atol, what + " pre-activation");
        expect_close(g_gpu.to(Device::cpu()), g_cpu, rtol, atol, what + " gelu");
    }
}

}  // namespace

// float32: both accumulate in float32 in different orders (cuBLASLt vs OpenBLAS), K <= 768 terms of
// O(0.05) products: ~1e-6 relative of Σ|x||w| ≈ 1e-5 absolute. cuBLASLt's GELU evaluates tanh in
// float32 (~2 ulp).
TEST(LinearCuda, Float32MatchesCpu) {
    MP_REQUIRE_GPU();
    expect_cuda_linear_matches_cpu(DType::Float32, 1e-5, 1e-5);
}

// bfloat16: the same accumulators (to ~1e-5) rounded once each to 8 bits: a different order can
// flip a rounding, one bfloat16 ulp = 2^-8 relative (2^-7 near a binade edge); atol for values
// near zero after cancellation.
TEST(LinearCuda, Bf16MatchesCpu) {
    MP_REQUIRE_GPU();
    expect_cuda_linear_matches_cpu(DType::BFloat16, 1.0 / 128, 1e-3);
}

// In-place gradients on the GPU: bfloat16 dy and x into float32 (cuBLAS, C CUDA_R_32F) and the
// bias column sums (float32 per chunk, chunks in order), each written then accumulated; outputs
// poisoned first so that a skipped element shows.
TEST(LinearCuda, InPlaceGradientsMatchCpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    for (int64_t rows : {1, 37, 4096 + 3}) {
        const Tensor dy = random_tensor({rows, kOut}, 14).to(DType::BFloat16), x = random_tensor({rows, kIn}, 15)
                                                                                        .to(DType::BFloat16);
        Tensor grad_cpu = Tensor::empty({kOut, kIn}), bias_cpu = Tensor::empty({kOut});
        Tensor grad_gpu = mp::testing::poisoned({kOut, kIn}, DType::Float32, gpu);
        Tensor bias_gpu = mp::testing::poisoned({kOut}, DType::Float32, gpu);
        for (bool accumulate : {false, true}) {
            ops::weight_grad_(grad_cpu, dy, x, accumulate);
            ops::weight_grad_(grad_gpu, dy.to(gpu), x.to(gpu), accumulate);
            ops::bias_grad_(bias_cpu, dy, accumulate);
            ops::bias_grad_(bias_gpu, dy.to(gpu), accumulate);
        }
        // float32 sums of `rows` bfloat16-exact terms of size ~1: ~rows·2^-24 relative of Σ|terms|.
        const double tolerance = 1e-6 * static_cast<double>(rows);
        expect_close(grad_gpu.to(Device::cpu()), grad_cpu, 1e-5, tolerance, str("weight gradient, rows ", rows));
        expect_close(bias_gpu.to(Device::cpu()), bias_cpu, 1e-5, tolerance, str("bias gradient, rows ", rows));
    }
}

// Misaligned operands (a micro-batch slice at row offset 1 of an odd-width activation, as the
// pipeline hands out): cuBLASLt must be offered only algorithms that can read them, or decline
// and leave it to the composed path — never fault. bf16, K = 3072 too (where split-K is likely:
// its partial sums must stay float32, so one bfloat16 rounding from the CPU's).
TEST(LinearCuda, MisalignedSlicesAndLongSumsMatchCpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    for (int64_t in : {int64_t{13}, int64_t{3072}}) {
        SCOPED_TRACE(::testing::Message() << "in " << in);
        const Tensor all = random_tensor({9, in}, 31).to(DType::BFloat16);
        const Tensor x_cpu = all.slice(1, 9);
        const Tensor x_gpu = all.to(gpu).slice(1, 9);  // starts 2·in bytes into its allocation
        const Tensor w = random_tensor({40, in}, 32, 0.05).to(DType::BFloat16), b = random_tensor({40}, 33)
                                                                                        .to(DType::BFloat16);
        expect_close(ops::linear(x_gpu, w.to(gpu), b.to(gpu)).to(Device::cpu()), ops::linear(x_cpu, w, b),
                     1.0 / 128, 1e-3, "bias");
        auto [g_gpu, pre_gpu] = ops::linear_gelu(x_gpu, w.to(gpu), b.to(gpu));
        auto [g_cpu, pre_cpu] = ops::linear_gelu(x_cpu, w, b);
        expect_close(g_gpu.to(Device::cpu()), g_cpu, 1.0 / 128, 1e-3, "gelu");
    }
}
