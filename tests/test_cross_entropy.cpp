// Cross-entropy: the CPU reference against closed forms (uniform logits, a 3-class hand example,
// huge logits, gradient rows summing to 0, ignored rows) and float64 finite differences; CUDA
// against the CPU on non-round shapes with NaN-poisoned outputs; every argument error.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cross_entropy.h"
#include "tensor/device_context.h"
#include "tensor/ops/cross_entropy.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_close;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::poisoned;
using mp::testing::random_ids;
using mp::testing::random_tensor;

namespace {

constexpr int kIgnore = -100;

// Random targets in [0, vocab) with every fourth row (rows 2, 6, 10, ...) set to ignore_index.
[[maybe_unused]] Tensor targets_with_ignored_rows(  // used by the CUDA tests only
    int64_t rows, int vocab, uint64_t seed, int ignore_index = kIgnore) {
    Tensor targets = random_ids({rows}, vocab, seed);
    int32_t* values = targets.data<int32_t>();
    for (int64_t r = 2; r < rows; r += 4) values[r] = ignore_index;
    return targets;
}

// Upstream loss gradients uniform in [-1, 1): bounded, so the dlogits tolerances below can be derived.
Tensor uniform_dlosses(const Shape& shape, uint64_t seed) {
    Generator gen(seed);
    return Tensor::uniform(shape, gen, -1.0, 1.0);
}

// sum_r dlosses[r] * losses[r] in double, for the finite-difference check.
double weighted_loss(const Tensor& logits, const Tensor& targets, const std::vector<double>& dlosses) {
    std::vector<double> losses = ops::cross_entropy_forward(logits, targets).losses.to_vector<double>();
    double total = 0.0;
    for (size_t r = 0; r < losses.size(); ++r) total += dlosses[r] * losses[r];
    return total;
}

}  // namespace

// ---------------------------------------------------------------- CPU reference vs closed forms

TEST(CrossEntropyCpu, UniformLogitsGiveLogVocab) {
    const int64_t vocab = 1000;
    Tensor targets = Tensor::from_vector<int32_t>({0, 999, 500}, {3});
    for (DType dtype : {DType::Float32, DType::Float64}) {
        Tensor logits = Tensor::full({3, vocab}, 0.25, dtype);
        ops::CrossEntropyResult result = ops::cross_entropy_forward(logits, targets);
        // The reference computes in double and rounds once: float32 is within half an ulp (6e-8 relative).
        double rtol = dtype == DType::Float32 ? 1e-7 : 1e-14;
        expect_close(result.losses, Tensor::full({3}, std::log(1000.0), DType::Float64), rtol, 0.0, "loss = ln V");
        expect_close(result.logsumexp, Tensor::full({3}, 0.25 + std::log(1000.0), DType::Float64), rtol, 0.0,
                     "logsumexp = x + ln V");
    }
}

TEST(CrossEntropyCpu, ThreeClassHandExample) {
    // logits (1, 2, 3): logsumexp = ln(e + e^2 + e^3) = 3.40760596444438,
    // softmax = (0.0900305731703805, 0.244728471054798, 0.665240955774822).
    Tensor logits = Tensor::from_vector<double>({1, 2, 3, 1, 2, 3}, {2, 3});
    Tensor targets = Tensor::from_vector<int32_t>({0, 2}, {2});
    ops::CrossEntropyResult result = ops::cross_entropy_forward(logits, targets);
    const double tol = 1e-13;  // the literals carry 15 significant digits
    expect_close(result.logsumexp, Tensor::from_vector<double>({3.40760596444438, 3.40760596444438}, {2}), 0.0, tol,
                 "hand logsumexp");
    expect_close(result.losses, Tensor::from_vector<double>({2.40760596444438, 0.40760596444438}, {2}), 0.0, tol,
                 "hand losses");

    Tensor dlosses = Tensor::from_vector<double>({1.0, 2.0}, {2});
    Tensor dlogits = ops::cross_entropy_backward(logits, targets, result.logsumexp, dlosses);
    // Row 0: softmax - onehot(0); row 1: 2 * (softmax - onehot(2)).
    Tensor expected = Tensor::from_vector<double>({0.0900305731703805 - 1, 0.244728471054798, 0.665240955774822,
                                                   2 * 0.0900305731703805, 2 * 0.244728471054798,
                                                   2 * (0.665240955774822 - 1)},
                                                  {2, 3});
    expect_close(dlogits, expected, 0.0, tol, "hand dlogits");
}

