// Elementwise ops and reductions: the CPU reference against hand-computed values and closed
// forms, float32 against float64, CUDA against CPU on odd and misaligned shapes with poisoned
// outputs, run-to-run determinism of the CUDA reductions, every argument check; and bfloat16:
// bit-exact against its definition, within the unit-roundoff bound of float32, CUDA against CPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/elementwise.h"
#include "tensor/device_context.h"
#include "tensor/ops/elementwise.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_close;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::poisoned;
using mp::testing::random_tensor;
using mp::testing::to_doubles;

namespace {

Tensor floats(const std::vector<float>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }

}  // namespace

// ---------------------------------------------------------------- CPU reference

TEST(ElementwiseCpu, BinaryOpsMatchHandValues) {
    Tensor a = floats({1, 2, 3, 4, 5, 6}, {2, 3});
    Tensor b = floats({0.5f, -1, 2, 0, -4, 0.25f}, {2, 3});
    EXPECT_EQ(ops::add(a, b).to_vector<float>(), (std::vector<float>{1.5f, 1, 5, 4, 1, 6.25f}));
    EXPECT_EQ(ops::sub(a, b).to_vector<float>(), (std::vector<float>{0.5f, 3, 1, 4, 9, 5.75f}));
    EXPECT_EQ(ops::mul(a, b).to_vector<float>(), (std::vector<float>{0.5f, -2, 6, 0, -20, 1.5f}));
    EXPECT_EQ(ops::add(a, b).shape(), (Shape{2, 3}));
}

TEST(ElementwiseCpu, ScaleAndAxpyMatchHandValues) {
    Tensor x = floats({1, -2, 4}, {3});
    EXPECT_EQ(ops::scale(x, 2.5).to_vector<float>(), (std::vector<float>{2.5f, -5, 10}));
    Tensor y = floats({1, 2, 3}, {3});
    ops::axpy_(y, floats({10, 20, 30}, {3}), 0.5);
    EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{6, 12, 18}));
    ops::axpy_(y, floats({1, 1, 1}, {3}));  // alpha defaults to 1: plain gradient accumulation
    EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{7, 13, 19}));
}

TEST(ElementwiseCpu, AxpyWritesThroughASliceOnly) {
    Tensor y = Tensor::zeros({3, 2});
    Tensor middle_row = y.slice(1, 2);
    ops::axpy_(middle_row, floats({1, 2}, {1, 2}), 3.0);
    EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{0, 0, 3, 6, 0, 0}));
}

