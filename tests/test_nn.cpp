// nn: every layer's gradients against float64 finite differences (the layer converted to
// float64 on the CPU), stable dotted parameter names, Sequential slicing, the model builders,
// optimizers against hand-computed steps, the cosine schedule and gradient clipping.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "nn/layers.h"
#include "nn/models.h"
#include "nn/optim.h"
#include "tensor/device_context.h"
#include "tests/support/gradcheck.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::gradcheck;
using mp::testing::weighted_sum;

namespace {
using Inputs = std::vector<Tensor>;

// Checks the gradients of every parameter of `layer` and of its floating input.
void check_layer(nn::Module& layer, const Tensor& input, const std::string& what) {
    layer.to(DType::Float64);
    Inputs inputs = {input.dtype() == DType::Int32 ? input : input.to(DType::Float64)};
    for (const Tensor& p : layer.parameters()) inputs.push_back(p);
    gradcheck([&layer](const Inputs& in) { return weighted_sum(layer.forward(in[0])); }, inputs, what);
}
}  // namespace

TEST(Layers, GradientsMatchFiniteDifferences) {
    Generator gen(1);
    nn::Linear linear(5, 3, gen);
    check_layer(linear, mp::testing::random_tensor({2, 4, 5}, 1), "Linear");
    nn::LayerNorm norm(6);
    check_layer(norm, mp::testing::random_tensor({3, 6}, 2), "LayerNorm");
    nn::GELU gelu;
    check_layer(gelu, mp::testing::random_tensor({3, 6}, 3), "GELU");
    nn::Embedding embedding(7, 4, gen);
    check_layer(embedding, Tensor::from_vector<int32_t>({6, 0, 6, 2}, {2, 2}), "Embedding");
    nn::TokenPositionEmbedding token_position(7, 5, 4, gen);
    check_layer(token_position, Tensor::from_vector<int32_t>({6, 0, 6, 2, 1, 1}, {2, 3}), "TokenPositionEmbedding");
    nn::CausalSelfAttention attention(8, 2, gen, 0.3, 0.3);
    check_layer(attention, mp::testing::random_tensor({2, 5, 8}, 4), "CausalSelfAttention");
    nn::MLP mlp(4, gen, 0.3, 0.3);
    check_layer(mlp, mp::testing::random_tensor({2, 3, 4}, 5), "MLP");
    nn::TransformerBlock block(8, 2, 2, gen);
    check_layer(block, mp::testing::random_tensor({2, 4, 8}, 6), "TransformerBlock");
}

TEST(Layers, DropoutDrawsAFreshMaskPerCallAndIsIdentityInEval) {
    // (Its gradient with a fixed mask is checked in test_autograd: fn::dropout.)
    nn::Dropout dropout(0.5, 3);
    Tensor x = Tensor::full({1000}, 1.0);
    autograd::NoGradScope no_grad;
    std::vector<float> first = dropout.forward(x).to_vector<float>();
    std::vector<float> second = dropout.forward(x).to_vector<float>();
    EXPECT_NE(first, second);
    dropout.eval();
    mp::testing::expect_equal(dropout.forward(x), x, "dropout in eval mode");
    nn::Dropout replay(0.5, 3);  // the same seed replays the same masks
    EXPECT_EQ(replay.forward(x).to_vector<float>(), first);
}

TEST(Layers, WholeGptGradients) {
    nn::GPTConfig config;
    config.vocab = 11;
    config.context = 6;
    config.layers = 2;
    config.heads = 2;
    config.channels = 8;
    auto model = nn::gpt(config);
    model->to(DType::Float64);
    Tensor ids = Tensor::from_vector<int32_t>({1, 5, 10, 0, 3, 3, 7, 2}, {2, 4});
    Tensor targets = Tensor::from_vector<int32_t>({5, 10, 0, 3, 3, 7, 2, -100}, {2, 4});
    Inputs inputs = {ids};
    for (const Tensor& p : model->parameters()) inputs.push_back(p);
    gradcheck([&](const Inputs& in) { return fn::cross_entropy(model->forward(in[0]), targets); }, inputs, "gpt");
}

