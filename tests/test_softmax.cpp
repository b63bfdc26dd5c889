// Softmax tests: closed forms (uniform rows, [0, ln 2], shift invariance, huge logits, the
// causal mask and scale), backward against float64 central differences, CUDA against the CPU
// reference on odd shapes (both kernel paths, aligned and unaligned, NaN in masked positions),
// and every argument error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/softmax.h"
#include "tensor/device_context.h"
#include "tensor/ops/softmax.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_close;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::poisoned;
using mp::testing::random_tensor;
using mp::testing::to_doubles;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

Tensor from_doubles(const std::vector<double>& values, const Shape& shape, DType dtype = DType::Float64) {
    return Tensor::from_vector(values, shape).to(dtype);
}

// Sets every masked entry (column j > row i of each trailing (T, T) block) to `value`.
Tensor with_masked_entries(const Tensor& t, double value) {
    const int64_t seq_len = t.size(-1);
    std::vector<double> values = to_doubles(t);
    for (size_t flat = 0; flat < values.size(); ++flat) {
        const int64_t row = static_cast<int64_t>(flat) / seq_len % seq_len;
        const int64_t col = static_cast<int64_t>(flat) % seq_len;
        if (col > row) values[flat] = value;
    }
    return from_doubles(values, t.shape(), t.dtype());
}

// Central-difference gradient of loss(x) (float64, CPU), one element at a time.
Tensor numeric_gradient(const Tensor& x, const std::function<double(const Tensor&)>& loss, double h) {
    std::vector<double> values = x.to_vector<double>();
    std::vector<double> gradient(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
        const double saved = values[i];
        values[i] = saved + h;
        const double up = loss(Tensor::from_vector(values, x.shape()));
        values[i] = saved - h;
        const double down = loss(Tensor::from_vector(values, x.shape()));
        values[i] = saved;
        gradient[i] = (up - down) / (2 * h);
    }
    return Tensor::from_vector(gradient, x.shape());
}

// sum(w * y), float64.
double weighted_sum(const Tensor& w, const Tensor& y) {
    std::vector<double> a = w.to_vector<double>(), b = y.to_vector<double>();
    double total = 0.0;
    for (size_t i = 0; i < a.size(); ++i) total += a[i] * b[i];
    return total;
}

#if MP_CUDA  // calls raw kernels::cuda:: functions, which a CPU-only build does not have
// The float32 CPU references (sums in double, std::exp, one rounding), which the CUDA kernels are
// tested against: ops::softmax on a float32 CPU tensor takes the fast path instead.
Tensor softmax_reference(const Tensor& x) {
    std::vector<float> in = x.to_vector<float>(), out(in.size());
    const int64_t cols = x.size(-1), rows = x.numel() / cols;
    kernels::cpu::softmax_forward_reference(in.data(), out.data(), rows, cols);
    return Tensor::from_vector(out, x.shape());
}

Tensor causal_softmax_reference(const Tensor& x, double scale) {
    std::vector<float> in = x.to_vector<float>(), out(in.size());
    const int64_t seq_len = x.size(-1), rows = x.numel() / seq_len;
    kernels::cpu::causal_softmax_forward_reference(in.data(), out.data(), rows, seq_len, scale);
    return Tensor::from_vector(out, x.shape());
}

// A CUDA copy of `host` starting `shift` floats into a NaN-poisoned buffer: shift 1 breaks the
// 16-byte alignment of every row start and forces the scalar kernels.
Tensor gpu_buffer_holding(const Tensor& host, int64_t shift) {
    Tensor buffer = poisoned({shift + host.numel()}, DType::Float32, Device::cuda(0));
    buffer.slice(shift, shift + host.numel()).copy_from(host.reshape({host.numel()}));
    return buffer;
}

// The part of a buffer made by gpu_buffer_holding (or a poisoned output of the same layout) as `shape`.
Tensor view_of(const Tensor& buffer, int64_t shift, const Shape& shape) {
    return buffer.slice(shift, shift + shape_numel(shape)).reshape(shape);
}
#endif  // MP_CUDA

}  // namespace