TEST(ElementwiseCpu, BiasAddBroadcastsOverEveryRow) {
    Tensor x = floats({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, {2, 2, 3});
    Tensor bias = floats({100, 200, 300}, {3});
    EXPECT_EQ(ops::bias_add(x, bias).to_vector<float>(),
              (std::vector<float>{101, 202, 303, 104, 205, 306, 107, 208, 309, 110, 211, 312}));
    EXPECT_EQ(ops::bias_add(x, bias).shape(), (Shape{2, 2, 3}));
}

TEST(ElementwiseCpu, SumRowsMatchesHandMatrix) {
    // [[1, 2, 3], [4, 5, 6], [-1, 0.5, 10]] -> column sums (4, 7.5, 19)
    Tensor x = floats({1, 2, 3, 4, 5, 6, -1, 0.5f, 10}, {3, 3});
    Tensor column_sums = ops::sum_rows(x);
    EXPECT_EQ(column_sums.shape(), (Shape{3}));
    EXPECT_EQ(column_sums.to_vector<float>(), (std::vector<float>{4, 7.5f, 19}));
    // Every dimension but the last is summed: arange(12) as (2, 2, 3) has the columns
    // (0, 3, 6, 9), (1, 4, 7, 10), (2, 5, 8, 11).
    Tensor cube = Tensor::arange(12).reshape({2, 2, 3});
    EXPECT_EQ(ops::sum_rows(cube).to_vector<float>(), (std::vector<float>{18, 22, 26}));
    EXPECT_EQ(ops::sum_rows(Tensor::zeros({0, 5})).to_vector<float>(), std::vector<float>(5, 0.0f));
}

TEST(ElementwiseCpu, SumOfArangeIsClosedForm) {
    for (int64_t n : {1, 7, 1000, 50257}) {
        // n(n-1)/2 <= 1.27e9 is exact in double, and every partial sum is an exact integer.
        Tensor total = ops::sum(Tensor::arange(n, DType::Float64));
        EXPECT_EQ(total.shape(), Shape{});
        EXPECT_EQ(total.item(), static_cast<double>(n * (n - 1) / 2)) << "n = " << n;
    }
    // float32 input: accumulated in double, rounded once, so the float nearest n(n-1)/2.
    EXPECT_EQ(ops::sum(Tensor::arange(50257)).item(), static_cast<double>(static_cast<float>(50257.0 * 50256 / 2)));
    EXPECT_EQ(ops::sum(Tensor::zeros({0})).item(), 0.0);
    EXPECT_EQ(ops::sum(Tensor::full({}, -3.5)).item(), -3.5);
}

TEST(ElementwiseCpu, GlobalL2NormOfPythagoreanTensors) {
    EXPECT_EQ(ops::global_l2_norm({floats({3, 4}, {2})}), 5.0);
    // 3-4-12-84: sqrt(9 + 16 + 144 + 7056) = 85, spread over tensors of mixed rank and dtype.
    std::vector<Tensor> parts = {floats({3}, {1}), Tensor::full({1, 1}, 4.0, DType::Float64), floats({12, 84}, {2, 1}),
                                 Tensor::zeros({0})};
    EXPECT_EQ(ops::global_l2_norm(parts), 85.0);
    EXPECT_EQ(ops::global_l2_norm({}), 0.0);
}

// float32 +, -, * and the power-of-two scalings are correctly rounded, and so is double
// arithmetic on floats rounded to float (a double holds the exact sum/product of two floats,
// or rounds it with margin to spare), so the float64 instantiation rounded to float must be
// bitwise equal to the float32 one. The reductions accumulate in double in both, in the same
// order, and round once: also bitwise equal.
TEST(ElementwiseCpu, Float64InstantiationAgreesWithFloat32) {
    Tensor a = random_tensor({37, 41}, 1);
    Tensor b = random_tensor({37, 41}, 2);
    Tensor bias = random_tensor({41}, 3);
    Tensor a64 = a.to(DType::Float64), b64 = b.to(DType::Float64), bias64 = bias.to(DType::Float64);
    expect_equal(ops::add(a64, b64).to(DType::Float32), ops::add(a, b), "add f64 vs f32");
    expect_equal(ops::sub(a64, b64).to(DType::Float32), ops::sub(a, b), "sub f64 vs f32");
    expect_equal(ops::mul(a64, b64).to(DType::Float32), ops::mul(a, b), "mul f64 vs f32");
    expect_equal(ops::scale(a64, -0.25).to(DType::Float32), ops::scale(a, -0.25), "scale f64 vs f32");
    expect_equal(ops::bias_add(a64, bias64).to(DType::Float32), ops::bias_add(a, bias), "bias_add f64 vs f32");
    expect_equal(ops::sum_rows(a64).to(DType::Float32), ops::sum_rows(a), "sum_rows f64 vs f32");
    expect_equal(ops::sum(a64).to(DType::Float32), ops::sum(a), "sum f64 vs f32");
    Tensor y = b.clone(), y64 = b64.clone();
    ops::axpy_(y, a, -0.5);
    ops::axpy_(y64, a64, -0.5);
    expect_equal(y64.to(DType::Float32), y, "axpy f64 vs f32");
    // The float32 path rounds each tensor's sum of squares to float (relative 2^-24 = 6e-8),
    // which the square root halves.
    const double norm64 = ops::global_l2_norm({a64, b64});
    EXPECT_NEAR(ops::global_l2_norm({a, b}), norm64, 1e-7 * norm64);
}

// ---------------------------------------------------------------- bad input

TEST(ElementwiseErrors, BinaryOpsCheckShapeDtypeAndDefinedness) {
    Tensor a = Tensor::zeros({4, 7});
    expect_invalid_argument([&] { ops::add(a, Tensor::zeros({4, 8})); }, {"add: shape mismatch: (4, 7) vs (4, 8)"});
    expect_invalid_argument([&] { ops::sub(a, Tensor::zeros({7, 4})); }, {"sub: shape mismatch: (4, 7) vs (7, 4)"});
    expect_invalid_argument([&] { ops::mul(a, Tensor::zeros({28})); }, {"mul: shape mismatch: (4, 7) vs (28)"});
    Tensor ints = Tensor::zeros({4, 7}, DType::Int32);
    expect_invalid_argument([&] { ops::add(ints, ints); }, {"add", "expects float32", "int32(4, 7) on cpu"});
    expect_invalid_argument([&] { ops::mul(a, ints); }, {"mul", "expects float32", "int32(4, 7) on cpu"});
    expect_invalid_argument([&] { ops::sub(a, Tensor::zeros({4, 7}, DType::Float64)); },
                            {"sub", "dtype mismatch", "float32(4, 7) on cpu", "float64(4, 7) on cpu"});
    expect_invalid_argument([&] { ops::add(Tensor(), a); }, {"add", "a is an undefined tensor"});
    expect_invalid_argument([&] { ops::add(a, Tensor()); }, {"add", "b is an undefined tensor"});
}

TEST(ElementwiseErrors, ScaleChecksDtypeAndDefinedness) {
    expect_invalid_argument([&] { ops::scale(Tensor::zeros({3}, DType::Int32), 2.0); },
                            {"scale", "expects float32", "int32(3) on cpu"});
    expect_invalid_argument([&] { ops::scale(Tensor(), 2.0); }, {"scale", "x is an undefined tensor"});
}

TEST(ElementwiseErrors, AxpyChecksNumelShapeAndDtype) {
    Tensor y = Tensor::zeros({3, 4});
    expect_invalid_argument([&] { ops::axpy_(y, Tensor::zeros({10})); },
                            {"axpy_", "y has 12 elements (3, 4)", "x has 10 (10)"});
    expect_invalid_argument([&] { ops::axpy_(y, Tensor::zeros({4, 3})); }, {"axpy_: shape mismatch: (3, 4) vs (4, 3)"});
    expect_invalid_argument([&] { ops::axpy_(y, Tensor::zeros({3, 4}, DType::Int32)); },
                            {"axpy_", "expects float32", "int32(3, 4) on cpu"});
    expect_invalid_argument([&] { ops::axpy_(y, Tensor::zeros({3, 4}, DType::Float64)); },
                            {"axpy_", "dtype mismatch", "float32(3, 4)", "float64(3, 4)"});
    Tensor undefined;
    expect_invalid_argument([&] { ops::axpy_(undefined, y); }, {"axpy_", "y is an undefined tensor"});
    expect_invalid_argument([&] { ops::axpy_(y, Tensor()); }, {"axpy_", "x is an undefined tensor"});
}

TEST(ElementwiseErrors, BiasAddChecksTheBiasAgainstX) {
    Tensor x = Tensor::zeros({4, 7, 512});
    expect_invalid_argument([&] { ops::bias_add(x, Tensor::zeros({511})); },
                            {"bias_add: bias has shape (511), expected (512) to match x (4, 7, 512)"});
    expect_invalid_argument([&] { ops::bias_add(x, Tensor::zeros({1, 512})); },
                            {"bias_add: bias has shape (1, 512), expected (512)"});
    expect_invalid_argument([&] { ops::bias_add(Tensor::zeros({}), Tensor::zeros({1})); },
                            {"bias_add", "x needs at least 1 dimension(s), got ()"});
    expect_invalid_argument([&] { ops::bias_add(Tensor::zeros({2, 3}, DType::Int32), Tensor::zeros({3}, DType::Int32)); },
                            {"bias_add", "expects float32", "int32(2, 3) on cpu"});
    expect_invalid_argument([&] { ops::bias_add(x, Tensor::zeros({512}, DType::Float64)); },
                            {"bias_add", "dtype mismatch", "float32(4, 7, 512)", "float64(512)"});
    expect_invalid_argument([&] { ops::bias_add(x, Tensor()); }, {"bias_add", "bias is an undefined tensor"});
}

TEST(ElementwiseErrors, ReductionsCheckRankDtypeAndDefinedness) {
    expect_invalid_argument([&] { ops::sum_rows(Tensor::zeros({})); },
                            {"sum_rows", "x needs at least 1 dimension(s), got ()"});
    expect_invalid_argument([&] { ops::sum_rows(Tensor::zeros({2, 5}, DType::Int32)); },
                            {"sum_rows", "expects float32", "int32(2, 5) on cpu"});
    expect_invalid_argument([&] { ops::sum_rows(Tensor()); }, {"sum_rows", "x is an undefined tensor"});
    expect_invalid_argument([&] { ops::sum(Tensor::zeros({6}, DType::Int32)); }, {"sum", "expects float32", "int32(6)"});
    expect_invalid_argument([&] { ops::sum(Tensor()); }, {"sum", "x is an undefined tensor"});
    expect_invalid_argument([&] { ops::global_l2_norm({Tensor::zeros({2}), Tensor::zeros({3}, DType::Int32)}); },
                            {"global_l2_norm", "expects float32", "int32(3) on cpu"});
    expect_invalid_argument([&] { ops::global_l2_norm({Tensor::zeros({2}), Tensor()}); },
                            {"global_l2_norm: tensor 1 is an undefined tensor"});
}

TEST(ElementwiseErrors, EveryOpRejectsMixedDevices) {
    MP_REQUIRE_GPU();
    Tensor cpu = Tensor::zeros({2, 3});
    Tensor gpu = Tensor::zeros({2, 3}, DType::Float32, Device::cuda(0));
    const std::vector<std::string> names = {"different devices", "float32(2, 3) on cpu", "float32(2, 3) on cuda:0"};
    auto expect_devices = [&](const char* op, auto&& fn) {
        std::vector<std::string> fragments = names;
        fragments.push_back(op);
        expect_invalid_argument(fn, fragments);
    };
    expect_devices("add", [&] { ops::add(cpu, gpu); });
    expect_devices("sub", [&] { ops::sub(cpu, gpu); });
    expect_devices("mul", [&] { ops::mul(cpu, gpu); });
    expect_devices("axpy_", [&] { ops::axpy_(cpu, gpu); });
    expect_invalid_argument([&] { ops::bias_add(gpu, Tensor::zeros({3})); },
                            {"bias_add", "different devices", "float32(2, 3) on cuda:0", "float32(3) on cpu"});
    expect_invalid_argument([&] { ops::global_l2_norm({cpu, gpu}); },
                            {"global_l2_norm", "different devices", "tensor 0 is float32(2, 3) on cpu",
                             "tensor 1 is float32(2, 3) on cuda:0"});
}

// ---------------------------------------------------------------- CUDA against the CPU reference
// These call the raw kernels::cuda functions on NaN-poisoned outputs, so they exist only in
// CUDA builds; there they skip when no GPU is visible.
#if MP_CUDA

namespace {

// Element counts: 1 (tail only), odd sizes whose float4 loop leaves a tail of 1-3 (7, 33, 257,
// the GPT-2 vocabulary 50257, 16384 * 3 + 1), and a multiple of 4 with no tail (1000).
const std::vector<int64_t> kSizes = {1, 7, 33, 257, 1000, 50257, 16384 * 3 + 1};

const Device kGpu = Device::cuda(0);

cudaStream_t gpu_stream() { return compute_stream(0); }

// The sum of |x| over all elements: the scale that summation-order differences are relative to.
double sum_abs(const Tensor& x) {
    double total = 0.0;
    for (double v : to_doubles(x)) total += std::fabs(v);
    return total;
}

// The largest over the columns of a (rows, cols) tensor of sum_r |x[r][c]|: the scale of each
// column sum's summation-order difference.
double largest_column_abs_sum(const Tensor& x) {
    const int64_t rows = x.size(0), cols = x.size(1);
    std::vector<double> values = to_doubles(x);
    double largest = 0.0;
    for (int64_t c = 0; c < cols; ++c) {
        double column_abs = 0.0;
        for (int64_t r = 0; r < rows; ++r) column_abs += std::fabs(values[r * cols + c]);
        largest = std::max(largest, column_abs);
    }
    return largest;
}

// rows x cols on the GPU starting one row into a (rows + 1) x cols tensor: with odd cols the
// data pointer is 4 mod 16 bytes, so every kernel must take its scalar path.
Tensor misaligned_gpu(const Tensor& cpu_rows_plus_one) {
    return cpu_rows_plus_one.to(kGpu).slice(1, cpu_rows_plus_one.size(0));
}

Tensor poisoned_misaligned(const Shape& shape) {
    Shape padded = shape;
    padded[0] += 1;
    return poisoned(padded, DType::Float32, kGpu).slice(1, padded[0]);
}

// add, sub, mul, scale (poisoned outputs) and axpy, each compared bitwise to the CPU. Bitwise,
// because each output element is a single IEEE round-to-nearest of the same floats on both sides
// (the CUDA kernels use __fadd_rn / __fsub_rn / __fmul_rn, so nothing is fused or reassociated).
void expect_binary_ops_match(const Tensor& a_gpu, const Tensor& b_gpu, Tensor out_gpu, const std::string& what) {
    Tensor a = a_gpu.to(Device::cpu()), b = b_gpu.to(Device::cpu());
    const int64_t n = a.numel();
    kernels::cuda::add(out_gpu.data<float>(), a_gpu.data<float>(), b_gpu.data<float>(), n, gpu_stream());
    expect_equal(out_gpu, ops::add(a, b), "add " + what);
    out_gpu.fill_(NAN);
    kernels::cuda::sub(out_gpu.data<float>(), a_gpu.data<float>(), b_gpu.data<float>(), n, gpu_stream());
    expect_equal(out_gpu, ops::sub(a, b), "sub " + what);
    out_gpu.fill_(NAN);
    kernels::cuda::mul(out_gpu.data<float>(), a_gpu.data<float>(), b_gpu.data<float>(), n, gpu_stream());
    expect_equal(out_gpu, ops::mul(a, b), "mul " + what);
    out_gpu.fill_(NAN);
    kernels::cuda::scale(out_gpu.data<float>(), a_gpu.data<float>(), n, -0.3, gpu_stream());
    expect_equal(out_gpu, ops::scale(a, -0.3), "scale " + what);
    // axpy is in place: y = copy of b; the CPU side rounds alpha * x and then the sum, as the
    // kernel does with __fmul_rn / __fadd_rn (the x86-64 build has no FMA to contract into).
    out_gpu.copy_from(b_gpu);
    kernels::cuda::axpy(out_gpu.data<float>(), a_gpu.data<float>(), n, 0.7, gpu_stream());
    Tensor y = b.clone();
    ops::axpy_(y, a, 0.7);
    expect_equal(out_gpu, y, "axpy " + what);
}

}  // namespace

TEST(ElementwiseCuda, BinaryScaleAxpyMatchCpuBitwise) {
    MP_REQUIRE_GPU();
    for (int64_t n : kSizes) {
        Tensor a = random_tensor({n}, 10 + n).to(kGpu);
        Tensor b = random_tensor({n}, 20 + n).to(kGpu);
        expect_binary_ops_match(a, b, poisoned({n}, DType::Float32, kGpu), "n=" + std::to_string(n));
    }
}

TEST(ElementwiseCuda, OpsDispatchToTheCudaKernels) {
    MP_REQUIRE_GPU();
    Tensor a = random_tensor({37, 257}, 90), b = random_tensor({37, 257}, 91);
    Tensor a_gpu = a.to(kGpu), b_gpu = b.to(kGpu);
    // Single roundings on both sides, as in expect_binary_ops_match: bitwise equal.
    expect_equal(ops::add(a_gpu, b_gpu), ops::add(a, b), "ops::add");
    expect_equal(ops::sub(a_gpu, b_gpu), ops::sub(a, b), "ops::sub");
    expect_equal(ops::mul(a_gpu, b_gpu), ops::mul(a, b), "ops::mul");
    expect_equal(ops::scale(a_gpu, 1.7), ops::scale(a, 1.7), "ops::scale");
    ops::axpy_(b_gpu, a_gpu, -2.3);
    ops::axpy_(b, a, -2.3);
    expect_equal(b_gpu, b, "ops::axpy_");
    EXPECT_TRUE(ops::add(a_gpu, b_gpu).device().is_cuda());
}

TEST(ElementwiseCuda, MisalignedSlicesTakeTheScalarPath) {
    MP_REQUIRE_GPU();
    // 13 x 3781 = 16384 * 3 + 1 elements; the slice starts 3781 floats (4 mod 16 bytes) in.
    for (Shape shape : {Shape{13, 3781}, Shape{4, 33}, Shape{1, 7}}) {
        Shape padded = {shape[0] + 1, shape[1]};
        Tensor a_misaligned = misaligned_gpu(random_tensor(padded, 31));
        Tensor b_aligned = random_tensor(shape, 32).to(kGpu);
        std::string what = shape_str(shape);
        expect_binary_ops_match(a_misaligned, b_aligned, poisoned(shape, DType::Float32, kGpu), "a misaligned " + what);
        expect_binary_ops_match(b_aligned, a_misaligned, poisoned_misaligned(shape), "out misaligned " + what);
    }
}

TEST(ElementwiseCuda, BiasAddMatchesCpuBitwise) {
    MP_REQUIRE_GPU();
    // Columns: odd (scalar path), multiples of 4 (float4 path: 768, 1000), and the vocabulary.
    for (int64_t cols : {1, 7, 33, 257, 768, 1000, 50257}) {
        const int64_t rows = cols > 1000 ? 3 : 37;
        Tensor x = random_tensor({rows, cols}, 40 + cols);
        Tensor bias = random_tensor({cols}, 41 + cols);
        Tensor out = poisoned({rows, cols}, DType::Float32, kGpu);
        Tensor x_gpu = x.to(kGpu), bias_gpu = bias.to(kGpu);
        kernels::cuda::bias_add(out.data<float>(), x_gpu.data<float>(), bias_gpu.data<float>(), rows, cols,
                                gpu_stream());
        // One float addition per element on both sides: bitwise equal.
        expect_equal(out, ops::bias_add(x, bias), "bias_add " + shape_str({rows, cols}));
        expect_equal(ops::bias_add(x_gpu, bias_gpu), ops::bias_add(x, bias), "ops::bias_add " + shape_str({rows, cols}));
    }
    // Slices: one row into 1000 columns is 4000 bytes, still aligned (the float4 path on a view);
    // one row into 33 columns is 132 bytes, not aligned (the scalar path).
    Tensor wide_padded = random_tensor({6, 1000}, 42);
    Tensor wide_bias = random_tensor({1000}, 43);
    Tensor wide_sliced = wide_padded.to(kGpu).slice(1, 6);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(wide_sliced.data<float>()) % 16, 0u);
    expect_equal(ops::bias_add(wide_sliced, wide_bias.to(kGpu)), ops::bias_add(wide_padded.slice(1, 6), wide_bias),
                 "bias_add sliced (5, 1000)");
    Tensor narrow_padded = random_tensor({6, 33}, 44);
    Tensor narrow_bias = random_tensor({33}, 45);
    expect_equal(ops::bias_add(misaligned_gpu(narrow_padded), narrow_bias.to(kGpu)),
                 ops::bias_add(narrow_padded.slice(1, 6), narrow_bias), "bias_add misaligned (5, 33)");
}