TEST(Modules, StableDottedNames) {
    nn::GPTConfig config;
    config.layers = 2;
    auto model = nn::gpt(config);
    std::vector<std::string> names;
    for (auto& [name, p] : model->named_parameters()) names.push_back(name);
    std::vector<std::string> expected_prefix = {"embed.wte", "embed.wpe", "blocks.0.ln_1.weight", "blocks.0.ln_1.bias",
                                                "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
                                                "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias",
                                                "blocks.0.ln_2.weight", "blocks.0.ln_2.bias",
                                                "blocks.0.mlp.fc.weight", "blocks.0.mlp.fc.bias",
                                                "blocks.0.mlp.proj.weight", "blocks.0.mlp.proj.bias"};
    ASSERT_GE(names.size(), expected_prefix.size());
    for (size_t i = 0; i < expected_prefix.size(); ++i) EXPECT_EQ(names[i], expected_prefix[i]);
    EXPECT_EQ(names.back(), "head.weight");
    // 2 layers, C = 64, vocab 256, context 64: embeddings + 2 × 12C²+13C + 2C + C·V.
    int64_t C = 64, V = 256, T = 64;
    EXPECT_EQ(model->num_parameters(), V * C + T * C + 2 * (12 * C * C + 13 * C) + 2 * C + C * V);
}

TEST(Modules, SequentialSliceKeepsNamesAndSharesLayers) {
    auto model = nn::mlp({4, 8, 8, 2}, 3);
    ASSERT_EQ(model->size(), 5u);  // Linear ReLU Linear ReLU Linear
    auto stage = model->slice(2, 5);
    EXPECT_EQ(stage->layer_name(0), "2");
    EXPECT_EQ(stage->named_parameters().front().first, "2.weight");
    EXPECT_TRUE(stage->parameters().front().shares_storage_with(model->named_parameters()[2].second));
    Tensor x = mp::testing::random_tensor({3, 4}, 1);
    autograd::NoGradScope no_grad;
    Tensor whole = model->forward(x);
    Tensor split = stage->forward(model->slice(0, 2)->forward(x));
    mp::testing::expect_equal(split, whole, "stages chained = whole model");
    mp::testing::expect_invalid_argument([&] { model->slice(3, 6); }, {"slice", "[3, 6)", "5 layers"});
}

TEST(Modules, BuilderErrorsNameTheValues) {
    nn::GPTConfig config;
    config.channels = 30;
    config.heads = 4;
    mp::testing::expect_invalid_argument([&] { nn::gpt(config); }, {"channels 30", "heads 4"});
    mp::testing::expect_invalid_argument([] { nn::mlp({5}, 0); }, {"mlp", "1 widths"});
    Generator gen(0);
    nn::Linear linear(5, 3, gen);
    mp::testing::expect_invalid_argument([&] { linear.forward(Tensor::zeros({2, 4})); }, {"Linear", "4 features", "expects 5"});
}

TEST(Modules, RealisticModelShape) {
    auto model = nn::realistic_model(50, 16, 3, 0);
    EXPECT_EQ(model->size(), 5u);  // embed, 3 blocks, head
    int64_t H = 16, V = 50;
    EXPECT_EQ(model->num_parameters(), V * H + 3 * 2 * (H * H + H) + H * V + V);
    autograd::NoGradScope no_grad;
    Tensor logits = model->forward(Tensor::from_vector<int32_t>({1, 2, 3, 49}, {2, 2}));
    EXPECT_EQ(logits.shape(), (Shape{2, 2, 50}));
}

TEST(Optimizers, SgdMomentumMatchesHandComputation) {
    Tensor p = Tensor::from_vector<double>({1.0}, {1});
    autograd::make_parameter(p);
    nn::SGD sgd({p}, {0.1, 0.9, 0.0});
    // Gradient 2p each step (loss p²): by hand, buf1 = g1, buf_t = 0.9 buf + g_t, p -= 0.1 buf.
    double expected_p = 1.0, buf = 0.0;
    for (int step = 0; step < 3; ++step) {
        sgd.zero_grad();
        autograd::Tape tape;
        {
            autograd::TapeScope scope(tape);
            tape.backward(fn::sum(fn::mul(p, p)));
        }
        double g = 2 * expected_p;
        buf = step == 0 ? g : 0.9 * buf + g;
        expected_p -= 0.1 * buf;
        sgd.step();
        EXPECT_NEAR(p.item(), expected_p, 1e-15) << "step " << step;
    }
}

