// Autograd: every differentiable function against float64 central finite differences on the
// CPU (threshold and its derivation in tests/support/gradcheck.h), and the tape's semantics —
// accumulation over two backward passes, freeing a tape releases its saved tensors, no_grad
// records nothing, a tape input's gradient is readable after backward.
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "tensor/allocator.h"
#include "tests/support/gradcheck.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::gradcheck;
using mp::testing::weighted_sum;

namespace {
Tensor rand64(const Shape& shape, uint64_t seed, double scale = 1.0) {
    return mp::testing::random_tensor(shape, seed, scale, DType::Float64);
}
Tensor param64(const Shape& shape, uint64_t seed, double scale = 1.0) {
    Tensor p = rand64(shape, seed, scale);
    autograd::make_parameter(p);
    return p;
}
using Inputs = std::vector<Tensor>;
}  // namespace

TEST(Gradcheck, AddMulScaleReshapeSum) {
    gradcheck([](const Inputs& in) { return weighted_sum(fn::add(in[0], in[1])); }, {rand64({3, 5}, 1), rand64({3, 5}, 2)}, "add");
    gradcheck([](const Inputs& in) { return weighted_sum(fn::mul(in[0], in[1])); }, {rand64({7}, 3), rand64({7}, 4)}, "mul");
    gradcheck([](const Inputs& in) { return weighted_sum(fn::scale(in[0], -2.5)); }, {rand64({4, 2}, 5)}, "scale");
    gradcheck([](const Inputs& in) { return weighted_sum(fn::reshape(in[0], {5, 3})); }, {rand64({3, 5}, 6)}, "reshape");
    gradcheck([](const Inputs& in) { return fn::sum(in[0]); }, {rand64({2, 3, 2}, 7)}, "sum");
}

TEST(Gradcheck, LinearWithAndWithoutBias) {
    gradcheck([](const Inputs& in) { return weighted_sum(fn::linear(in[0], in[1], in[2])); },
              {rand64({2, 3, 5}, 1), param64({4, 5}, 2), param64({4}, 3)}, "linear (B, T, in)");
    gradcheck([](const Inputs& in) { return weighted_sum(fn::linear(in[0], in[1], Tensor())); },
              {rand64({6, 5}, 4), param64({3, 5}, 5)}, "linear, no bias");
}

TEST(Gradcheck, BmmAllTransposes) {
    for (bool ta : {false, true})
        for (bool tb : {false, true}) {
            Shape a_shape = ta ? Shape{2, 3, 4, 5} : Shape{2, 3, 5, 4};  // op(a): (5, 4)
            Shape b_shape = tb ? Shape{2, 3, 6, 4} : Shape{2, 3, 4, 6};  // op(b): (4, 6)
            gradcheck([ta, tb](const Inputs& in) { return weighted_sum(fn::bmm(in[0], in[1], ta, tb, 0.7)); },
                      {rand64(a_shape, 10 + ta), rand64(b_shape, 20 + tb)},
                      "bmm trans_a=" + std::to_string(ta) + " trans_b=" + std::to_string(tb));
        }
}

TEST(Gradcheck, Activations) {
    // ReLU's kink at 0 is avoided: the inputs are shifted away from it (|x| >= 0.1).
    Tensor x = rand64({4, 9}, 1);
    std::vector<double> v = x.to_vector<double>();
    for (double& e : v) e = e >= 0 ? e + 0.1 : e - 0.1;
    gradcheck([](const Inputs& in) { return weighted_sum(fn::relu(in[0])); }, {Tensor::from_vector(v, {4, 9})}, "relu");
    gradcheck([](const Inputs& in) { return weighted_sum(fn::gelu(in[0])); }, {rand64({4, 9}, 2, 2.0)}, "gelu");
    gradcheck([](const Inputs& in) { return weighted_sum(fn::causal_softmax(in[0], 0.35)); }, {rand64({2, 2, 5, 5}, 3)},
              "causal_softmax");
    gradcheck([](const Inputs& in) { return weighted_sum(fn::dropout(in[0], 0.4, 5, 17)); }, {rand64({33}, 4)}, "dropout");
}

TEST(Gradcheck, LayerNormAndEmbedding) {
    gradcheck([](const Inputs& in) { return weighted_sum(fn::layernorm(in[0], in[1], in[2])); },
              {rand64({3, 4, 7}, 1), param64({7}, 2), param64({7}, 3)}, "layernorm");
    Tensor ids = Tensor::from_vector<int32_t>({0, 3, 3, 1, 4, 0}, {2, 3});
    gradcheck([](const Inputs& in) { return weighted_sum(fn::embedding(in[0], in[1])); }, {ids, param64({5, 4}, 4)},
              "embedding (repeated ids)");
}

TEST(Gradcheck, AttentionLayoutAndCausalAttention) {
    gradcheck([](const Inputs& in) {
        auto [q, k, v] = fn::split_qkv_heads(in[0], 2);
        return fn::add(fn::add(weighted_sum(q, 1), weighted_sum(k, 2)), weighted_sum(v, 3));
    }, {rand64({2, 3, 12}, 1)}, "split_qkv_heads");
    gradcheck([](const Inputs& in) { return weighted_sum(fn::merge_heads(in[0])); }, {rand64({2, 3, 4, 2}, 2)}, "merge_heads");
    gradcheck([](const Inputs& in) { return weighted_sum(fn::causal_attention(in[0], 2)); }, {rand64({2, 5, 12}, 3)},
              "causal_attention");
}

TEST(Gradcheck, Losses) {
    Tensor targets = Tensor::from_vector<int32_t>({2, -100, 0, 4, 1}, {5});
    gradcheck([targets](const Inputs& in) { return fn::cross_entropy(in[0], targets); }, {rand64({5, 6}, 1, 2.0)},
              "cross_entropy with an ignored row");
    gradcheck([](const Inputs& in) { return fn::mse(in[0], in[1]); }, {rand64({3, 4}, 2), rand64({3, 4}, 3)}, "mse");
}