TEST(Softmax, EqualLogitsGiveUniformRows) {
    for (DType dtype : {DType::Float32, DType::Float64}) {
        Tensor y = ops::softmax(Tensor::full({3, 5}, 2.5, dtype));
        // exp(0) = 1 and the sum 5 are exact: y is 1/5 rounded once.
        expect_close(y, Tensor::full({3, 5}, 0.2, DType::Float64), dtype == DType::Float32 ? 6e-8 : 1e-16, 0.0,
                     "uniform");
    }
}

TEST(Softmax, ZeroAndLn2GiveOneThirdAndTwoThirds) {
    for (DType dtype : {DType::Float32, DType::Float64}) {
        Tensor y = ops::softmax(from_doubles({0.0, std::log(2.0)}, {1, 2}, dtype));
        // Float32: ln 2 rounded to float moves the result by ~1e-8, and y is rounded once (6e-8).
        expect_close(y, from_doubles({1.0 / 3.0, 2.0 / 3.0}, {1, 2}), dtype == DType::Float32 ? 1.2e-7 : 1e-15,
                     0.0, "[0, ln 2]");
    }
}

TEST(Softmax, RowsSumToOneAndIgnoreAConstantShift) {
    Tensor x = random_tensor({5, 37}, 1, 4.0, DType::Float64);
    std::vector<double> y = ops::softmax(x).to_vector<double>();
    for (int r = 0; r < 5; ++r) {
        double sum = 0.0;
        for (int j = 0; j < 37; ++j) sum += y[r * 37 + j];
        EXPECT_NEAR(sum, 1.0, 1e-14) << "row " << r;
    }
    std::vector<double> shifted_values = x.to_vector<double>();
    for (double& v : shifted_values) v += 1024.0;
    // x + 1024 is rounded to ulp(1024)/2 = 1.1e-13, which moves exp(x - max) by that relative amount.
    expect_close(ops::softmax(Tensor::from_vector(shifted_values, x.shape())), ops::softmax(x), 1e-12, 0.0,
                 "softmax(x + 1024) vs softmax(x)");
    // The float32 reference evaluates in double and rounds once: within half a float ulp.
    expect_close(ops::softmax(x.to(DType::Float32)), ops::softmax(x.to(DType::Float32).to(DType::Float64)), 6e-8,
                 0.0, "float32 vs float64 on the same values");
}

TEST(Softmax, HugeLogitsDoNotOverflow) {
    Tensor x = Tensor::from_vector<float>({1e4f, 0.0f, -1e4f, 1e4f, 1e4f, 1e4f, 1e4f, 1e4f - 1.0f, -1e4f}, {3, 3});
    const double e = std::exp(1.0);
    // Row 2 is softmax([0, -1, -2e4]) after subtracting the max: [e, 1, 0] / (e + 1).
    expect_close(ops::softmax(x),
                 from_doubles({1.0, 0.0, 0.0, 1.0 / 3, 1.0 / 3, 1.0 / 3, e / (e + 1), 1.0 / (e + 1), 0.0}, {3, 3}),
                 1.2e-7, 0.0, "huge logits (float rounding)");
}

TEST(CausalSoftmax, FirstRowIsOneThenZerosAndMaskedEntriesAreExactlyZero) {
    // NaN in the masked half: the kernel must not read it.
    Tensor scores = with_masked_entries(random_tensor({2, 6, 6}, 2, 2.0, DType::Float64), kNaN);
    std::vector<double> y = ops::causal_softmax(scores, 0.5).to_vector<double>();
    for (int64_t block = 0; block < 2; ++block) {
        const double* first_row = &y[block * 36];
        EXPECT_EQ(first_row[0], 1.0);
        for (int j = 1; j < 6; ++j) EXPECT_EQ(first_row[j], 0.0);
        for (int i = 0; i < 6; ++i)
            for (int j = 0; j < 6; ++j) {
                const double v = y[block * 36 + i * 6 + j];
                if (j > i)
                    EXPECT_EQ(v, 0.0) << "masked (" << i << ", " << j << ")";
                else
                    EXPECT_TRUE(std::isfinite(v) && v > 0.0) << "kept (" << i << ", " << j << ") = " << v;
            }
    }
}

