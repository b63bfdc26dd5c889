// Model builders: MLP, GPT and the seed notebook's RealisticModel, as layer-by-layer specs
// (so a pipeline stage builds only its own layers) and as whole Sequentials.
#include "nn/models.h"

#include "autograd/functions.h"

namespace mp::nn {

namespace {
int64_t linear_parameters(int64_t in, int64_t out, bool bias) { return in * out + (bias ? out : 0); }
int64_t block_parameters(int64_t C) { return 12 * C * C + 13 * C; }  // 2 LayerNorms, qkv, proj, fc, proj
}  // namespace

ModelSpec mlp_spec(const std::vector<int64_t>& widths, uint64_t seed) {
    MP_REQUIRE(widths.size() >= 2, "mlp: needs at least an input and an output width, got ", widths.size(), " widths");
    ModelSpec spec;
    spec.description = "mlp";
    int64_t index = 0;
    for (size_t i = 0; i + 1 < widths.size(); ++i) {
        int64_t in = widths[i], out = widths[i + 1], layer = index;
        spec.layers.push_back({std::to_string(index++), linear_parameters(in, out, true), [=] {
                                   Generator gen(layer_seed(seed, layer));
                                   return std::make_shared<Linear>(in, out, gen);
                               }});
        if (i + 2 < widths.size())
            spec.layers.push_back({std::to_string(index++), 0, [] { return std::make_shared<ReLU>(); }});
    }
    return spec;
}

std::shared_ptr<Sequential> mlp(const std::vector<int64_t>& widths, uint64_t seed) { return mlp_spec(widths, seed).build_all(); }

ModelSpec gpt_spec(const GPTConfig& config) {
    MP_REQUIRE(config.vocab > 0 && config.context > 0 && config.layers > 0 && config.heads > 0 && config.channels > 0,
               "gpt: every size must be positive (vocab ", config.vocab, ", context ", config.context, ", layers ",
               config.layers, ", heads ", config.heads, ", channels ", config.channels, ")");
    MP_REQUIRE(config.channels % config.heads == 0, "gpt: channels ", config.channels, " must be divisible by heads ",
               config.heads);
    const GPTConfig c = config;
    ModelSpec spec;
    MP_REQUIRE(config.layer_norm_eps > 0, "gpt: layer_norm_eps must be positive, got ", config.layer_norm_eps);
    MP_REQUIRE(config.padded_vocab == 0 || config.padded_vocab >= config.vocab, "gpt: padded_vocab ",
               config.padded_vocab, " must be 0 (none) or >= vocab ", config.vocab);
    const int64_t rows = c.table_rows();
    spec.description = str("gpt(vocab ", c.vocab, rows > c.vocab ? str(" padded to ", rows) : std::string(),
                           ", context ", c.context, ", layers ", c.layers, ", heads ", c.heads, ", channels ",
                           c.channels, c.tie_embeddings ? ", tied embeddings" : "", ")");
    spec.layers.push_back({"embed", (rows + c.context) * c.channels, [c, rows] {
                               Generator gen(layer_seed(c.seed, 0));
                               return std::make_shared<TokenPositionEmbedding>(c.vocab, c.context, c.channels, gen,
                                                                               0.02, rows);
                           }});
    for (int64_t l = 0; l < c.layers; ++l)
        spec.layers.push_back({"blocks." + std::to_string(l), block_parameters(c.channels), [c, l] {
                                   Generator gen(layer_seed(c.seed, l + 1));
                                   return std::make_shared<TransformerBlock>(c.channels, c.heads, c.layers, gen, c.dropout,
                                                                             layer_seed(c.seed ^ 0xD50ULL, l + 1),
                                                                             c.layer_norm_eps);
                               }});
    spec.layers.push_back({"head", c.channels * rows + 2 * c.channels, [c, rows] {
                               // Tied: the embedding's own first draw (its wte), so a head built on
                               // another stage starts equal to embed.wte; untied: its own seed.
                               Generator gen(layer_seed(c.seed, c.tie_embeddings ? 0 : c.layers + 1));
                               return std::make_shared<LMHead>(
                                   pad_rows(Tensor::randn({c.vocab, c.channels}, gen, 0.0, 0.02), rows),
                                   c.layer_norm_eps);
                           }});
    if (c.tie_embeddings) spec.ties.push_back({"embed.wte", "head.weight", rows * c.channels});
    return spec;
}

std::shared_ptr<Sequential> gpt(const GPTConfig& config) { return gpt_spec(config).build_all(); }

LinearReluLinear::LinearReluLinear(int64_t hidden, Generator& gen) {
    l1_ = std::make_shared<Linear>(hidden, hidden, gen);
    l2_ = std::make_shared<Linear>(hidden, hidden, gen);
    register_module("l1", l1_);
    register_module("l2", l2_);
}

Tensor LinearReluLinear::forward(const Tensor& x) { return l2_->forward(fn::relu(l1_->forward(x))); }

std::string LinearReluLinear::describe() const { return "Linear-ReLU-Linear"; }

ModelSpec realistic_spec(int64_t vocab, int64_t hidden, int64_t blocks, uint64_t seed) {
    MP_REQUIRE(vocab > 0 && hidden > 0 && blocks >= 0, "realistic_model: vocab ", vocab, ", hidden ", hidden,
               ", blocks ", blocks, " must be positive");
    ModelSpec spec;
    spec.description = str("realistic(vocab ", vocab, ", hidden ", hidden, ", blocks ", blocks, ")");
    spec.layers.push_back({"embed", vocab * hidden, [=] {
                               Generator gen(layer_seed(seed, 0));
                               return std::make_shared<Embedding>(vocab, hidden, gen);
                           }});
    for (int64_t b = 0; b < blocks; ++b)
        spec.layers.push_back({"blocks." + std::to_string(b), 2 * linear_parameters(hidden, hidden, true), [=] {
                                   Generator gen(layer_seed(seed, b + 1));
                                   return std::make_shared<LinearReluLinear>(hidden, gen);
                               }});
    spec.layers.push_back({"head", linear_parameters(hidden, vocab, true), [=] {
                               Generator gen(layer_seed(seed, blocks + 1));
                               return std::make_shared<Linear>(hidden, vocab, gen);
                           }});
    return spec;
}

std::shared_ptr<Sequential> realistic_model(int64_t vocab, int64_t hidden, int64_t blocks, uint64_t seed) {
    return realistic_spec(vocab, hidden, blocks, seed).build_all();
}

}  // namespace mp::nn