TEST(CrossEntropy, MeanIsOverCountedRowsOnly) {
    // Uniform logits: every counted row has loss ln V, so the mean is ln V whatever is ignored.
    Tensor logits = Tensor::zeros({4, 10}, DType::Float64);
    Tensor targets = Tensor::from_vector<int32_t>({1, -100, -100, 9}, {4});
    EXPECT_NEAR(fn::cross_entropy(logits, targets).item(), std::log(10.0), 1e-12);
}

// ---- tape semantics

TEST(Tape, TwoBackwardPassesAccumulateIntoParameters) {
    Tensor w = param64({3, 2}, 1);
    Tensor x = rand64({4, 2}, 2);
    auto run = [&] {
        autograd::Tape tape;
        autograd::TapeScope scope(tape);
        tape.backward(fn::sum(fn::linear(x, w, Tensor())));
    };
    run();
    std::vector<double> once = autograd::grad_of(w).to_vector<double>();
    run();
    std::vector<double> twice = autograd::grad_of(w).to_vector<double>();
    for (size_t i = 0; i < once.size(); ++i) EXPECT_DOUBLE_EQ(twice[i], 2 * once[i]);
    autograd::zero_grad(w);
    EXPECT_FALSE(autograd::grad_of(w).defined());
}

TEST(Tape, InputGradientIsReadableAfterBackward) {
    Tensor x = rand64({3, 4}, 3);
    autograd::Tape tape;
    {
        autograd::TapeScope scope(tape);
        tape.backward(fn::sum(fn::scale(x, 3.0)));
    }
    Tensor dx = tape.grad(x);
    ASSERT_TRUE(dx.defined());
    for (double v : dx.to_vector<double>()) EXPECT_EQ(v, 3.0);
    // A pipeline stage receives the gradient of its output instead of starting from a loss.
    autograd::Tape stage;
    Tensor y;
    {
        autograd::TapeScope scope(stage);
        y = fn::scale(x, 2.0);
    }
    stage.backward({y}, {Tensor::full(y.shape(), 0.5, DType::Float64)});
    for (double v : stage.grad(x).to_vector<double>()) EXPECT_EQ(v, 1.0);
}

TEST(Tape, FreeingTheTapeReleasesSavedTensors) {
    Tensor w = param64({64, 64}, 1);
    Tensor x = rand64({128, 64}, 2);
    size_t before = cpu_allocator().stats().current_bytes;
    autograd::Tape tape;
    {
        autograd::TapeScope scope(tape);
        Tensor h = x;
        for (int layer = 0; layer < 4; ++layer) h = fn::gelu(fn::linear(h, w, Tensor()));
    }
    // Each layer's gelu saved its (128, 64) float64 input: 4 × 64 KiB at least are held by the tape.
    size_t held = cpu_allocator().stats().current_bytes - before;
    EXPECT_GE(held, 4u * 128 * 64 * 8);
    EXPECT_EQ(tape.size(), 8u);
    tape.clear();
    EXPECT_EQ(cpu_allocator().stats().current_bytes, before);
}

TEST(Tape, NoGradRecordsNothing) {
    autograd::Tape tape;
    autograd::TapeScope scope(tape);
    Tensor x = rand64({5}, 1);
    {
        autograd::NoGradScope no_grad;
        EXPECT_FALSE(autograd::is_recording());
        fn::gelu(fn::scale(x, 2.0));
    }
    EXPECT_EQ(tape.size(), 0u);
    EXPECT_TRUE(autograd::is_recording());
    fn::gelu(x);
    EXPECT_EQ(tape.entry_names(), std::vector<std::string>{"gelu"});
}

TEST(Tape, RematerializationGivesTheSameGradients) {
    // Forward once with no tape keeping only the input, then recompute under a fresh tape right
    // before backward: the gradients equal those of a normally taped forward.
    Tensor w = param64({6, 6}, 1);
    Tensor x = rand64({4, 6}, 2);
    auto stage = [&](const Tensor& input) { return fn::gelu(fn::linear(input, w, Tensor())); };
    Tensor dy = rand64({4, 6}, 3);
    autograd::Tape taped;
    Tensor y;
    {
        autograd::TapeScope scope(taped);
        y = stage(x);
    }
    taped.backward({y}, {dy});
    std::vector<double> dw_taped = autograd::grad_of(w).to_vector<double>();
    autograd::zero_grad(w);
    Tensor y_untaped;
    {
        autograd::NoGradScope no_grad;
        y_untaped = stage(x);
    }
    mp::testing::expect_equal(y_untaped, y, "forward without a tape");
    autograd::Tape recomputed;
    Tensor y_again;
    {
        autograd::TapeScope scope(recomputed);
        y_again = stage(x);
    }
    recomputed.backward({y_again}, {dy});
    EXPECT_EQ(autograd::grad_of(w).to_vector<double>(), dw_taped);
    mp::testing::expect_equal(recomputed.grad(x), taped.grad(x), "input gradient");
}

TEST(Tape, BackwardArgumentErrors) {
    autograd::Tape tape;
    Tensor x = rand64({3}, 1);
    mp::testing::expect_invalid_argument([&] { tape.backward(x); }, {"backward", "one-element", "(3)"});
    mp::testing::expect_invalid_argument([&] { tape.backward({x}, {}); }, {"backward", "1 outputs but 0 gradients"});
    mp::testing::expect_invalid_argument([&] { tape.backward({x}, {Tensor::zeros({4}, DType::Float64)}); },
                                         {"backward", "(4)", "(3)"});
}
