// Autograd: every differentiable function against float64 central finite differences on the
// CPU (threshold and its derivation in tests/support/gradcheck.h), and the tape's semantics —
// accumulation over two backward passes, freeing a tape releases its saved tensors, no_grad
// records nothing, a tape input's gradient is readable after backward, the split backward (I then
// W) equals the one-piece one bitwise, and gradients nobody wants are not computed.
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "nn/models.h"
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

// ---- split backward: I (input gradients) then W (weight gradients)

namespace {
// A GPT cut after its embedding: stage 1's layers (blocks, final layer norm, head) take a float
// (B, T, C) activation, so the tape has a real input gradient to send back.
struct SplitProblem {
    std::shared_ptr<nn::Sequential> stage;
    Tensor input;
};
SplitProblem split_problem() {
    nn::GPTConfig config;
    config.vocab = 29;
    config.context = 48;
    config.layers = 2;
    config.heads = 2;
    config.channels = 16;
    std::shared_ptr<nn::Sequential> model = nn::gpt(config);
    return {model->slice(1, model->size()), mp::testing::random_tensor({3, 48, 16}, 21)};
}
std::vector<Tensor> parameter_grads(nn::Module& module) {
    std::vector<Tensor> grads;
    for (const Tensor& p : module.parameters()) grads.push_back(autograd::grad_of(p).clone());
    return grads;
}
void zero_grads(nn::Module& module) {
    for (const Tensor& p : module.parameters()) autograd::zero_grad(p);
}
}  // namespace

TEST(Tape, SplitBackwardEqualsOnePieceBitwise) {
    SplitProblem problem = split_problem();
    const Tensor output_grad = mp::testing::random_tensor({3, 48, 29}, 22);
    // Two micro-batches each, accumulating into the parameters, as a pipeline stage does.
    std::vector<Tensor> one_piece_input_grads, split_input_grads;
    for (int micro_batch = 0; micro_batch < 2; ++micro_batch) {
        autograd::Tape tape;
        Tensor y;
        {
            autograd::TapeScope scope(tape);
            y = problem.stage->forward(problem.input);
        }
        tape.backward({y}, {output_grad});
        one_piece_input_grads.push_back(tape.grad(problem.input));
    }
    std::vector<Tensor> one_piece = parameter_grads(*problem.stage);
    zero_grads(*problem.stage);
    for (int micro_batch = 0; micro_batch < 2; ++micro_batch) {
        autograd::Tape tape;
        Tensor y;
        {
            autograd::TapeScope scope(tape);
            y = problem.stage->forward(problem.input);
        }
        tape.backward_input_from_refs({y}, {output_grad});
        split_input_grads.push_back(tape.grad(problem.input));  // ready before W
        tape.backward_weight();
    }
    std::vector<Tensor> split = parameter_grads(*problem.stage);
    for (size_t i = 0; i < one_piece.size(); ++i) mp::testing::expect_equal(split[i], one_piece[i], str("parameter ", i));
    for (int m = 0; m < 2; ++m) mp::testing::expect_equal(split_input_grads[m], one_piece_input_grads[m], "input gradient");
}

TEST(Tape, InputHalfLeavesParametersAndFreesWhatOnlyItNeeded) {
    SplitProblem problem = split_problem();
    zero_grads(*problem.stage);
    const size_t baseline = cpu_allocator().stats().current_bytes;
    autograd::Tape tape;
    Tensor y;
    {
        autograd::TapeScope scope(tape);
        y = problem.stage->forward(problem.input);
    }
    const autograd::TensorRef output(y);
    const Tensor output_grad = mp::testing::random_tensor(y.shape(), 23);
    y = Tensor();
    const size_t after_forward = cpu_allocator().stats().current_bytes - baseline;
    tape.backward_input_from_refs({output}, {output_grad});
    const size_t after_input = cpu_allocator().stats().current_bytes - baseline;
    EXPECT_TRUE(tape.grad(problem.input).defined());
    for (const Tensor& p : problem.stage->parameters()) EXPECT_FALSE(autograd::grad_of(p).defined());
    EXPECT_GT(tape.pending_weight_closures(), 0u);
    // The attention probabilities (3 × 2 × 48 × 48 per block) and GELU inputs went with I; the
    // linear layers' inputs and output gradients stay for W.
    EXPECT_LT(after_input, after_forward) << "I freed nothing";
    tape.backward_weight();
    EXPECT_EQ(tape.pending_weight_closures(), 0u);
    for (const Tensor& p : problem.stage->parameters()) EXPECT_TRUE(autograd::grad_of(p).defined());
}