TEST(CrossEntropyCpu, HugeLogitsDoNotOverflow) {
    // exp(1e4) overflows even double; the max-subtracted form gives logsumexp = 1e4 (+ ln 2 in row 1).
    Tensor logits = Tensor::from_vector<float>({1e4f, 0.0f, -1e4f, 1e4f, 1e4f, -1e4f}, {2, 3});
    Tensor targets = Tensor::from_vector<int32_t>({0, 1}, {2});
    ops::CrossEntropyResult result = ops::cross_entropy_forward(logits, targets);
    // logsumexp rounded once to float32 (relative 6e-8); the loss is formed in double before rounding.
    expect_close(result.logsumexp, Tensor::from_vector<double>({1e4, 1e4 + std::log(2.0)}, {2}), 1e-7, 0.0,
                 "huge logsumexp");
    expect_close(result.losses, Tensor::from_vector<double>({0.0, std::log(2.0)}, {2}), 1e-7, 0.0, "huge losses");

    Tensor dlogits = ops::cross_entropy_backward(logits, targets, result.logsumexp, Tensor::full({2}, 1.0));
    // exp(x - lse) with lse rounded to float: off by up to ulp(1e4) / 2 = 4.9e-4 in the exponent,
    // so the probabilities 1 and 0.5 carry a relative error of up to 4.9e-4.
    expect_close(dlogits, Tensor::from_vector<double>({0.0, 0.0, 0.0, 0.5, -0.5, 0.0}, {2, 3}), 0.0, 5e-4,
                 "huge dlogits");
}

TEST(CrossEntropyCpu, GradientRowsSumToZero) {
    const int64_t rows = 6, vocab = 257;
    Tensor targets = random_ids({rows}, vocab, 11);
    for (DType dtype : {DType::Float32, DType::Float64}) {
        Tensor logits = random_tensor({rows, vocab}, 12, 3.0, dtype);
        Tensor dlosses = random_tensor({rows}, 13, 1.0, dtype);
        ops::CrossEntropyResult result = ops::cross_entropy_forward(logits, targets);
        std::vector<double> grad =
            mp::testing::to_doubles(ops::cross_entropy_backward(logits, targets, result.logsumexp, dlosses));
        // sum_j softmax_j = 1 cancels the one-hot. float32: each element is rounded once (relative
        // 6e-8) and the row's absolute values sum to 2 |dloss| <= ~8, so |sum| <= 5e-7.
        double tol = dtype == DType::Float32 ? 1e-6 : 1e-13;
        for (int64_t r = 0; r < rows; ++r) {
            double row_sum = 0.0;
            for (int64_t j = 0; j < vocab; ++j) row_sum += grad[r * vocab + j];
            EXPECT_NEAR(row_sum, 0.0, tol) << "row " << r << " of " << dtype_name(dtype);
        }
    }
}

TEST(CrossEntropyCpu, IgnoredRowsGiveZeroLossAndGradientButKeepLogsumexp) {
    Tensor logits = random_tensor({3, 5}, 21, 1.0, DType::Float64);
    std::vector<double> values = logits.to_vector<double>();
    std::vector<double> expected_lse(3);
    for (int r = 0; r < 3; ++r) {
        double sum = 0.0;
        for (int j = 0; j < 5; ++j) sum += std::exp(values[r * 5 + j]);
        expected_lse[r] = std::log(sum);  // no overflow risk for N(0, 1) values
    }
    Tensor dlosses = Tensor::full({3}, 1.5, DType::Float64);

    Tensor targets = Tensor::from_vector<int32_t>({kIgnore, 2, kIgnore}, {3});
    ops::CrossEntropyResult result = ops::cross_entropy_forward(logits, targets);
    expect_close(result.logsumexp, Tensor::from_vector(expected_lse, {3}), 1e-14, 0.0, "logsumexp of all rows");
    std::vector<double> losses = result.losses.to_vector<double>();
    EXPECT_EQ(losses[0], 0.0);
    EXPECT_NEAR(losses[1], expected_lse[1] - values[5 + 2], 1e-14);
    EXPECT_EQ(losses[2], 0.0);
    std::vector<double> grad = ops::cross_entropy_backward(logits, targets, result.logsumexp, dlosses).to_vector<double>();
    for (int j = 0; j < 5; ++j) {
        EXPECT_EQ(grad[0 * 5 + j], 0.0) << "ignored row 0, column " << j;
        EXPECT_NE(grad[1 * 5 + j], 0.0) << "kept row 1, column " << j;
        EXPECT_EQ(grad[2 * 5 + j], 0.0) << "ignored row 2, column " << j;
    }

    // A custom ignore_index that is also a valid class id: target 2 now means "ignore".
    ops::CrossEntropyResult custom = ops::cross_entropy_forward(logits, Tensor::from_vector<int32_t>({0, 2, 4}, {3}), 2);
    EXPECT_EQ(custom.losses.to_vector<double>()[1], 0.0);
    EXPECT_NE(custom.losses.to_vector<double>()[0], 0.0);
}

