// The one-pass cross-entropy (forward and backward together, the gradient written over the logits,
// padded rows): bit for bit the forward + backward pair on the CPU for float32, float64 and
// bfloat16, padding never reaching the loss, the autograd function's seed contract, and on CUDA
// against the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "tensor/ops/cross_entropy.h"
#include "tensor/ops/elementwise.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_close;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::random_tensor;

namespace {

// Rows of `stride` columns, the first `vocab` of them the vocabulary; targets with an ignored row.
struct Problem {
    Tensor logits, targets;
    int64_t vocab;
};

Problem problem(int64_t rows, int64_t vocab, int64_t stride, DType dtype) {
    std::vector<int32_t> targets;
    for (int64_t r = 0; r < rows; ++r) targets.push_back(r == 2 ? -100 : static_cast<int32_t>((r * 7 + 3) % vocab));
    return {random_tensor({rows, stride}, 11, 2.0).to(dtype),
            Tensor::from_vector(targets, {rows}), vocab};
}

// The unfused pair on the vocabulary columns, the padding's gradient 0: what the fused op must give.
std::pair<Tensor, Tensor> unfused(const Problem& p, double seed) {
    const DType stats = ops::cross_entropy_statistics_dtype(p.logits.dtype());
    const int64_t rows = p.logits.size(0), stride = p.logits.size(1);
    std::vector<double> all = mp::testing::to_doubles(p.logits), kept;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < p.vocab; ++j) kept.push_back(all[static_cast<size_t>(r * stride + j)]);
    const Tensor logits = Tensor::from_vector(kept, {rows, p.vocab}).to(p.logits.dtype());
    ops::CrossEntropyResult forward = ops::cross_entropy_forward(logits, p.targets);
    const Tensor weight = ops::cross_entropy_mean_weight(p.targets, -100, stats);
    const Tensor dloss = ops::mul(Tensor::full({}, seed, stats), weight);
    const Tensor dlogits = ops::cross_entropy_backward(logits, p.targets, forward.logsumexp,
                                                       ops::broadcast_scalar(dloss, p.targets.shape()));
    std::vector<double> grads = mp::testing::to_doubles(dlogits), padded;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < stride; ++j)
            padded.push_back(j < p.vocab ? grads[static_cast<size_t>(r * p.vocab + j)] : 0);
    return {forward.losses, Tensor::from_vector(padded, {rows, stride}).to(p.logits.dtype())};
}

}  // namespace

TEST(CrossEntropyFusedCpu, BitForBitTheForwardAndBackwardPair) {
    for (DType dtype : {DType::Float32, DType::Float64, DType::BFloat16})
        for (int64_t stride : {37, 40}) {  // unpadded, and 37 padded to 40
            SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " stride " << stride);
            Problem p = problem(5, 37, stride, dtype);
            auto [losses, grads] = unfused(p, 0.375);
            const DType stats = ops::cross_entropy_statistics_dtype(dtype);
            Tensor buffer = p.logits.clone();
            const Tensor weight = ops::cross_entropy_mean_weight(p.targets, -100, stats);
            const Tensor dloss = ops::mul(Tensor::full({}, 0.375, stats), weight);
            expect_equal(ops::cross_entropy_fused_(buffer, p.targets, -100, 37, dloss), losses, "losses");
            expect_equal(buffer, grads, "gradient over the logits");
            // Without the gradient: the same losses, the logits untouched.
            Tensor kept = p.logits.clone();
            expect_equal(ops::cross_entropy_fused_(kept, p.targets, -100, 37, Tensor()), losses, "alone");
            expect_equal(kept, p.logits, "logits untouched");
        }
}

// Padding never reaches the loss: huge logits in the padded columns change nothing.
TEST(CrossEntropyFusedCpu, PaddingNeverReachesTheLoss) {
    Problem p = problem(4, 10, 16, DType::Float32);
    const Tensor weight = ops::cross_entropy_mean_weight(p.targets, -100, DType::Float32);
    Tensor plain = p.logits.clone();
    const Tensor losses = ops::cross_entropy_fused_(plain, p.targets, -100, 10, Tensor());
    std::vector<float> values = p.logits.to_vector<float>();
    for (int64_t r = 0; r < 4; ++r)
        for (int64_t j = 10; j < 16; ++j) values[static_cast<size_t>(r * 16 + j)] = 1e30f;
    Tensor spiked = Tensor::from_vector(values, {4, 16});
    expect_equal(ops::cross_entropy_fused_(spiked, p.targets, -100, 10, weight), losses, "losses");
    for (int64_t r = 0; r < 4; ++r)
        for (int64_t j = 10; j < 16; ++j) EXPECT_EQ(spiked.to_vector<float>()[static_cast<size_t>(r * 16 + j)], 0.0f);
}