TEST(Optimizers, AdamWFirstStepMovesByLrTimesSign) {
    Tensor p = Tensor::from_vector<double>({0.5, -0.5}, {2});
    autograd::make_parameter(p);
    nn::AdamW adamw({p}, {0.01, 0.9, 0.999, 1e-8, 0.0});
    autograd::Tape tape;
    {
        autograd::TapeScope scope(tape);
        tape.backward(fn::sum(fn::mul(p, p)));  // gradient (1, -1)
    }
    adamw.step();
    std::vector<double> v = p.to_vector<double>();
    // Bias-corrected m̂ = g and v̂ = g², so the step is lr·g/(|g| + eps).
    EXPECT_NEAR(v[0], 0.5 - 0.01 / (1 + 1e-8), 1e-15);
    EXPECT_NEAR(v[1], -0.5 + 0.01 / (1 + 1e-8), 1e-15);
}

TEST(Schedule, CosineWithWarmup) {
    EXPECT_DOUBLE_EQ(nn::cosine_lr(0, 10, 100, 1.0, 0.1), 0.1);
    EXPECT_DOUBLE_EQ(nn::cosine_lr(9, 10, 100, 1.0, 0.1), 1.0);
    EXPECT_DOUBLE_EQ(nn::cosine_lr(10, 10, 100, 1.0, 0.1), 1.0);
    EXPECT_NEAR(nn::cosine_lr(55, 10, 100, 1.0, 0.1), 0.55, 1e-12);  // halfway: (max+min)/2
    EXPECT_DOUBLE_EQ(nn::cosine_lr(100, 10, 100, 1.0, 0.1), 0.1);
    EXPECT_DOUBLE_EQ(nn::cosine_lr(500, 10, 100, 1.0, 0.1), 0.1);
}

TEST(Schedule, ConstantAfterTheSameWarmup) {
    EXPECT_DOUBLE_EQ(nn::constant_lr(0, 10, 1.0), 0.1);
    EXPECT_DOUBLE_EQ(nn::constant_lr(4, 10, 1.0), 0.5);
    EXPECT_DOUBLE_EQ(nn::constant_lr(9, 10, 1.0), 1.0);
    EXPECT_DOUBLE_EQ(nn::constant_lr(500, 10, 1.0), 1.0);
    EXPECT_DOUBLE_EQ(nn::constant_lr(0, 0, 1.0), 1.0);  // no warm-up
    for (int64_t step = 0; step < 10; ++step)
        EXPECT_DOUBLE_EQ(nn::constant_lr(step, 10, 1.0), nn::cosine_lr(step, 10, 100, 1.0, 0.1)) << step;
}

TEST(Clipping, ScalesToMaxNormAndReportsTheNorm) {
    Tensor a = Tensor::from_vector<double>({3.0}, {1});
    Tensor b = Tensor::from_vector<double>({4.0}, {1});
    autograd::make_parameter(a);
    autograd::make_parameter(b);
    autograd::Tape tape;
    {
        autograd::TapeScope scope(tape);
        tape.backward(fn::add(fn::scale(fn::mul(a, a), 0.5), fn::scale(fn::mul(b, b), 0.5)));  // grads (3, 4)
    }
    double norm = nn::clip_grad_norm({a, b}, 1.0);
    EXPECT_NEAR(norm, 5.0, 1e-12);
    EXPECT_NEAR(autograd::grad_of(a).item(), 3.0 / (5.0 + 1e-6), 1e-12);
    EXPECT_NEAR(autograd::grad_of(b).item(), 4.0 / (5.0 + 1e-6), 1e-12);
    EXPECT_NEAR(nn::clip_grad_norm({a, b}, 10.0), 1.0, 1e-6);  // below max_norm: unchanged
}