// The GPU sums in float in another order than the CPU's double loop. Every GPU sum here is a
// chain of at most ~550 float additions (rows per chunk + chunks, or per-thread terms + two
// shuffle trees); the rounding errors have random signs, so they grow like sqrt(550) * 6e-8
// ~ 1.4e-6 of sum |x|. 1e-5 of sum |x| leaves a margin of 7.
constexpr double kReductionTolerance = 1e-5;

TEST(ElementwiseCuda, SumRowsMatchesCpu) {
    MP_REQUIRE_GPU();
    // (rows, cols): a single element, tall-and-narrow (chunked, 513 chunks), GPT-2's bias
    // gradient (chunked), wide (one chunk), no rows at all.
    for (Shape shape : {Shape{1, 1}, Shape{7, 33}, Shape{257, 7}, Shape{16385, 3}, Shape{4096, 768}, Shape{3, 50257},
                        Shape{1000, 257}, Shape{0, 5}}) {
        const int64_t rows = shape[0], cols = shape[1];
        Tensor x = random_tensor(shape, 50 + rows + cols);
        Tensor x_gpu = x.to(kGpu);
        Tensor out = poisoned({cols}, DType::Float32, kGpu);
        size_t workspace_floats = kernels::cuda::sum_rows_workspace_floats(rows, cols);
        Tensor workspace = poisoned({static_cast<int64_t>(workspace_floats) + 1}, DType::Float32, kGpu);
        kernels::cuda::sum_rows(out.data<float>(), x_gpu.data<float>(), rows, cols, workspace.data<float>(),
                                gpu_stream());
        Tensor expected = ops::sum_rows(x);
        const double atol = kReductionTolerance * largest_column_abs_sum(x);  // see kReductionTolerance
        expect_close(out, expected, 0.0, atol, "sum_rows " + shape_str(shape));
        expect_close(ops::sum_rows(x_gpu), expected, 0.0, atol, "ops::sum_rows " + shape_str(shape));
    }
    Tensor padded = random_tensor({301, 33}, 51);
    Tensor sliced = padded.slice(1, 301);
    expect_close(ops::sum_rows(misaligned_gpu(padded)), ops::sum_rows(sliced), 0.0,
                 kReductionTolerance * largest_column_abs_sum(sliced), "sum_rows misaligned (300, 33)");
}