TEST(CausalSoftmax, EachRowIsTheSoftmaxOfItsScaledPrefix) {
    const int64_t seq_len = 7;
    const double scale = 0.37;
    Tensor scores = random_tensor({3, seq_len, seq_len}, 3, 3.0, DType::Float64);
    std::vector<double> x = scores.to_vector<double>();
    std::vector<double> y = ops::causal_softmax(scores, scale).to_vector<double>();
    for (int64_t row = 0; row < 3 * seq_len; ++row) {
        const int64_t kept = row % seq_len + 1;
        std::vector<double> prefix(x.begin() + row * seq_len, x.begin() + row * seq_len + kept);
        for (double& v : prefix) v *= scale;
        std::vector<double> expected = ops::softmax(Tensor::from_vector(prefix, {kept})).to_vector<double>();
        expected.resize(seq_len, 0.0);
        std::vector<double> actual(y.begin() + row * seq_len, y.begin() + (row + 1) * seq_len);
        // Same double arithmetic up to where the scale is applied (one rounding, 1e-16 relative).
        expect_close(Tensor::from_vector(actual, {seq_len}), Tensor::from_vector(expected, {seq_len}), 1e-14, 0.0,
                     "causal row " + std::to_string(row));
    }
}

// float32's fast forward (a vectorized e^x, each once) against the reference (std::exp) on odd
// shapes, plain and causal: the sums run in the same order over exps within 3e-16 of each other,
// so y is the same float but where it lands within ~1e-15 of a rounding midpoint: one ulp
// (rtol 2^-23), and rarely (at most one element in a thousand). Rows given alone (a micro-batch)
// give the whole's bits. Special rows: -inf logits (weight 0), a huge logit, all -inf (NaN).
TEST(Softmax, Float32FastPathMatchesTheReference) {
    const double inf = std::numeric_limits<double>::infinity();
    struct Case {
        int64_t rows, cols;
        bool causal;
        double scale;
    };
    for (const Case& c : {Case{37, 129, false, 1.0}, Case{4 * 67, 67, true, 0.17}, Case{3, 50257, false, 1.0}}) {
        SCOPED_TRACE(::testing::Message() << "rows " << c.rows << ", cols " << c.cols << (c.causal ? ", causal" : ""));
        std::vector<float> x = random_tensor({c.rows, c.cols}, 700 + c.cols, 4.0).to_vector<float>();
        // Rows that keep every column (a causal block's last): one with -inf and a huge logit, one all -inf.
        const int64_t special = c.causal ? c.cols - 1 : 0, all_minus_inf = c.causal ? 2 * c.cols - 1 : 1;
        x[special * c.cols + 1] = static_cast<float>(-inf), x[special * c.cols + 2] = 1e4f;
        for (int64_t j = 0; j < c.cols; ++j) x[all_minus_inf * c.cols + j] = static_cast<float>(-inf);
        std::vector<float> y(x.size()), y_ref(x.size());
        auto forward = [&](const float* in, float* out, int64_t rows, bool reference) {
            if (c.causal && reference) kernels::cpu::causal_softmax_forward_reference(in, out, rows, c.cols, c.scale);
            if (c.causal && !reference) kernels::cpu::causal_softmax_forward(in, out, rows, c.cols, c.scale);
            if (!c.causal && reference) kernels::cpu::softmax_forward_reference(in, out, rows, c.cols);
            if (!c.causal && !reference) kernels::cpu::softmax_forward(in, out, rows, c.cols);
        };
        forward(x.data(), y.data(), c.rows, false);
        forward(x.data(), y_ref.data(), c.rows, true);
        int64_t differ = 0;
        for (size_t i = 0; i < y.size(); ++i) {
            if (std::isnan(y_ref[i])) {
                ASSERT_TRUE(std::isnan(y[i])) << "element " << i;
                continue;
            }
            ASSERT_LE(std::fabs(y[i] - y_ref[i]), std::ldexp(1.0, -23) * y_ref[i]) << "element " << i;
            differ += y[i] != y_ref[i];
        }
        EXPECT_LE(differ, static_cast<int64_t>(y.size()) / 1000);
        EXPECT_EQ(y[special * c.cols], 0.0f);  // e^{-1e4 - ...}: the huge logit takes it all
        EXPECT_EQ(y[special * c.cols + 2], 1.0f);
        EXPECT_TRUE(std::isnan(y[all_minus_inf * c.cols]));
        // A micro-batch of whole blocks from the middle: the same bits as in the whole.
        const int64_t block = c.causal ? c.cols : 1, first = block * (c.rows / block / 2);
        std::vector<float> part((c.rows - first) * c.cols);
        forward(x.data() + first * c.cols, part.data(), c.rows - first, false);
        for (size_t i = 0; i < part.size(); ++i)  // bits, NaN included
            ASSERT_EQ(std::memcmp(&part[i], &y[first * c.cols + i], sizeof(float)), 0) << "micro-batch element " << i;
    }
}