TEST(ModelSpec, AStageBuiltAloneEqualsTheSameLayersOfTheWholeModel) {
    nn::GPTConfig config;
    config.layers = 3;
    nn::ModelSpec spec = nn::gpt_spec(config);
    EXPECT_EQ(spec.size(), 5);  // embed, 3 blocks, head (final layer norm + projection)
    EXPECT_EQ(spec.size(), nn::gpt_layer_count(3));
    auto whole = spec.build_all();
    EXPECT_EQ(spec.total_parameters(), whole->num_parameters());
    auto stage = spec.build(2, 4);  // blocks.1, blocks.2
    auto whole_params = whole->named_parameters();
    for (auto& [name, p] : stage->named_parameters()) {
        auto it = std::find_if(whole_params.begin(), whole_params.end(), [&](auto& e) { return e.first == name; });
        ASSERT_NE(it, whole_params.end()) << name;
        mp::testing::expect_equal(p, it->second, name);
    }
    mp::testing::expect_invalid_argument([&] { spec.build(4, 7); }, {"ModelSpec::build", "[4, 7)", "5 layers"});
    EXPECT_EQ(nn::realistic_spec(50, 16, 3, 0).total_parameters(), nn::realistic_model(50, 16, 3, 0)->num_parameters());
    EXPECT_EQ(nn::mlp_spec({4, 8, 2}, 0).total_parameters(), nn::mlp({4, 8, 2}, 0)->num_parameters());
    // The layer counts the trainer's checks use are the specs' sizes.
    EXPECT_EQ(nn::realistic_spec(50, 16, 3, 0).size(), nn::realistic_layer_count(3));
    EXPECT_EQ(nn::mlp_spec({4, 8, 8, 2}, 0).size(), nn::mlp_layer_count(4));
}

// The training hot path on a GPU: after a first step (which builds the position ids), a GPT's
// forward, loss, backward and AdamW step queue their work and never make the host wait for the
// device (host_wait_count counts every synchronisation and copy in tensor/). Bad ids would still
// be reported: at the next synchronisation (tests/test_index_check.cpp).
TEST(NnCuda, GptTrainingStepNeverWaitsForTheDevice) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    nn::GPTConfig config;
    config.vocab = 97;
    config.context = 24;
    config.layers = 2;
    config.heads = 2;
    config.channels = 32;
    std::shared_ptr<nn::Sequential> model = nn::gpt(config);
    model->to(gpu);
    nn::AdamWOptions options;
    nn::AdamW optimizer(model->parameters(), options);
    Tensor ids = mp::testing::random_ids({3, 24}, 97, 1).to(gpu);
    Tensor targets = mp::testing::random_ids({3, 24}, 97, 2).to(gpu);
    auto step = [&] {
        optimizer.zero_grad();
        autograd::Tape tape;
        autograd::TapeScope scope(tape);
        Tensor loss = fn::cross_entropy(model->forward(ids), targets);
        tape.backward(loss);
        optimizer.step();
        return loss;
    };
    step();
    synchronize(gpu);
    const uint64_t waits = host_wait_count();
    Tensor loss = step();
    EXPECT_EQ(host_wait_count(), waits) << "a training step waited for the GPU";
    EXPECT_TRUE(std::isfinite(loss.item()));
}

namespace {

// A GPT small enough for whole-model bfloat16 checks.
nn::GPTConfig small_bf16_check_gpt(int64_t vocab, int64_t context, int64_t channels, uint64_t seed) {
    nn::GPTConfig config;
    config.vocab = vocab;
    config.context = context;
    config.layers = 2;
    config.heads = 2;
    config.channels = channels;
    config.seed = seed;
    return config;
}

}  // namespace