TEST(ElementwiseCuda, SumAndSumSquaresMatchCpu) {
    MP_REQUIRE_GPU();
    std::vector<int64_t> sizes = kSizes;
    sizes.push_back(0);            // an empty sum is 0
    sizes.push_back((1 << 22) + 3);  // past the block cap: several float4s per thread
    for (int64_t n : sizes) {
        Tensor x = random_tensor({n}, 60 + n);
        Tensor x_gpu = x.to(kGpu);
        Tensor workspace =
            poisoned({static_cast<int64_t>(kernels::cuda::sum_workspace_floats(n)) + 1}, DType::Float32, kGpu);
        Tensor out = poisoned({}, DType::Float32, kGpu);
        kernels::cuda::sum(out.data<float>(), x_gpu.data<float>(), n, workspace.data<float>(), gpu_stream());
        double expected_sum = 0.0, expected_squares = 0.0;
        for (double v : to_doubles(x)) expected_sum += v, expected_squares += v * v;
        const double abs_sum = sum_abs(x);
        EXPECT_NEAR(out.item(), expected_sum, kReductionTolerance * abs_sum) << "sum n=" << n;
        EXPECT_NEAR(ops::sum(x_gpu).item(), expected_sum, kReductionTolerance * abs_sum) << "ops::sum n=" << n;
        out.fill_(NAN);
        kernels::cuda::sum_squares(out.data<float>(), x_gpu.data<float>(), n, workspace.data<float>(), gpu_stream());
        // The squares are all positive: sum |x^2| is the result itself.
        EXPECT_NEAR(out.item(), expected_squares, kReductionTolerance * expected_squares) << "sum_squares n=" << n;
    }
    Tensor padded = random_tensor({14, 3781}, 61);
    Tensor sliced = padded.slice(1, 14);
    double expected = 0.0;
    for (double v : to_doubles(sliced)) expected += v;
    EXPECT_NEAR(ops::sum(misaligned_gpu(padded)).item(), expected, kReductionTolerance * sum_abs(sliced))
        << "sum misaligned";
}