// The fast path's rows are shared over the threads whole, each with its own scratch: the same bits
// on 1, 2 and 3 threads, plain and causal, at sizes past the threading threshold.
TEST(Softmax, Float32BitsDoNotDependOnTheThreadCount) {
    const int threads_before = cpu_threads();
    for (bool causal : {false, true}) {
        const int64_t cols = causal ? 97 : 1031, rows = causal ? 4 * 97 : 67;
        ASSERT_GT(rows * cols, kernels::cpu::kMinParallelElements);
        const std::vector<float> x = random_tensor({rows, cols}, 830 + cols, 4.0).to_vector<float>();
        std::vector<float> y_one;
        for (int threads : {1, 2, 3}) {
            set_cpu_threads(threads);
            std::vector<float> y(x.size());
            if (causal) kernels::cpu::causal_softmax_forward(x.data(), y.data(), rows, cols, 0.3);
            else kernels::cpu::softmax_forward(x.data(), y.data(), rows, cols);
            if (threads == 1) {
                y_one = y;
                continue;
            }
            EXPECT_EQ(std::memcmp(y.data(), y_one.data(), y.size() * sizeof(float)), 0)
                << (causal ? "causal " : "") << "softmax on " << threads << " threads";
        }
    }
    set_cpu_threads(threads_before);
}

// Loss L = sum(w * softmax(x)); its gradient is softmax_backward(y, w). h = 1e-6: truncation
// h^2 |L'''| ~ 1e-12 and rounding 1e-16 |L| / h ~ 1e-10, so 1e-8 holds with margin.
TEST(Softmax, BackwardMatchesCentralDifferencesInFloat64) {
    Tensor x = random_tensor({3, 6}, 4, 2.0, DType::Float64);
    Tensor w = random_tensor({3, 6}, 5, 1.0, DType::Float64);
    Tensor analytic = ops::softmax_backward(ops::softmax(x), w);
    Tensor numeric = numeric_gradient(x, [&](const Tensor& t) { return weighted_sum(w, ops::softmax(t)); }, 1e-6);
    expect_close(analytic, numeric, 0.0, 1e-8, "softmax_backward vs central differences");
}

TEST(CausalSoftmax, BackwardMatchesCentralDifferencesInFloat64) {
    const double scale = 0.7;
    Tensor x = random_tensor({2, 5, 5}, 6, 2.0, DType::Float64);
    Tensor w = random_tensor({2, 5, 5}, 7, 1.0, DType::Float64);
    Tensor analytic = ops::causal_softmax_backward(ops::causal_softmax(x, scale), w, scale);
    Tensor numeric =
        numeric_gradient(x, [&](const Tensor& t) { return weighted_sum(w, ops::causal_softmax(t, scale)); }, 1e-6);
    // Tolerance as in Softmax.BackwardMatchesCentralDifferencesInFloat64. Masked inputs do not
    // affect the loss, so both gradients are exactly 0 there.
    expect_close(analytic, numeric, 0.0, 1e-8, "causal_softmax_backward vs central differences");
    std::vector<double> grad = analytic.to_vector<double>();
    std::vector<double> masked = to_doubles(with_masked_entries(analytic, 0.0));
    EXPECT_EQ(grad, masked) << "masked gradients must be exactly 0";
}