TEST(CrossEntropyCpu, MinusInfinityLogitsContributeNothing) {
    // A masked column: logits (0, -inf, 0) -> softmax (1/2, 0, 1/2), loss ln 2, gradient 0 there.
    Tensor logits = Tensor::from_vector<double>({0.0, -std::numeric_limits<double>::infinity(), 0.0}, {1, 3});
    Tensor targets = Tensor::from_vector<int32_t>({0}, {1});
    ops::CrossEntropyResult result = ops::cross_entropy_forward(logits, targets);
    EXPECT_NEAR(result.losses.item(), std::log(2.0), 1e-15);
    Tensor dlogits = ops::cross_entropy_backward(logits, targets, result.logsumexp, Tensor::full({1}, 1.0, DType::Float64));
    expect_close(dlogits, Tensor::from_vector<double>({-0.5, 0.0, 0.5}, {1, 3}), 0.0, 1e-15, "masked dlogits");
}

TEST(CrossEntropyCpu, LeadingDimensionsAreRows) {
    Tensor logits = random_tensor({2, 3, 11}, 31);
    Tensor targets = random_ids({2, 3}, 11, 32);
    ops::CrossEntropyResult result = ops::cross_entropy_forward(logits, targets);
    EXPECT_EQ(result.losses.shape(), (Shape{2, 3}));
    EXPECT_EQ(result.logsumexp.shape(), (Shape{2, 3}));
    ops::CrossEntropyResult flat = ops::cross_entropy_forward(logits.reshape({6, 11}), targets.reshape({6}));
    expect_equal(result.losses.reshape({6}), flat.losses, "(2, 3) rows vs (6) rows");
    Tensor dlogits = ops::cross_entropy_backward(logits, targets, result.logsumexp, Tensor::full({2, 3}, 1.0));
    EXPECT_EQ(dlogits.shape(), (Shape{2, 3, 11}));
}

TEST(CrossEntropyCpu, BackwardMatchesFloat64FiniteDifferences) {
    const int64_t rows = 4, vocab = 9;
    Tensor logits = random_tensor({rows, vocab}, 41, 2.0, DType::Float64);
    Tensor targets = Tensor::from_vector<int32_t>({3, kIgnore, 0, 8}, {rows});
    std::vector<double> dlosses = random_tensor({rows}, 42, 1.0, DType::Float64).to_vector<double>();
    ops::CrossEntropyResult result = ops::cross_entropy_forward(logits, targets);
    std::vector<double> grad =
        ops::cross_entropy_backward(logits, targets, result.logsumexp, Tensor::from_vector(dlosses, {rows}))
            .to_vector<double>();

    // Central differences of f = sum_r dlosses[r] * loss[r]: truncation ~h^2 |f'''| / 6 ~ 1e-11,
    // rounding ~eps |f| / h ~ 1e-10 for |f| ~ 10; 1e-8 is well above both, far below the gradients.
    const double h = 1e-5;
    for (int64_t i = 0; i < rows * vocab; ++i) {
        Tensor plus = logits.clone(), minus = logits.clone();
        plus.data<double>()[i] += h;
        minus.data<double>()[i] -= h;
        double numeric = (weighted_loss(plus, targets, dlosses) - weighted_loss(minus, targets, dlosses)) / (2 * h);
        EXPECT_NEAR(grad[i], numeric, 1e-8) << "element " << i << " (row " << i / vocab << ")";
    }
}