// The whole GPT runs forward and backward with every parameter and activation in bfloat16 on the
// CPU (each op computing wide and rounding its outputs once; the loss in float32). A sanity check
// on the way to the mixed-precision policy, not its derived-bound test: the loss agrees with
// float32's to 1% and every parameter's gradient points the same way (cosine > 0.99).
TEST(Bf16, WholeGptForwardAndBackwardTrackFloat32) {
    const nn::GPTConfig config = small_bf16_check_gpt(23, 8, 32, 3);
    Tensor ids = mp::testing::random_ids({4, 8}, 23, 1), targets = mp::testing::random_ids({4, 8}, 23, 2);
    auto run = [&](DType dtype, std::vector<std::vector<double>>& grads) {
        auto model = nn::gpt(config);
        model->to(dtype);
        autograd::Tape tape;
        autograd::TapeScope scope(tape);
        Tensor loss = fn::cross_entropy(model->forward(ids), targets);
        EXPECT_EQ(loss.dtype(), DType::Float32) << dtype_name(dtype);
        tape.backward(loss);
        for (const Tensor& p : model->parameters()) grads.push_back(mp::testing::to_doubles(autograd::grad_of(p)));
        return loss.item();
    };
    std::vector<std::vector<double>> g32, g16;
    const double loss32 = run(DType::Float32, g32), loss16 = run(DType::BFloat16, g16);
    EXPECT_NEAR(loss16, loss32, 0.01 * loss32);
    ASSERT_EQ(g16.size(), g32.size());
    for (size_t i = 0; i < g32.size(); ++i) {
        double dot = 0, n32 = 0, n16 = 0;
        for (size_t j = 0; j < g32[i].size(); ++j) {
            dot += g32[i][j] * g16[i][j];
            n32 += g32[i][j] * g32[i][j];
            n16 += g16[i][j] * g16[i][j];
        }
        if (n32 == 0) continue;
        EXPECT_GT(dot / std::sqrt(n32 * n16), 0.99) << "parameter " << i;
    }
}

// Mixed precision: under a ComputeDTypeScope(bfloat16) the float32 model computes with bfloat16
// compute copies of its parameters, and each copy's gradient lands in its float32 master. The
// copies hold exactly the values an all-bfloat16 model would, so every activation and gradient
// flowing between layers is that model's, bit for bit. The masters' gradients are that model's
// widened, bit for bit — except the linear and embedding layers': their gradients go straight
// from the float32 accumulator into the float32 master (a GEMM with beta = 1, a scatter-add in
// place), never rounded to bfloat16, so the all-bfloat16 model's are those rounded once (to within
// one bfloat16 ulp: the bias sum is rounded from double directly in one case and via float32 in
// the other). The split backward (I, then W) gives the same.
TEST(MixedPrecision, CopiesGradientsLandInFloat32Masters) {
    const nn::GPTConfig config = small_bf16_check_gpt(19, 6, 16, 4);
    Tensor ids = mp::testing::random_ids({3, 6}, 19, 1), targets = mp::testing::random_ids({3, 6}, 19, 2);

    auto reference = nn::gpt(config);
    reference->to(DType::BFloat16);
    {
        autograd::Tape tape;
        autograd::TapeScope scope(tape);
        tape.backward(fn::cross_entropy(reference->forward(ids), targets));
    }
    for (bool split : {false, true}) {
        auto model = nn::gpt(config);
        autograd::Tape tape;
        {
            autograd::TapeScope scope(tape);
            nn::ComputeDTypeScope bf16(DType::BFloat16);
            Tensor loss = fn::cross_entropy(model->forward(ids), targets);
            EXPECT_EQ(loss.dtype(), DType::Float32);
            if (split) {
                tape.backward_input_from_refs({autograd::TensorRef(loss)}, {Tensor::full({}, 1.0)});
                tape.backward_weight();
            } else {
                tape.backward(loss);
            }
        }
        const auto masters = model->named_parameters(), copies = reference->named_parameters();
        ASSERT_EQ(masters.size(), copies.size());
        for (size_t i = 0; i < masters.size(); ++i) {
            const auto& [name, master] = masters[i];
            EXPECT_EQ(master.dtype(), DType::Float32);
            Tensor g = autograd::grad_of(master);
            ASSERT_TRUE(g.defined()) << name;
            ASSERT_EQ(g.dtype(), DType::Float32) << name;
            const Tensor expected = autograd::grad_of(copies[i].second).to(DType::Float32);
            const bool in_a_linear = name.find(".mlp.") != std::string::npos ||
                                     name.find(".attn.") != std::string::npos || name == "head.weight" ||
                                     name.rfind("embed.", 0) == 0;  // linear and embedding: in place
            const std::string what = str(split ? "split " : "", name);
            if (in_a_linear) mp::testing::expect_close(g, expected, 1.0 / 256, 0.0, what);  // one bf16 rounding
            else mp::testing::expect_equal(g, expected, what);
        }
    }
    EXPECT_FALSE(nn::compute_dtype().has_value());  // the scope ended
}