// Error analysis behind the CUDA tolerances (float32, against the double-evaluated reference):
// forward, y_j = exp(x_j - max) / sum. x_j - max is rounded in float (~6e-8 |x_j - max|), expf is
// within 2 ulps, the float sum over at most ~100 terms per thread then a tree is within ~1e-6
// relative: y_j is within 1e-5 relative wherever it is above float's underflow (atol 1e-30).
#if MP_CUDA  // calls raw kernels::cuda:: functions, which a CPU-only build does not have
constexpr double kForwardRtol = 1e-5, kForwardAtol = 1e-30;
// backward, dx_j = scale y_j (dy_j - dot): the float dot product (|dot| <= max |dy| ~ 4.5, same
// summation as above) is off by ~1e-6 at most, multiplied by y_j <= 1, and dy_j - dot may cancel,
// so an absolute part of 2e-6 is needed on top of 1e-5 relative.
constexpr double kBackwardRtol = 1e-5, kBackwardAtol = 2e-6;

TEST(SoftmaxCuda, MatchesCpuOnOddShapesAlignedAndUnaligned) {
    MP_REQUIRE_GPU();
    cudaStream_t stream = compute_stream(0);
    struct Case {
        int64_t rows, cols;
    };
    // cols <= 1024 take the one-warp kernel, longer rows the one-block kernel; cols % 4 == 0 with
    // aligned pointers take float4, everything else the scalar loads.
    for (Case c : {Case{37, 1}, Case{37, 7}, Case{13, 33}, Case{9, 257}, Case{5, 1000}, Case{6, 1024}, Case{3, 2052},
                   Case{3, 50257}}) {
        for (int64_t shift : {0, 1}) {
            SCOPED_TRACE(::testing::Message() << "rows " << c.rows << ", cols " << c.cols << ", shift " << shift);
            const Shape shape = {c.rows, c.cols};
            std::vector<float> values = random_tensor(shape, 10 + c.cols, 3.0).to_vector<float>();
            values[0] = 1e4f;  // row 0 is dominated by one huge logit (and one hugely negative one)
            if (c.cols > 1) values[1] = -1e4f;
            Tensor x = Tensor::from_vector(values, shape);
            Tensor y_expected = softmax_reference(x);
            Tensor x_gpu = gpu_buffer_holding(x, shift);
            Tensor y_gpu = poisoned({shift + x.numel()}, DType::Float32, Device::cuda(0));
            kernels::cuda::softmax_forward(x_gpu.data<float>() + shift, y_gpu.data<float>() + shift, c.rows, c.cols,
                                           stream);
            expect_close(view_of(y_gpu, shift, shape), y_expected, kForwardRtol, kForwardAtol, "softmax forward");

            Tensor dy = random_tensor(shape, 20 + c.cols);
            Tensor y_in = gpu_buffer_holding(y_expected, shift), dy_in = gpu_buffer_holding(dy, shift);
            Tensor dx_gpu = poisoned({shift + x.numel()}, DType::Float32, Device::cuda(0));
            kernels::cuda::softmax_backward(y_in.data<float>() + shift, dy_in.data<float>() + shift,
                                            dx_gpu.data<float>() + shift, c.rows, c.cols, stream);
            expect_close(view_of(dx_gpu, shift, shape), ops::softmax_backward(y_expected, dy), kBackwardRtol,
                         kBackwardAtol, "softmax backward");
        }
    }
}