// ---------------------------------------------------------------- CUDA vs CPU

#if MP_CUDA  // calls raw kernels::cuda:: functions, which a CPU-only build does not have
namespace {

// Reference results on the CPU, then the raw CUDA kernels on NaN-poisoned outputs. The backward gets
// the CPU's logsumexp so that it is compared alone.
void expect_cuda_matches_cpu(const Tensor& logits, const Tensor& targets, int ignore_index, double loss_atol,
                             const std::string& what) {
    const int64_t vocab = logits.shape().back();
    const int64_t rows = targets.numel();
    ops::CrossEntropyResult expected = ops::cross_entropy_forward(logits, targets, ignore_index);
    Tensor dlosses = uniform_dlosses({rows}, 7);
    Tensor expected_grad = ops::cross_entropy_backward(logits, targets, expected.logsumexp, dlosses, ignore_index);

    const Device gpu = Device::cuda(0);
    Tensor logits_gpu = logits.to(gpu), targets_gpu = targets.to(gpu);
    Tensor losses = poisoned({rows}, DType::Float32, gpu), lse = poisoned({rows}, DType::Float32, gpu);
    kernels::cuda::cross_entropy_forward(logits_gpu.data<float>(), targets_gpu.data<int32_t>(), losses.data<float>(),
                                         lse.data<float>(), rows, vocab, ignore_index, compute_stream(0));
    // Sums of up to 50257 terms in a different order: each thread's running sum has ~110 rounding
    // steps (relative 6.6e-6 worst case) -> logsumexp within ~1e-5 absolute; the loss inherits it.
    expect_close(lse, expected.logsumexp, 1e-6, 1e-5, what + ": logsumexp");
    expect_close(losses, expected.losses, 1e-5, loss_atol, what + ": losses");

    Tensor dlogits = poisoned({rows, vocab}, DType::Float32, gpu);
    kernels::cuda::cross_entropy_backward(logits_gpu.data<float>(), targets_gpu.data<int32_t>(),
                                          expected.logsumexp.to(gpu).data<float>(), dlosses.to(gpu).data<float>(),
                                          dlogits.data<float>(), rows, vocab, ignore_index, compute_stream(0));
    // Same logsumexp on both sides. Per element, with p = exp(x - lse) <= 1 and |dloss| <= 1: expf is
    // within 2 ulp of p (2.4e-7); rounding x - lse = ln p moves p by <= 2^-24 p |ln p| <= 2.2e-8; the
    // subtraction of the one-hot and the product round by <= 6e-8 each: under 4e-7 in all.
    expect_close(dlogits, expected_grad.reshape({rows, vocab}), 0.0, 1e-6, what + ": dlogits");
}

}  // namespace

TEST(CrossEntropyCuda, MatchesCpuOnNonRoundShapes) {
    MP_REQUIRE_GPU();
    uint64_t seed = 100;
    for (int64_t vocab : {1, 7, 33, 1000, 50257}) {
        for (int64_t rows : {1, 5, 64}) {
            Tensor logits = random_tensor({rows, vocab}, seed++, 2.0);
            Tensor targets = targets_with_ignored_rows(rows, static_cast<int>(vocab), seed++);
            if (vocab > 1) {  // a masked (-inf) column in row 0, away from its target
                int32_t target = targets.data<int32_t>()[0];
                logits.data<float>()[(target + 1) % vocab] = -std::numeric_limits<float>::infinity();
            }
            expect_cuda_matches_cpu(logits, targets, kIgnore, 1e-5,
                                    "rows " + std::to_string(rows) + " vocab " + std::to_string(vocab));
        }
    }
}

TEST(CrossEntropyCuda, MoreRowsThanBlocksUseTheRowLoop) {
    MP_REQUIRE_GPU();
    const int64_t rows = 65535LL * 16 + 3;  // the kernels launch at most 65535 * 16 blocks
    Tensor logits = random_tensor({rows, 2}, 51);
    expect_cuda_matches_cpu(logits, targets_with_ignored_rows(rows, 2, 52), kIgnore, 1e-5, "1M rows");
}