TEST(ElementwiseCuda, GlobalL2NormMatchesCpu) {
    MP_REQUIRE_GPU();
    std::vector<Tensor> cpu_tensors, gpu_tensors;
    for (int64_t n : kSizes) {
        cpu_tensors.push_back(random_tensor({n}, 70 + n));
        gpu_tensors.push_back(cpu_tensors.back().to(kGpu));
    }
    Tensor padded = random_tensor({14, 3781}, 71);
    cpu_tensors.push_back(padded.slice(1, 14));
    gpu_tensors.push_back(misaligned_gpu(padded));
    cpu_tensors.push_back(Tensor::zeros({0}));
    gpu_tensors.push_back(Tensor::zeros({0}, DType::Float32, kGpu));
    const double expected = ops::global_l2_norm(cpu_tensors);
    // Sum of positive squares: relative error <= kReductionTolerance, halved by the sqrt.
    EXPECT_NEAR(ops::global_l2_norm(gpu_tensors), expected, 0.5 * kReductionTolerance * expected);
}

TEST(ElementwiseCuda, ReductionsAreBitwiseReproducible) {
    MP_REQUIRE_GPU();
    Tensor big = random_tensor({(1 << 22) + 3}, 80).to(kGpu);
    expect_equal(ops::sum(big), ops::sum(big), "sum twice");
    for (Shape shape : {Shape{16385, 3}, Shape{4096, 768}}) {
        Tensor x = random_tensor(shape, 81).to(kGpu);
        expect_equal(ops::sum_rows(x), ops::sum_rows(x), "sum_rows twice " + shape_str(shape));
    }
    std::vector<Tensor> tensors = {big, random_tensor({50257}, 82).to(kGpu)};
    EXPECT_EQ(ops::global_l2_norm(tensors), ops::global_l2_norm(tensors));
}

