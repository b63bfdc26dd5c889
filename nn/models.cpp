// Model builders: MLP, GPT and the seed notebook's RealisticModel.
#include "nn/models.h"

#include "autograd/functions.h"

namespace mp::nn {

std::shared_ptr<Sequential> mlp(const std::vector<int64_t>& widths, uint64_t seed) {
    MP_REQUIRE(widths.size() >= 2, "mlp: needs at least an input and an output width, got ", widths.size(), " widths");
    Generator gen(seed);
    auto model = std::make_shared<Sequential>();
    for (size_t i = 0; i + 1 < widths.size(); ++i) {
        model->add(std::to_string(2 * i), std::make_shared<Linear>(widths[i], widths[i + 1], gen));
        if (i + 2 < widths.size()) model->add(std::to_string(2 * i + 1), std::make_shared<ReLU>());
    }
    return model;
}

std::shared_ptr<Sequential> gpt(const GPTConfig& config) {
    MP_REQUIRE(config.vocab > 0 && config.context > 0 && config.layers > 0 && config.heads > 0 && config.channels > 0,
               "gpt: every size must be positive (vocab ", config.vocab, ", context ", config.context, ", layers ",
               config.layers, ", heads ", config.heads, ", channels ", config.channels, ")");
    MP_REQUIRE(config.channels % config.heads == 0, "gpt: channels ", config.channels, " must be divisible by heads ",
               config.heads);
    Generator gen(config.seed);
    auto model = std::make_shared<Sequential>();
    model->add("embed", std::make_shared<TokenPositionEmbedding>(config.vocab, config.context, config.channels, gen));
    for (int64_t l = 0; l < config.layers; ++l)
        model->add("blocks." + std::to_string(l),
                   std::make_shared<TransformerBlock>(config.channels, config.heads, config.layers, gen, config.dropout,
                                                      config.seed * 1000003ULL + static_cast<uint64_t>(l)));
    model->add("ln_f", std::make_shared<LayerNorm>(config.channels));
    model->add("head", std::make_shared<Linear>(config.channels, config.vocab, gen, false, 0.02));
    return model;
}

LinearReluLinear::LinearReluLinear(int64_t hidden, Generator& gen) {
    l1_ = std::make_shared<Linear>(hidden, hidden, gen);
    l2_ = std::make_shared<Linear>(hidden, hidden, gen);
    register_module("l1", l1_);
    register_module("l2", l2_);
}

Tensor LinearReluLinear::forward(const Tensor& x) { return l2_->forward(fn::relu(l1_->forward(x))); }

std::string LinearReluLinear::describe() const { return "Linear-ReLU-Linear"; }

std::shared_ptr<Sequential> realistic_model(int64_t vocab, int64_t hidden, int64_t blocks, uint64_t seed) {
    MP_REQUIRE(vocab > 0 && hidden > 0 && blocks >= 0, "realistic_model: vocab ", vocab, ", hidden ", hidden,
               ", blocks ", blocks, " must be positive");
    Generator gen(seed);
    auto model = std::make_shared<Sequential>();
    model->add("embed", std::make_shared<Embedding>(vocab, hidden, gen));
    for (int64_t b = 0; b < blocks; ++b) model->add("blocks." + std::to_string(b), std::make_shared<LinearReluLinear>(hidden, gen));
    model->add("head", std::make_shared<Linear>(hidden, vocab, gen));
    return model;
}

}  // namespace mp::nn