TEST(CrossEntropyCuda, HugeLogitsAndCustomIgnoreIndex) {
    MP_REQUIRE_GPU();
    Tensor logits = Tensor::from_vector<float>({1e4f, 0.0f, -1e4f, 1e4f, 1e4f, -1e4f, 3.0f, 1.0f, 2.0f}, {3, 3});
    // The float loss lse - x loses the bits below ulp(1e4) = 9.8e-4 that the CPU (double) keeps.
    expect_cuda_matches_cpu(logits, Tensor::from_vector<int32_t>({0, 1, 2}, {3}), kIgnore, 1e-3, "huge logits");
    expect_cuda_matches_cpu(logits, Tensor::from_vector<int32_t>({0, 1, 2}, {3}), 1, 1e-3, "ignore_index 1");
}

TEST(CrossEntropyCuda, UnalignedLogitsRowsAndDifferentlyAlignedGradients) {
    MP_REQUIRE_GPU();
    // Rows 1.. of a (rows + 1, 1001) tensor start 4004 bytes in: 4 bytes off the 16-byte grid, while a
    // fresh dlogits is on it, so the backward takes its all-scalar path; the forward a 3-element head.
    const int64_t rows = 9, vocab = 1001;
    Tensor logits = random_tensor({rows + 1, vocab}, 61, 2.0).to(Device::cuda(0)).slice(1, rows + 1);
    Tensor targets = targets_with_ignored_rows(rows, vocab, 62);
    Tensor logits_cpu = logits.to(Device::cpu());
    ops::CrossEntropyResult expected = ops::cross_entropy_forward(logits_cpu, targets);
    Tensor dlosses = uniform_dlosses({rows}, 63);
    Tensor expected_grad = ops::cross_entropy_backward(logits_cpu, targets, expected.logsumexp, dlosses);

    ops::CrossEntropyResult result = ops::cross_entropy_forward(logits, targets.to(Device::cuda(0)));
    expect_close(result.logsumexp, expected.logsumexp, 1e-6, 1e-5, "unaligned logsumexp (sum order)");
    expect_close(result.losses, expected.losses, 1e-5, 1e-5, "unaligned losses (sum order)");
    Tensor dlogits = ops::cross_entropy_backward(logits, targets.to(Device::cuda(0)), expected.logsumexp.to(Device::cuda(0)),
                                                 dlosses.to(Device::cuda(0)));
    expect_close(dlogits, expected_grad, 0.0, 1e-6, "unaligned dlogits (expf vs exp, as above)");
}
#endif  // MP_CUDA

TEST(CrossEntropyCuda, OpsOnLeadingShape) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    Tensor logits = random_tensor({2, 3, 257}, 71, 2.0);
    Tensor targets = Tensor::from_vector<int32_t>({5, kIgnore, 0, 256, 17, kIgnore}, {2, 3});
    ops::CrossEntropyResult expected = ops::cross_entropy_forward(logits, targets);
    ops::CrossEntropyResult result = ops::cross_entropy_forward(logits.to(gpu), targets.to(gpu));
    EXPECT_EQ(result.losses.shape(), (Shape{2, 3}));
    expect_close(result.losses, expected.losses, 1e-5, 1e-5, "op losses (sum order)");
    Tensor dlosses = uniform_dlosses({2, 3}, 72);
    Tensor expected_grad = ops::cross_entropy_backward(logits, targets, expected.logsumexp, dlosses);
    Tensor grad = ops::cross_entropy_backward(logits.to(gpu), targets.to(gpu), result.logsumexp, dlosses.to(gpu));
    // The GPU backward uses the GPU logsumexp (within 1e-5 of the CPU's): p * 1e-5 * |dloss| <= 1e-5,
    // plus the 4e-7 of the kernel itself.
    expect_close(grad, expected_grad, 0.0, 1.1e-5, "op dlogits");
}

// ---------------------------------------------------------------- bad input