#endif  // MP_CUDA

TEST(Elementwise, BroadcastScalarRepeatsTheValue) {
    for (DType dtype : {DType::Float32, DType::Float64}) {
        Tensor scalar = Tensor::full({}, -2.75, dtype);
        Tensor out = ops::broadcast_scalar(scalar, {3, 5});
        EXPECT_EQ(out.shape(), (Shape{3, 5}));
        EXPECT_EQ(out.dtype(), dtype);
        for (double v : to_doubles(out)) EXPECT_EQ(v, -2.75);
    }
    EXPECT_EQ(ops::broadcast_scalar(Tensor::full({1}, 4.0), {}).item(), 4.0);
    EXPECT_EQ(ops::broadcast_scalar(Tensor::full({1}, 4.0), {0, 3}).numel(), 0);
    expect_invalid_argument([&] { ops::broadcast_scalar(Tensor::zeros({2}), {3}); },
                            {"broadcast_scalar", "one-element", "float32(2)"});
}

TEST(ElementwiseCuda, BroadcastScalarStaysOnTheDevice) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    Tensor scalar = random_tensor({}, 17).to(gpu);
    Tensor out = ops::broadcast_scalar(scalar, {37, 11});
    EXPECT_EQ(out.device(), gpu);
    const double value = scalar.item();
    for (double v : to_doubles(out)) EXPECT_EQ(v, value);
}

// ---------------------------------------------------------------- bfloat16

namespace {

// bfloat16 inputs for a float32 reference: x rounded to bfloat16, and that rounding widened back.
struct Bf16Input {
    Tensor bf16, widened;
};
Bf16Input bf16_input(const Shape& shape, uint64_t seed) {
    Tensor b = random_tensor(shape, seed).to(DType::BFloat16);
    return {b, b.to(DType::Float32)};
}

// The definition of a bfloat16 elementwise op: the float32 op on the widened inputs, rounded to
// nearest even once. Every element must be that, bit for bit.
void expect_rounded_from(const Tensor& bf16_result, const Tensor& float_result, const std::string& what) {
    ASSERT_EQ(bf16_result.dtype(), DType::BFloat16) << what;
    std::vector<bfloat16> got = bf16_result.to_vector<bfloat16>();
    std::vector<float> exact = float_result.to_vector<float>();
    ASSERT_EQ(got.size(), exact.size()) << what;
    for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i].bits, bfloat16(exact[i]).bits) << what << " element " << i;
}

}  // namespace