TEST(CausalSoftmaxCuda, MatchesCpuWithNaNInTheMaskedHalf) {
    MP_REQUIRE_GPU();
    cudaStream_t stream = compute_stream(0);
    const double scale = 0.35;
    // T <= 1024: one warp per row (T % 4 == 0 aligned: float4); T > 1024: one block per row.
    for (int64_t seq_len : {1, 7, 33, 64, 257, 1024, 1025, 1100}) {
        const int64_t blocks = seq_len <= 257 ? 3 : 1;
        for (int64_t shift : {0, 1}) {
            SCOPED_TRACE(::testing::Message() << "T " << seq_len << ", shift " << shift);
            const Shape shape = {blocks, seq_len, seq_len};
            const int64_t rows = blocks * seq_len;
            // The masked half holds NaN in every input, so reading it anywhere would show.
            Tensor x = with_masked_entries(random_tensor(shape, 30 + seq_len, 3.0), kNaN);
            Tensor y_expected = causal_softmax_reference(x, scale);
            Tensor x_gpu = gpu_buffer_holding(x, shift);
            Tensor y_gpu = poisoned({shift + x.numel()}, DType::Float32, Device::cuda(0));
            kernels::cuda::causal_softmax_forward(x_gpu.data<float>() + shift, y_gpu.data<float>() + shift, rows,
                                                  seq_len, scale, stream);
            expect_close(view_of(y_gpu, shift, shape), y_expected, kForwardRtol, kForwardAtol,
                         "causal softmax forward");

            Tensor dy = random_tensor(shape, 40 + seq_len);
            Tensor y_in = gpu_buffer_holding(with_masked_entries(y_expected, kNaN), shift);
            Tensor dy_in = gpu_buffer_holding(with_masked_entries(dy, kNaN), shift);
            Tensor dx_gpu = poisoned({shift + x.numel()}, DType::Float32, Device::cuda(0));
            kernels::cuda::causal_softmax_backward(y_in.data<float>() + shift, dy_in.data<float>() + shift,
                                                   dx_gpu.data<float>() + shift, rows, seq_len, scale, stream);
            // The masked entries of both are exactly 0, so they pass only if the kernel wrote 0 there.
            expect_close(view_of(dx_gpu, shift, shape), ops::causal_softmax_backward(y_expected, dy, scale),
                         kBackwardRtol, scale * kBackwardAtol, "causal softmax backward");
        }
    }
}

TEST(SoftmaxCuda, OpsDispatchToTheGpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    Tensor x = random_tensor({2, 33, 33}, 50, 2.0), dy = random_tensor({2, 33, 33}, 51);
    Tensor x_gpu = x.to(gpu), dy_gpu = dy.to(gpu);
    Tensor y = ops::softmax(x_gpu);
    EXPECT_TRUE(y.device().is_cuda());
    // Tolerances as in MatchesCpuOnOddShapesAlignedAndUnaligned.
    expect_close(y, softmax_reference(x), kForwardRtol, kForwardAtol, "softmax op");
    expect_close(ops::softmax_backward(y, dy_gpu), ops::softmax_backward(softmax_reference(x), dy), kBackwardRtol,
                 kBackwardAtol, "softmax_backward op");
    Tensor causal = ops::causal_softmax(x_gpu, 0.5);
    Tensor causal_expected = causal_softmax_reference(x, 0.5);
    expect_close(causal, causal_expected, kForwardRtol, kForwardAtol, "causal_softmax op");
    expect_close(ops::causal_softmax_backward(causal_expected.to(gpu), dy_gpu, 0.5),
                 ops::causal_softmax_backward(causal_expected, dy, 0.5), kBackwardRtol, kBackwardAtol,
                 "causal_softmax_backward op");
}
#endif  // MP_CUDA