TEST(CrossEntropyErrors, TargetOutOfRangeNamesValueRowAndVocab) {
    Tensor logits = random_tensor({3, 7}, 81);
    Tensor lse = ops::cross_entropy_forward(logits, Tensor::zeros({3}, DType::Int32)).logsumexp;
    Tensor dlosses = Tensor::full({3}, 1.0);
    Tensor too_big = Tensor::from_vector<int32_t>({0, 7, 2}, {3});
    Tensor negative = Tensor::from_vector<int32_t>({0, 1, -3}, {3});
    expect_invalid_argument([&] { ops::cross_entropy_forward(logits, too_big); },
                            {"cross_entropy_forward", "target 7", "row 1", "[0, 7)"});
    expect_invalid_argument([&] { ops::cross_entropy_forward(logits, negative); },
                            {"cross_entropy_forward", "target -3", "row 2", "[0, 7)"});
    expect_invalid_argument([&] { ops::cross_entropy_forward(logits, Tensor::from_vector<int32_t>({0, -100, 1}, {3}), -1); },
                            {"target -100", "row 1", "ignore_index -1"});
    expect_invalid_argument([&] { ops::cross_entropy_backward(logits, too_big, lse, dlosses); },
                            {"cross_entropy_backward", "target 7", "row 1", "[0, 7)"});
    expect_invalid_argument([&] { ops::cross_entropy_backward(logits, negative, lse, dlosses); },
                            {"cross_entropy_backward", "target -3", "row 2", "[0, 7)"});
}

TEST(CrossEntropyErrors, TargetOutOfRangeOnCuda) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    synchronize(gpu);
    Tensor logits = random_tensor({3, 7}, 82).to(gpu);
    Tensor too_big = Tensor::from_vector<int32_t>({0, 2, 9}, {3}, gpu);
    Tensor ok = Tensor::from_vector<int32_t>({0, 2, 6}, {3}, gpu);
    Tensor lse = ops::cross_entropy_forward(logits, ok).logsumexp;
    // Queued on the GPU, reported at the next synchronisation, with the CPU reference's message.
    expect_invalid_argument([&] { ops::cross_entropy_forward(logits, too_big); synchronize(gpu); },
                            {"cross_entropy_forward", "target 9", "row 2", "[0, 7)", "ignore_index -100"});
    expect_invalid_argument([&] { ops::cross_entropy_backward(logits, too_big, lse, Tensor::full({3}, 1.0, DType::Float32, gpu)); synchronize(gpu); },
                            {"cross_entropy_backward", "target 9", "row 2", "[0, 7)"});
    // Reading the result reports it as well: a NaN loss is never seen without the error.
    expect_invalid_argument([&] { ops::cross_entropy_forward(logits, too_big).losses.to_vector<float>(); },
                            {"cross_entropy_forward", "target 9", "row 2"});
}

// ---------------------------------------------------------------- the mean's weight

TEST(CrossEntropyMeanWeight, OneOverTheCountedRows) {
    Tensor targets = Tensor::from_vector<int32_t>({3, -100, 0, 5, -100, 2, 7}, {7});
    EXPECT_EQ(ops::cross_entropy_mean_weight(targets, -100, DType::Float32).item(), static_cast<double>(1.0f / 5.0f));
    EXPECT_EQ(ops::cross_entropy_mean_weight(targets, -100, DType::Float64).item(), 1.0 / 5.0);
    EXPECT_EQ(ops::cross_entropy_mean_weight(targets, 5, DType::Float64).item(), 1.0 / 6.0);
    // Every row ignored (or none at all): weight 0, never a division by zero.
    EXPECT_EQ(ops::cross_entropy_mean_weight(Tensor::full({4}, -100.0, DType::Int32), -100, DType::Float32).item(), 0.0);
    EXPECT_EQ(ops::cross_entropy_mean_weight(Tensor::zeros({0}, DType::Int32), -100, DType::Float32).item(), 0.0);
    EXPECT_EQ(ops::cross_entropy_mean_weight(targets, -100, DType::Float32).shape(), Shape{});
    expect_invalid_argument([&] { ops::cross_entropy_mean_weight(Tensor::zeros({2}), -100, DType::Float32); },
                            {"cross_entropy_mean_weight", "int32"});
    expect_invalid_argument([&] { ops::cross_entropy_mean_weight(targets, -100, DType::Int32); },
                            {"cross_entropy_mean_weight", "float32"});
}