TEST(ElementwiseBf16, EachOutputIsTheFloat32OpRoundedOnce) {
    const Shape shape{37, 13};  // non-round
    Bf16Input a = bf16_input(shape, 41), b = bf16_input(shape, 42), bias = bf16_input({13}, 43);
    expect_rounded_from(ops::add(a.bf16, b.bf16), ops::add(a.widened, b.widened), "add");
    expect_rounded_from(ops::sub(a.bf16, b.bf16), ops::sub(a.widened, b.widened), "sub");
    expect_rounded_from(ops::mul(a.bf16, b.bf16), ops::mul(a.widened, b.widened), "mul");
    expect_rounded_from(ops::scale(a.bf16, 0.3), ops::scale(a.widened, 0.3), "scale");
    expect_rounded_from(ops::bias_add(a.bf16, bias.bf16), ops::bias_add(a.widened, bias.widened), "bias_add");
    Tensor y = a.bf16.clone(), y_float = a.widened.clone();
    ops::axpy_(y, b.bf16, -0.7);
    ops::axpy_(y_float, b.widened, -0.7);
    expect_rounded_from(y, y_float, "axpy_");
}

// Against float32 on the unrounded inputs. With u = 2^-8 (bfloat16's unit roundoff; float32's
// 2^-24 is negligible beside it): each input carries a relative error of at most u, the output
// one more rounding. add/sub: |r̃ - r| <= u(|a| + |b|) + u|r̃|; mul: |r̃ - r| <= ((1 + u)^3 - 1)|ab|.
// The checks use these bounds with 1% slack for the float32 arithmetic.
TEST(ElementwiseBf16, WithinTheUnitRoundoffBoundOfFloat32) {
    const double u = std::ldexp(1.0, -8);
    const Shape shape{29, 11};
    Tensor a = random_tensor(shape, 51), b = random_tensor(shape, 52);
    std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>();
    std::vector<float> sum_ref = ops::add(a, b).to_vector<float>(), prod_ref = ops::mul(a, b).to_vector<float>();
    std::vector<float> sum = ops::add(a.to(DType::BFloat16),
                                      b.to(DType::BFloat16)).to(DType::Float32).to_vector<float>();
    std::vector<float> prod = ops::mul(a.to(DType::BFloat16),
                                       b.to(DType::BFloat16)).to(DType::Float32).to_vector<float>();
    for (size_t i = 0; i < av.size(); ++i) {
        const double add_bound = 1.01 * (u * (std::fabs(av[i]) + std::fabs(bv[i])) + u * std::fabs(sum[i]));
        EXPECT_LE(std::fabs(double(sum[i]) - sum_ref[i]), add_bound) << i;
        const double mul_bound = 1.01 * (std::pow(1 + u, 3) - 1) * std::fabs(double(av[i]) * bv[i]);
        EXPECT_LE(std::fabs(double(prod[i]) - prod_ref[i]), mul_bound) << i;
    }
}

// Reductions of bfloat16 accumulate in double and round once (sum, sum_rows); the global norm of
// bfloat16 tensors is that of their float32 widening (not rounded to 8 bits).
TEST(ElementwiseBf16, ReductionsAccumulateWideAndRoundOnce) {
    Bf16Input x = bf16_input({23, 9}, 61);
    std::vector<float> w = x.widened.to_vector<float>();
    double total = 0, squares = 0;
    std::vector<double> columns(9, 0.0);
    for (size_t i = 0; i < w.size(); ++i) {
        total += w[i];
        squares += double(w[i]) * w[i];
        columns[i % 9] += w[i];
    }
    EXPECT_EQ(ops::sum(x.bf16).to_vector<bfloat16>()[0].bits, element_from_double<bfloat16>(total).bits);
    std::vector<bfloat16> column_sums = ops::sum_rows(x.bf16).to_vector<bfloat16>();
    for (size_t c = 0; c < 9; ++c) EXPECT_EQ(column_sums[c].bits, element_from_double<bfloat16>(columns[c]).bits) << c;
    EXPECT_DOUBLE_EQ(ops::global_l2_norm({x.bf16}), ops::global_l2_norm({x.widened}));
    EXPECT_NEAR(ops::global_l2_norm({x.bf16}), std::sqrt(squares), 1e-6 * std::sqrt(squares));
}

TEST(ElementwiseBf16, MixedDtypesAndIntegersAreRefused) {
    Tensor f = random_tensor({3}, 1), b = f.to(DType::BFloat16), i = Tensor::zeros({3}, DType::Int32);
    expect_invalid_argument([&] { ops::add(f, b); }, {"add: dtype mismatch", "float32(3) on cpu",
                            "bfloat16(3) on cpu"});
    expect_invalid_argument([&] { ops::scale(i, 2.0); },
                            {"scale: expects float32 | float64 | bfloat16 on cpu, got int32(3) on cpu"});
}