// A ComputeCopyCache makes each parameter's compute copy once: a second use gets the same tensor
// (same identity, so no second conversion), gradients still land in the masters, bit for bit as
// without the cache; the cache nests and, cleared, converts afresh.
TEST(MixedPrecision, CopyCacheConvertsEachParameterOncePerScope) {
    const nn::GPTConfig config = small_bf16_check_gpt(19, 6, 16, 5);
    Tensor ids = mp::testing::random_ids({2, 6}, 19, 3), targets = mp::testing::random_ids({2, 6}, 19, 4);
    auto gradients = [&](bool cached) {
        auto model = nn::gpt(config);
        nn::ComputeDTypeScope bf16(DType::BFloat16);
        std::optional<nn::ComputeCopyCache> cache;
        if (cached) cache.emplace();
        for (int micro_batch = 0; micro_batch < 2; ++micro_batch) {  // two uses of every weight
            autograd::Tape tape;
            autograd::TapeScope scope(tape);
            tape.backward(fn::cross_entropy(model->forward(ids), targets));
        }
        if (cached) {
            EXPECT_EQ(cache->size(), model->parameters().size());
        }
        std::vector<Tensor> grads;
        for (const Tensor& p : model->parameters()) grads.push_back(autograd::grad_of(p));
        return grads;
    };
    std::vector<Tensor> with = gradients(true), without = gradients(false);
    ASSERT_EQ(with.size(), without.size());
    for (size_t i = 0; i < with.size(); ++i) mp::testing::expect_equal(with[i], without[i], str("parameter ", i));

    auto model = nn::gpt(config);
    const Tensor master = model->parameters().front();
    nn::ComputeDTypeScope bf16(DType::BFloat16);
    nn::ComputeCopyCache cache;
    const Tensor first = nn::for_compute(master);
    EXPECT_EQ(first.dtype(), DType::BFloat16);
    EXPECT_EQ(nn::for_compute(master).id(), first.id());
    {
        nn::ComputeCopyCache inner;
        EXPECT_NE(nn::for_compute(master).id(), first.id());
    }
    EXPECT_EQ(nn::for_compute(master).id(), first.id());
    cache.clear();
    EXPECT_NE(nn::for_compute(master).id(), first.id());
}

// A padded vocabulary trains as the unpadded model: the padded rows start at zero, get zero
// gradients (no id looks them up; the loss never sees their logits) and stay zero under AdamW with
// weight decay; the losses agree to float32 rounding of the wider products (1e-5 relative over 5
// steps).
TEST(PaddedVocabulary, TrainsAsTheUnpaddedModelAndThePaddingStaysZero) {
    nn::GPTConfig config = small_bf16_check_gpt(19, 6, 16, 7);
    config.tie_embeddings = true;
    Tensor ids = mp::testing::random_ids({3, 6}, 19, 5), targets = mp::testing::random_ids({3, 6}, 19, 6);
    auto train = [&](int64_t padded_vocab) {
        nn::GPTConfig c = config;
        c.padded_vocab = padded_vocab;
        auto model = nn::gpt(c);
        nn::AdamW adamw(model->parameters(), {1e-2, 0.9, 0.95, 1e-8, 0.1});
        std::vector<double> losses;
        for (int step = 0; step < 5; ++step) {
            adamw.zero_grad();
            autograd::Tape tape;
            autograd::TapeScope scope(tape);
            Tensor loss = fn::cross_entropy(model->forward(ids), targets, -100, 19);
            tape.backward(loss);
            losses.push_back(loss.item());
            adamw.step();
        }
        return std::make_pair(losses, model);
    };
    auto [plain_losses, plain] = train(0);
    auto [padded_losses, padded] = train(32);
    for (size_t i = 0; i < plain_losses.size(); ++i)
        EXPECT_NEAR(padded_losses[i], plain_losses[i], 1e-5 * plain_losses[i]) << "step " << i;
    const Tensor wte = padded->named_parameters().front().second;
    ASSERT_EQ(wte.shape(), (Shape{32, 16}));
    const std::vector<float> rows = wte.to_vector<float>();
    for (size_t i = 19 * 16; i < rows.size(); ++i) ASSERT_EQ(rows[i], 0.0f) << "padding element " << i;
    EXPECT_EQ(padded->parameters().size(), plain->parameters().size());  // tied: one table either way
}