TEST(CrossEntropyMeanWeightCuda, BitwiseEqualToCpuOnNonRoundCounts) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    for (int64_t rows : {1, 3, 1023, 1025, 16383, 70001}) {
        // About a third of the rows ignored, so the count is not a round number either.
        std::vector<int32_t> values = random_ids({rows}, 30, static_cast<uint64_t>(rows)).to_vector<int32_t>();
        for (int32_t& v : values) if (v < 10) v = -100;
        Tensor targets = Tensor::from_vector(values, {rows});
        Tensor cpu = ops::cross_entropy_mean_weight(targets, -100, DType::Float32);
        Tensor cuda = ops::cross_entropy_mean_weight(targets.to(gpu), -100, DType::Float32);
        expect_equal(cuda, cpu, str("mean weight over ", rows, " rows"));
    }
}

TEST(CrossEntropyErrors, ForwardArgumentChecks) {
    Tensor logits = random_tensor({2, 7}, 91);
    Tensor targets = Tensor::zeros({2}, DType::Int32);
    expect_invalid_argument([&] { ops::cross_entropy_forward(Tensor(), targets); },
                            {"cross_entropy_forward", "logits is an undefined tensor"});
    expect_invalid_argument([&] { ops::cross_entropy_forward(logits, Tensor()); },
                            {"cross_entropy_forward", "targets is an undefined tensor"});
    expect_invalid_argument([&] { ops::cross_entropy_forward(Tensor::zeros({2, 7}, DType::Int32), targets); },
                            {"cross_entropy_forward", "expects float32", "int32(2, 7)"});
    expect_invalid_argument([&] { ops::cross_entropy_forward(logits, Tensor::zeros({2})); },
                            {"cross_entropy_forward", "targets must be int32", "float32(2)"});
    expect_invalid_argument([&] { ops::cross_entropy_forward(Tensor::full({}, 1.0), Tensor::zeros({}, DType::Int32)); },
                            {"cross_entropy_forward", "logits needs at least 1 dimension", "()"});
    expect_invalid_argument([&] { ops::cross_entropy_forward(Tensor::zeros({2, 0}), targets); },
                            {"cross_entropy_forward", "(2, 0)", "empty last dimension"});
    expect_invalid_argument([&] { ops::cross_entropy_forward(logits, Tensor::zeros({3}, DType::Int32)); },
                            {"cross_entropy_forward", "targets has shape (3)", "expected (2)", "logits (2, 7)"});
}

TEST(CrossEntropyErrors, BackwardArgumentChecks) {
    Tensor logits = random_tensor({2, 7}, 92);
    Tensor targets = Tensor::zeros({2}, DType::Int32);
    Tensor lse = Tensor::zeros({2});
    Tensor dlosses = Tensor::zeros({2});
    expect_invalid_argument([&] { ops::cross_entropy_backward(logits, Tensor::zeros({2, 1}, DType::Int32), lse, dlosses); },
                            {"cross_entropy_backward", "targets has shape (2, 1)", "expected (2)"});
    expect_invalid_argument([&] { ops::cross_entropy_backward(logits, targets, Tensor(), dlosses); },
                            {"cross_entropy_backward", "logsumexp is an undefined tensor"});
    expect_invalid_argument([&] { ops::cross_entropy_backward(logits, targets, lse, Tensor()); },
                            {"cross_entropy_backward", "dlosses is an undefined tensor"});
    expect_invalid_argument([&] { ops::cross_entropy_backward(logits, targets, Tensor::zeros({2}, DType::Float64), dlosses); },
                            {"cross_entropy_backward", "logsumexp is float64(2)", "expected float32 for logits float32(2, 7)"});
    expect_invalid_argument([&] { ops::cross_entropy_backward(logits, targets, lse, Tensor::zeros({2}, DType::Int32)); },
                            {"cross_entropy_backward", "dlosses is int32(2)", "expected float32 for logits"});
    expect_invalid_argument([&] { ops::cross_entropy_backward(logits, targets, Tensor::zeros({3}), dlosses); },
                            {"cross_entropy_backward", "logsumexp has shape (3)", "expected (2)"});
    expect_invalid_argument([&] { ops::cross_entropy_backward(logits, targets, lse, Tensor::zeros({2, 7})); },
                            {"cross_entropy_backward", "dlosses has shape (2, 7)", "expected (2)"});
}