// On the GPU: the bfloat16 kernels give the CPU reference's bits (both compute in float32 with
// IEEE-rounded operations and round to nearest even once), on odd sizes, the raw binary kernels
// into NaN-poisoned outputs; the reductions agree to one bfloat16 rounding.
TEST(ElementwiseCudaBf16, MatchCpuBitwise) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    for (int64_t n : {1, 7, 1001, 65537}) {
        Tensor a = random_tensor({n}, 70 + n).to(DType::BFloat16), b = random_tensor({n}, 80 + n).to(DType::BFloat16);
        Tensor ag = a.to(gpu), bg = b.to(gpu);
        const std::string what = "n=" + std::to_string(n);
#if MP_CUDA  // the raw kernels into NaN-poisoned outputs: every element must be written
        Tensor out = poisoned({n}, DType::BFloat16, gpu);
        const cudaStream_t stream = compute_stream(0);
        kernels::cuda::add(out.data<bfloat16>(), ag.data<bfloat16>(), bg.data<bfloat16>(), n, stream);
        expect_equal(out, ops::add(a, b), "add " + what);
        kernels::cuda::sub(out.data<bfloat16>(), ag.data<bfloat16>(), bg.data<bfloat16>(), n, stream);
        expect_equal(out, ops::sub(a, b), "sub " + what);
        kernels::cuda::mul(out.data<bfloat16>(), ag.data<bfloat16>(), bg.data<bfloat16>(), n, stream);
        expect_equal(out, ops::mul(a, b), "mul " + what);
#endif
        expect_equal(ops::scale(ag, -1.3), ops::scale(a, -1.3), "scale " + what);
        Tensor y = a.clone(), yg = ag.clone();
        ops::axpy_(y, b, 0.7);
        ops::axpy_(yg, bg, 0.7);
        expect_equal(yg, y, "axpy " + what);
    }
    Tensor x = random_tensor({33, 17}, 90).to(DType::BFloat16), bias = random_tensor({17}, 91).to(DType::BFloat16);
    expect_equal(ops::bias_add(x.to(gpu), bias.to(gpu)), ops::bias_add(x, bias), "bias_add");
    // The reductions run the float32 kernels on the widened tensor: one bfloat16 rounding apart.
    expect_close(ops::sum_rows(x.to(gpu)), ops::sum_rows(x), std::ldexp(1.0, -8), 1e-5, "sum_rows");
    EXPECT_NEAR(ops::global_l2_norm({x.to(gpu)}), ops::global_l2_norm({x}), 1e-5 * ops::global_l2_norm({x}));
}

// ---------------------------------------------------------------- lists (gradient clipping)

// scale_ over a list writes s * x into every tensor in place, bit for bit as `scale`, through the
// handles the caller holds (a gradient slot keeps its tensor).
TEST(ElementwiseCpu, ScaleListInPlaceEqualsScale) {
    std::vector<Tensor> tensors = {random_tensor({5, 3}, 81), random_tensor({1}, 82), Tensor::zeros({0}),
                                   random_tensor({9}, 83, 1.0, DType::Float64)};
    std::vector<Tensor> expected;
    for (const Tensor& t : tensors) expected.push_back(ops::scale(t, 0.37));
    std::vector<Tensor> handles = tensors;
    ops::scale_(handles, 0.37);
    for (size_t i = 0; i < tensors.size(); ++i) expect_equal(tensors[i], expected[i], str("tensor ", i));
    expect_invalid_argument([&] { ops::scale_({Tensor::zeros({2}), Tensor()}, 2.0); },
                            {"scale_: tensor 1 is an undefined tensor"});
}

#if MP_CUDA  // uses the CUDA helpers above
// The multi-tensor paths on many tensors: more than one launch's 192, tensors spanning several
// 64k-element chunks with a tail, misaligned slices, empty tensors. The norm: float partials per
// chunk summed in double against the CPU's double sums (relative error within the reductions'
// tolerance, halved by the sqrt); the scale: bitwise as `scale` on each.
TEST(ElementwiseCuda, ListNormAndScaleOverManyTensorsAndChunks) {
    MP_REQUIRE_GPU();
    std::vector<Tensor> cpu_tensors, gpu_tensors;
    std::vector<int64_t> sizes = {3 * 65536 + 5, 65536, 0, 1, 7};
    for (int i = 0; i < 200; ++i) sizes.push_back(1 + (i * 53) % 400);
    for (size_t i = 0; i < sizes.size(); ++i) {
        cpu_tensors.push_back(random_tensor({sizes[i]}, 1000 + i));
        gpu_tensors.push_back(cpu_tensors.back().to(kGpu));
    }
    Tensor padded = random_tensor({14, 3781}, 72);
    cpu_tensors.push_back(padded.slice(1, 14));
    gpu_tensors.push_back(misaligned_gpu(padded));
    const double expected = ops::global_l2_norm(cpu_tensors);
    EXPECT_NEAR(ops::global_l2_norm(gpu_tensors), expected, 0.5 * kReductionTolerance * expected);

    std::vector<Tensor> expected_scaled;
    for (const Tensor& t : gpu_tensors) expected_scaled.push_back(ops::scale(t, 0.37));
    std::vector<Tensor> handles = gpu_tensors;
    ops::scale_(handles, 0.37);
    for (size_t i = 0; i < gpu_tensors.size(); ++i)
        expect_equal(gpu_tensors[i], expected_scaled[i], str("scaled tensor ", i));
}
#endif  // MP_CUDA