TEST(Softmax, ArgumentErrorsNameTheOpAndValues) {
    Tensor undefined;
    Tensor x = Tensor::zeros({2, 3});
    Tensor ints = Tensor::zeros({2, 3}, DType::Int32);
    Tensor scalar = Tensor::full({}, 1.0);
    expect_invalid_argument([&] { ops::softmax(undefined); }, {"softmax", "x is an undefined tensor"});
    expect_invalid_argument([&] { ops::softmax(ints); }, {"softmax", "expects float32", "int32(2, 3)"});
    expect_invalid_argument([&] { ops::softmax(scalar); }, {"softmax", "x needs at least 1 dimension", "()"});

    expect_invalid_argument([&] { ops::softmax_backward(undefined, x); }, {"softmax_backward", "y is an undefined"});
    expect_invalid_argument([&] { ops::softmax_backward(x, undefined); }, {"softmax_backward", "dy is an undefined"});
    expect_invalid_argument([&] { ops::softmax_backward(ints, ints); }, {"softmax_backward", "int32(2, 3)"});
    expect_invalid_argument([&] { ops::softmax_backward(x, Tensor::zeros({2, 3}, DType::Float64)); },
                            {"softmax_backward", "dtype mismatch", "float32(2, 3)", "float64(2, 3)"});
    expect_invalid_argument([&] { ops::softmax_backward(x, Tensor::zeros({3, 2})); },
                            {"softmax_backward", "shape mismatch", "(2, 3)", "(3, 2)"});
    expect_invalid_argument([&] { ops::softmax_backward(scalar, scalar); },
                            {"softmax_backward", "y needs at least 1 dimension", "()"});
}

TEST(CausalSoftmax, ArgumentErrorsNameTheOpAndValues) {
    Tensor undefined;
    Tensor square = Tensor::zeros({2, 4, 4});
    Tensor ints = Tensor::zeros({4, 4}, DType::Int32);
    Tensor vector = Tensor::zeros({5});
    Tensor oblong = Tensor::zeros({2, 3, 4});
    const double inf = std::numeric_limits<double>::infinity();
    expect_invalid_argument([&] { ops::causal_softmax(undefined); }, {"causal_softmax", "scores is an undefined"});
    expect_invalid_argument([&] { ops::causal_softmax(ints); }, {"causal_softmax", "expects float32", "int32(4, 4)"});
    expect_invalid_argument([&] { ops::causal_softmax(vector); },
                            {"causal_softmax", "scores needs at least 2 dimension", "(5)"});
    expect_invalid_argument([&] { ops::causal_softmax(oblong); },
                            {"causal_softmax", "square (T, T)", "(2, 3, 4)"});
    expect_invalid_argument([&] { ops::causal_softmax(square, inf); }, {"causal_softmax", "scale must be finite",
                            "inf"});
    expect_invalid_argument([&] { ops::causal_softmax(square, kNaN); }, {"causal_softmax", "scale must be finite",
                            "nan"});

    const char* op = "causal_softmax_backward";
    expect_invalid_argument([&] { ops::causal_softmax_backward(undefined, square); }, {op, "y is an undefined"});
    expect_invalid_argument([&] { ops::causal_softmax_backward(square, undefined); }, {op, "dy is an undefined"});
    expect_invalid_argument([&] { ops::causal_softmax_backward(ints, ints); }, {op, "int32(4, 4)"});
    expect_invalid_argument([&] { ops::causal_softmax_backward(square, Tensor::zeros({2, 4, 4}, DType::Float64)); },
                            {op, "dtype mismatch", "float32(2, 4, 4)", "float64(2, 4, 4)"});
    expect_invalid_argument([&] { ops::causal_softmax_backward(square, Tensor::zeros({2, 5, 5})); },
                            {op, "shape mismatch", "(2, 4, 4)", "(2, 5, 5)"});
    expect_invalid_argument([&] { ops::causal_softmax_backward(vector, vector); },
                            {op, "y needs at least 2 dimension", "(5)"});
    expect_invalid_argument([&] { ops::causal_softmax_backward(oblong, oblong); }, {op, "square (T, T)", "(2, 3, 4)"});
    expect_invalid_argument([&] { ops::causal_softmax_backward(square, square, -inf); },
                            {op, "scale must be finite", "-inf"});
}

TEST(SoftmaxCuda, DeviceMismatchIsAnError) {
    MP_REQUIRE_GPU();
    Tensor y = Tensor::zeros({4, 4});
    Tensor dy_gpu = Tensor::zeros({4, 4}, DType::Float32, Device::cuda(0));
    expect_invalid_argument([&] { ops::softmax_backward(y, dy_gpu); },
                            {"softmax_backward", "different devices", "on cpu", "on cuda:0"});
    expect_invalid_argument([&] { ops::causal_softmax_backward(y, dy_gpu); },
                            {"causal_softmax_backward", "different devices", "on cpu", "on cuda:0"});
}