TEST(CrossEntropyErrors, TensorsOnDifferentDevices) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    Tensor logits = random_tensor({2, 7}, 93).to(gpu);
    Tensor targets = Tensor::zeros({2}, DType::Int32, gpu);
    expect_invalid_argument([&] { ops::cross_entropy_forward(logits, Tensor::zeros({2}, DType::Int32)); },
                            {"cross_entropy_forward", "different devices", "cuda:0", "cpu"});
    expect_invalid_argument(
        [&] { ops::cross_entropy_backward(logits, targets, Tensor::zeros({2}), Tensor::zeros({2}, DType::Float32, gpu)); },
        {"cross_entropy_backward", "different devices", "cuda:0", "cpu"});
}

// ---------------------------------------------------------------- bfloat16 (CPU)

// bfloat16 logits: the losses and logsumexp stay float32 (the float64 path on the widened logits,
// rounded once to float32), dlogits is rounded once to bfloat16; the mean loss is float32.
TEST(CrossEntropyBf16, LossStaysFloat32AndGradientsAreRoundedOnce) {
    Tensor logits = mp::testing::random_tensor({6, 19}, 3, 2.0).to(DType::BFloat16);
    Tensor targets = Tensor::from_vector<int32_t>({0, 18, -100, 7, 7, 3}, {6});
    ops::CrossEntropyResult got = ops::cross_entropy_forward(logits, targets, -100);
    ASSERT_EQ(got.losses.dtype(), DType::Float32);
    ASSERT_EQ(got.logsumexp.dtype(), DType::Float32);
    ops::CrossEntropyResult wide = ops::cross_entropy_forward(logits.to(DType::Float64), targets, -100);
    std::vector<float> losses = got.losses.to_vector<float>();
    std::vector<double> losses_wide = wide.losses.to_vector<double>();
    for (size_t r = 0; r < losses.size(); ++r) EXPECT_EQ(losses[r], static_cast<float>(losses_wide[r])) << r;

    Tensor dlosses = mp::testing::random_tensor({6}, 4);
    std::vector<bfloat16> dlogits = ops::cross_entropy_backward(logits, targets, got.logsumexp, dlosses, -100)
                                        .to_vector<bfloat16>();
    std::vector<double> dlogits_wide =
        ops::cross_entropy_backward(logits.to(DType::Float64), targets, got.logsumexp.to(DType::Float64),
                                    dlosses.to(DType::Float64), -100)
            .to_vector<double>();
    for (size_t i = 0; i < dlogits.size(); ++i)
        EXPECT_EQ(dlogits[i].bits, element_from_double<bfloat16>(dlogits_wide[i]).bits) << i;
    mp::testing::expect_invalid_argument(
        [&] { ops::cross_entropy_backward(logits, targets, got.logsumexp.to(DType::BFloat16), dlosses, -100); },
        {"logsumexp is bfloat16(6) on cpu, expected float32 for logits bfloat16(6, 19) on cpu"});
}

// On the GPU: the bfloat16 kernels (each logit widened to float32 as read); float32 losses agree
// with the CPU's to float32 accuracy, dlogits to one bfloat16 rounding.
TEST(CrossEntropyCudaBf16, MatchesCpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    for (int64_t vocab : {37, 50257}) {  // a non-round row, and GPT-2's odd vocabulary
        SCOPED_TRACE(::testing::Message() << "vocab " << vocab);
        Tensor logits = mp::testing::random_tensor({5, vocab}, 7, 2.0).to(DType::BFloat16);
        Tensor targets = Tensor::from_vector<int32_t>({1, 36, -100, 0, 12}, {5});
        ops::CrossEntropyResult cpu = ops::cross_entropy_forward(logits, targets, -100);
        ops::CrossEntropyResult dev = ops::cross_entropy_forward(logits.to(gpu), targets.to(gpu), -100);
        mp::testing::expect_close(dev.losses, cpu.losses, 1e-5, 1e-6, "losses");
        Tensor dlosses = mp::testing::random_tensor({5}, 8);
        mp::testing::expect_close(ops::cross_entropy_backward(logits.to(gpu), targets.to(gpu), dev.logsumexp,
                                                              dlosses.to(gpu), -100),
                                  ops::cross_entropy_backward(logits, targets, cpu.logsumexp, dlosses, -100),
                                  std::ldexp(1.0, -8), 1e-6, "dlogits");
    }
}