TEST(Tape, SplitBackwardOrderIsEnforced) {
    Tensor w = param64({3, 2}, 1);
    Tensor x = rand64({4, 2}, 2);
    autograd::Tape tape;
    Tensor y;
    {
        autograd::TapeScope scope(tape);
        y = fn::linear(x, w, Tensor());
    }
    const Tensor dy = Tensor::full(y.shape(), 1.0, DType::Float64);
    mp::testing::expect_invalid_argument([&] { tape.backward_weight(); }, {"backward_weight", "has not run"});
    tape.backward_input_from_refs({autograd::TensorRef(y)}, {dy});
    mp::testing::expect_invalid_argument([&] { tape.backward_input_from_refs({autograd::TensorRef(y)}, {dy}); },
                                         {"backward_input", "already ran"});
    mp::testing::expect_invalid_argument([&] { tape.backward({y}, {dy}); }, {"backward", "already ran"});
    tape.backward_weight();
    mp::testing::expect_invalid_argument([&] { tape.backward_weight(); }, {"backward_weight", "already ran"});
}

// A raw batch marked not differentiable gets no gradient (the first linear skips dx = dy · W),
// and the parameters' gradients are the same as without the mark.
TEST(Tape, GradientsNobodyWantsAreNotComputed) {
    Tensor w1 = param64({5, 4}, 1), w2 = param64({3, 5}, 2);
    Tensor x = rand64({6, 4}, 3);
    auto run = [&](bool mark) {
        autograd::zero_grad(w1);
        autograd::zero_grad(w2);
        autograd::Tape tape;
        if (mark) tape.mark_not_differentiable(x);
        {
            autograd::TapeScope scope(tape);
            tape.backward(fn::sum(fn::linear(fn::relu(fn::linear(x, w1, Tensor())), w2, Tensor())));
        }
        return std::make_pair(tape.grad(x), std::vector<Tensor>{autograd::grad_of(w1).clone(), autograd::grad_of(w2).clone()});
    };
    auto [unmarked_dx, unmarked] = run(false);
    auto [marked_dx, marked] = run(true);
    EXPECT_TRUE(unmarked_dx.defined());
    EXPECT_FALSE(marked_dx.defined());
    for (size_t i = 0; i < marked.size(); ++i) mp::testing::expect_equal(marked[i], unmarked[i], "parameter gradient");
    autograd::Tape tape;
    mp::testing::expect_invalid_argument([&] { tape.mark_not_differentiable(w1); }, {"mark_not_differentiable", "parameter"});
}

// The output observer sees every entry once, last recorded first, with its inputs, its outputs and
// their final gradients: for loss = sum(relu(x) * 3), relu's output gradient is 3 everywhere.
TEST(Tape, OutputObserverSeesEntriesWithTheirOutputGradients) {
    Tensor x = Tensor::from_vector(std::vector<float>{-1, 2, 0.5f}, {3});
    autograd::make_parameter(x);
    std::vector<std::string> seen;
    autograd::Tape tape;
    tape.set_output_observer([&](const std::string& name, const std::vector<Tensor>& inputs,
                                 const std::vector<Tensor>& outputs, const std::vector<Tensor>& grads) {
        seen.push_back(name);
        ASSERT_EQ(outputs.size(), grads.size());
        if (name == "relu") {
            ASSERT_EQ(inputs.size(), 1u);
            EXPECT_EQ(inputs[0].id(), x.id());
            EXPECT_EQ(outputs[0].to_vector<float>(), (std::vector<float>{0, 2, 0.5f}));
            EXPECT_EQ(grads[0].to_vector<float>(), (std::vector<float>{3, 3, 3}));
        }
    });
    {
        autograd::TapeScope scope(tape);
        tape.backward(fn::sum(fn::scale(fn::relu(x), 3.0)));
    }
    EXPECT_EQ(seen, (std::vector<std::string>{"sum", "scale", "relu"}));
}