// The autograd function: the same loss and gradient as fn::cross_entropy for the seed it was
// given; another seed is refused naming both; outside a tape the logits are left alone.
TEST(CrossEntropyFusedCpu, SeededFunctionEqualsCrossEntropyAndRefusesAnotherSeed) {
    Problem p = problem(6, 23, 23, DType::Float32);
    Tensor reference_logits = p.logits.clone(), logits = p.logits.clone();
    autograd::make_parameter(reference_logits);
    autograd::make_parameter(logits);
    autograd::Tape reference_tape, tape;
    {
        autograd::TapeScope scope(reference_tape);
        Tensor loss = fn::cross_entropy(reference_logits, p.targets);
        reference_tape.backward({loss}, {Tensor::full({}, 0.25)});
    }
    Tensor loss;
    {
        autograd::TapeScope scope(tape);
        loss = fn::cross_entropy_seeded(logits, p.targets, -100, 0.25);
        tape.backward({loss}, {Tensor::full({}, 0.25)});
    }
    expect_equal(autograd::grad_of(logits), autograd::grad_of(reference_logits), "gradient");
    {
        autograd::Tape other;
        autograd::TapeScope scope(other);
        Tensor x = p.logits.clone();
        Tensor l = fn::cross_entropy_seeded(x, p.targets, -100, 0.25);
        expect_invalid_argument([&] { other.backward({l}, {Tensor::full({}, 0.5)}); },
                                {"cross_entropy_seeded: the backward seed is 0.5", "for seed 0.25"});
    }
    Tensor untouched = p.logits.clone();
    fn::cross_entropy_seeded(untouched, p.targets, -100, 0.25);
    expect_equal(untouched, p.logits, "no tape: logits untouched");
    expect_invalid_argument(
        [&] {
            Tensor x = p.logits.clone();
            ops::cross_entropy_fused_(x, p.targets, -100, 24, Tensor());
        },
        {"cross_entropy_fused_: vocab 24 must be in [1, 23]"});
}

// fn::cross_entropy on padded rows: the loss and, on the vocabulary's columns, the gradient of the
// unpadded logits, bit for bit; the padding's gradient is 0.
TEST(CrossEntropyFusedCpu, PaddedCrossEntropyEqualsTheUnpaddedOne) {
    Problem p = problem(5, 29, 32, DType::Float32);
    auto [losses, grads] = unfused(p, 0.75);
    Tensor padded = p.logits.clone();
    autograd::make_parameter(padded);
    autograd::Tape tape;
    Tensor loss;
    {
        autograd::TapeScope scope(tape);
        loss = fn::cross_entropy(padded, p.targets, -100, 29);
        tape.backward({loss}, {Tensor::full({}, 0.75)});
    }
    const Tensor weight = ops::cross_entropy_mean_weight(p.targets, -100, DType::Float32);
    expect_equal(loss, ops::mul(ops::sum(losses), weight), "loss");
    expect_equal(autograd::grad_of(padded), grads, "gradient");
    expect_equal(padded, p.logits, "the forward leaves the logits alone");
}

// CUDA against the CPU: float32 within float32 rounding of exp and the row sums; bfloat16 within
// one bfloat16 rounding of the gradient (2^-8); losses in float32 either way. GPT-2's padded row.
TEST(CrossEntropyFusedCuda, MatchesCpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    for (DType dtype : {DType::Float32, DType::BFloat16})
        for (auto [vocab, stride] : std::vector<std::pair<int64_t, int64_t>>{{37, 40}, {50257, 50304}}) {
            SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " vocab " << vocab << " stride " << stride);
            Problem p = problem(5, vocab, stride, dtype);
            const DType stats = ops::cross_entropy_statistics_dtype(dtype);
            Tensor cpu = p.logits.clone(), dev = p.logits.to(gpu);
            const Tensor dloss =
                ops::mul(Tensor::full({}, 0.5, stats), ops::cross_entropy_mean_weight(p.targets, -100, stats));
            const Tensor cpu_losses = ops::cross_entropy_fused_(cpu, p.targets, -100, vocab, dloss);
            const Tensor targets = p.targets.to(gpu);
            const Tensor dev_losses = ops::cross_entropy_fused_(dev, targets, -100, vocab, dloss.to(gpu));
            expect_close(dev_losses, cpu_losses, 1e-5, 1e-6, "losses");
            expect_close(dev, cpu, dtype == DType::BFloat16 ? std::ldexp(1.0, -8) : 1e-5, 1e-7, "gradient");
        }
}