// ---------------------------------------------------------------- bfloat16 (CPU)

// bfloat16 softmax keeps its statistics (max, sum, the backward's dot) in float64 and rounds only
// the outputs, once: exactly the float64 path on the widened inputs, rounded to float32 and then
// to nearest even. Against float32 on the unrounded logits x: each logit moves by at most u|x|
// (u = 2^-8), so each log-probability by at most 2u max|x| and y by the factor exp(2u max|x|); the
// output rounding adds u. Hence |ỹ - y| <= y (exp(2u max|x|) - 1) + u ỹ (1% slack).
TEST(SoftmaxBf16, IsTheFloat64PathRoundedOnceAndWithinItsBound) {
    const Shape shape{6, 5, 5};  // causal blocks of 5
    Tensor x = mp::testing::random_tensor(shape, 9, 2.0);
    Tensor xb = x.to(DType::BFloat16), dy = mp::testing::random_tensor(shape, 10).to(DType::BFloat16);
    auto expect_rounded = [](const Tensor& got, const Tensor& wide, const std::string& what) {
        std::vector<bfloat16> g = got.to_vector<bfloat16>();
        std::vector<double> w = wide.to_vector<double>();
        for (size_t i = 0; i < g.size(); ++i)
            ASSERT_EQ(g[i].bits, element_from_double<bfloat16>(w[i]).bits) << what << " element " << i;
    };
    const Tensor xw = xb.to(DType::Float64), dyw = dy.to(DType::Float64);
    expect_rounded(ops::softmax(xb), ops::softmax(xw), "softmax");
    expect_rounded(ops::causal_softmax(xb, 0.7), ops::causal_softmax(xw, 0.7), "causal_softmax");
    const Tensor y = ops::softmax(xb), yc = ops::causal_softmax(xb, 0.7);
    expect_rounded(ops::softmax_backward(y, dy), ops::softmax_backward(y.to(DType::Float64), dyw), "softmax_backward");
    expect_rounded(ops::causal_softmax_backward(yc, dy, 0.7),
                   ops::causal_softmax_backward(yc.to(DType::Float64), dyw, 0.7), "causal_softmax_backward");

    const double u = std::ldexp(1.0, -8);
    std::vector<float> xs = x.to_vector<float>();
    double max_abs = 0;
    for (float v : xs) max_abs = std::max(max_abs, double(std::fabs(v)));
    std::vector<float> y32 = ops::softmax(x).to_vector<float>();
    std::vector<double> y16 = y.to(DType::Float64).to_vector<double>();
    for (size_t i = 0; i < y32.size(); ++i)
        EXPECT_LE(std::fabs(y16[i] - y32[i]), 1.01 * (y32[i] * std::expm1(2 * u * max_abs) + u * y16[i])) << i;
}

// On the GPU bfloat16 runs the float32 kernels on the widened input (until its own kernels exist):
// float32 statistics where the CPU keeps float64, so the two agree to one bfloat16 rounding (2^-8).
TEST(SoftmaxCudaBf16, MatchesCpu) {
    MP_REQUIRE_GPU();
    Tensor x = mp::testing::random_tensor({4, 9, 9}, 1, 2.0).to(DType::BFloat16);
    Tensor dy = mp::testing::random_tensor({4, 9, 9}, 2).to(DType::BFloat16);
    const Device gpu = Device::cuda(0);
    const double rtol = std::ldexp(1.0, -8), atol = 1e-6;
    mp::testing::expect_close(ops::softmax(x.to(gpu)), ops::softmax(x), rtol, atol, "softmax");
    mp::testing::expect_close(ops::causal_softmax(x.to(gpu), 0.5), ops::causal_softmax(x, 0.5), rtol, atol, "causal");
    const Tensor y = ops::softmax(x);
    mp::testing::expect_close(ops::softmax_backward(y.to(gpu), dy.to(gpu)), ops::softmax_backward(y, dy), rtol, 1e-5,
                              "softmax_backward");
}
