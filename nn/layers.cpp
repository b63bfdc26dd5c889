// Layer implementations: parameter creation and initialisation, and forward passes written
// with the differentiable functions of autograd/ (so backward comes for free).
#include "nn/layers.h"

#include <algorithm>

#include <cmath>

#include "autograd/functions.h"
#include "kernels/common/counter_rng.h"

namespace mp::nn {

// ---- Linear
Linear::Linear(int64_t in_features, int64_t out_features, Generator& gen, bool with_bias, double init_std)
    : in_features_(in_features), out_features_(out_features) {
    MP_REQUIRE(in_features > 0 && out_features > 0, "Linear: features must be positive, got ", in_features, " -> ",
               out_features);
    if (init_std > 0) {
        weight = Tensor::randn({out_features, in_features}, gen, 0.0, init_std);
        if (with_bias) bias = Tensor::zeros({out_features});
    } else {
        double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
        weight = Tensor::uniform({out_features, in_features}, gen, -bound, bound);
        if (with_bias) bias = Tensor::uniform({out_features}, gen, -bound, bound);
    }
    register_parameter("weight", &weight);
    if (with_bias) register_parameter("bias", &bias);
}

Tensor Linear::forward(const Tensor& x) {
    MP_REQUIRE(x.dim() >= 1 && x.size(-1) == in_features_, "Linear: input ", shape_str(x.shape()), " has ",
               x.dim() ? x.size(-1) : 0, " features, weight expects ", in_features_);
    return fn::linear(x, for_compute(weight), for_compute(bias));
}

std::string Linear::describe() const {
    return str("Linear(", in_features_, " -> ", out_features_, bias.defined() ? "" : ", no bias", ")");
}

// ---- activations
Tensor ReLU::forward(const Tensor& x) { return fn::relu(x); }
Tensor GELU::forward(const Tensor& x) { return fn::gelu(x); }

// ---- Embedding
Embedding::Embedding(int64_t num_embeddings, int64_t dim, Generator& gen, double init_std) {
    MP_REQUIRE(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got ", num_embeddings, " x ", dim);
    weight = Tensor::randn({num_embeddings, dim}, gen, 0.0, init_std);
    register_parameter("weight", &weight);
}

Tensor Embedding::forward(const Tensor& ids) { return fn::embedding(ids, for_compute(weight)); }

std::string Embedding::describe() const { return str("Embedding(", weight.size(0), ", ", weight.size(1), ")"); }

// ---- TokenPositionEmbedding
Tensor pad_rows(const Tensor& t, int64_t rows) {
    MP_REQUIRE(t.dim() == 2 && rows >= t.size(0), "pad_rows: ", t.describe(), " cannot be padded to ", rows, " rows");
    if (rows == t.size(0)) return t;
    Tensor padded = Tensor::zeros({rows, t.size(1)}, t.dtype(), t.device());
    Tensor head = padded.slice(0, t.size(0));  // a view of the first rows
    head.copy_from(t);
    return padded;
}

TokenPositionEmbedding::TokenPositionEmbedding(int64_t vocab, int64_t context, int64_t channels, Generator& gen,
                                               double init_std, int64_t table_rows)
    : context_(context) {
    MP_REQUIRE(vocab > 0 && context > 0 && channels > 0, "TokenPositionEmbedding: sizes must be positive, got vocab ",
               vocab, ", context ", context, ", channels ", channels);
    // The first vocab rows are drawn as for an unpadded table, so padding changes no real weight.
    wte = pad_rows(Tensor::randn({vocab, channels}, gen, 0.0, init_std), std::max(vocab, table_rows));
    wpe = Tensor::randn({context, channels}, gen, 0.0, init_std);
    register_parameter("wte", &wte);
    register_parameter("wpe", &wpe);
}

Tensor TokenPositionEmbedding::forward(const Tensor& ids) {
    MP_REQUIRE(ids.dim() == 2, "TokenPositionEmbedding: ids must be (B, T), got ", shape_str(ids.shape()));
    int64_t batch = ids.size(0), time = ids.size(1);
    MP_REQUIRE(time <= context_, "TokenPositionEmbedding: sequence length ", time, " exceeds the context ", context_);
    // Positions 0..T-1 for every sequence: an int32 (B, T) tensor, built on the host once per
    // shape and device and kept, so a training step does not upload it (and wait) every time.
    if (position_ids_.shape() != ids.shape() || position_ids_.device() != ids.device()) {
        std::vector<int32_t> positions(static_cast<size_t>(batch * time));
        for (int64_t i = 0; i < batch * time; ++i) positions[i] = static_cast<int32_t>(i % time);
        position_ids_ = Tensor::from_vector(positions, {batch, time}, ids.device());
    }
    return fn::add(fn::embedding(ids, for_compute(wte)), fn::embedding(position_ids_, for_compute(wpe)));
}

std::string TokenPositionEmbedding::describe() const {
    return str("TokenPositionEmbedding(vocab ", wte.size(0), ", context ", context_, ", channels ", wte.size(1), ")");
}

// ---- LayerNorm
LayerNorm::LayerNorm(int64_t channels, double eps) : eps_(eps) {
    MP_REQUIRE(channels > 0, "LayerNorm: channels must be positive, got ", channels);
    weight = Tensor::full({channels}, 1.0);
    bias = Tensor::zeros({channels});
    register_parameter("weight", &weight);
    register_parameter("bias", &bias);
}

Tensor LayerNorm::forward(const Tensor& x) {
    return fn::layernorm(x, for_compute(weight), for_compute(bias), eps_);
}

std::string LayerNorm::describe() const { return str("LayerNorm(", weight.size(0), ")"); }

// ---- Dropout
Dropout::Dropout(double p, uint64_t seed) : p_(p), gen_(seed) {
    MP_REQUIRE(p >= 0.0 && p < 1.0, "Dropout: p must be in [0, 1), got ", p);
}

namespace {
struct DropoutReplay {
    bool active = false;
    uint64_t serial = 0;  // which scope: a module's call count restarts in each new one
    uint64_t key = 0;
    int64_t first_row = 0;
};
thread_local DropoutReplay g_dropout_replay;
thread_local uint64_t g_dropout_scopes_opened = 0;
}  // namespace

DropoutReplayScope::DropoutReplayScope(uint64_t key, int64_t first_row) {
    MP_REQUIRE(first_row >= 0, "DropoutReplayScope: first_row must be >= 0, got ", first_row);
    g_dropout_replay = DropoutReplay{true, ++g_dropout_scopes_opened, key, first_row};
}
DropoutReplayScope::~DropoutReplayScope() { g_dropout_replay = DropoutReplay{}; }

Tensor Dropout::forward(const Tensor& x) {
    if (!is_training() || p_ == 0.0) return x;
    if (g_dropout_replay.active) {
        if (replay_scope_ != g_dropout_replay.serial) {
            replay_scope_ = g_dropout_replay.serial;
            replay_calls_ = 0;
        }
        const uint64_t call = replay_calls_++;
        const uint64_t seed = rng::mix64(gen_.seed() ^ rng::mix64(g_dropout_replay.key * 0x9E3779B97F4A7C15ULL + call));
        const uint64_t per_row = x.dim() > 0 && x.size(0) > 0 ? static_cast<uint64_t>(x.numel() / x.size(0)) : 0;
        return fn::dropout(x, p_, seed, static_cast<uint64_t>(g_dropout_replay.first_row) * per_row);
    }
    return fn::dropout(x, p_, gen_.seed(), gen_.advance(static_cast<uint64_t>(x.numel())));
}

std::string Dropout::describe() const { return str("Dropout(", p_, ")"); }

// ---- CausalSelfAttention
CausalSelfAttention::CausalSelfAttention(int64_t channels, int64_t heads, Generator& gen, double init_std,
                                         double proj_init_std)
    : channels_(channels), heads_(heads) {
    MP_REQUIRE(heads > 0 && channels % heads == 0, "CausalSelfAttention: channels ", channels,
               " must be divisible by heads ", heads);
    qkv_ = std::make_shared<Linear>(channels, 3 * channels, gen, true, init_std);
    proj_ = std::make_shared<Linear>(channels, channels, gen, true, proj_init_std);
    register_module("qkv", qkv_);
    register_module("proj", proj_);
}

Tensor CausalSelfAttention::forward(const Tensor& x) {
    MP_REQUIRE(x.dim() == 3 && x.size(2) == channels_, "CausalSelfAttention: input must be (B, T, ", channels_,
               "), got ", shape_str(x.shape()));
    return proj_->forward(fn::causal_attention(qkv_->forward(x), heads_));
}

std::string CausalSelfAttention::describe() const {
    return str("CausalSelfAttention(", channels_, ", heads ", heads_, ")");
}

// ---- MLP
MLP::MLP(int64_t channels, Generator& gen, double init_std, double proj_init_std) {
    fc_ = std::make_shared<Linear>(channels, 4 * channels, gen, true, init_std);
    proj_ = std::make_shared<Linear>(4 * channels, channels, gen, true, proj_init_std);
    register_module("fc", fc_);
    register_module("proj", proj_);
}

// fc and GELU as one op: the bias and the activation run in the GEMM's epilogue.
Tensor MLP::forward(const Tensor& x) {
    return proj_->forward(fn::linear_gelu(x, for_compute(fc_->weight), for_compute(fc_->bias)));
}

std::string MLP::describe() const { return "MLP"; }

// ---- TransformerBlock
TransformerBlock::TransformerBlock(int64_t channels, int64_t heads, int64_t layers, Generator& gen, double dropout,
                                   uint64_t dropout_seed, double layer_norm_eps) {
    // GPT-2 initialisation: N(0, 0.02²), and the two projections that write into the residual
    // stream scaled by 1/√(2·layers) so the residual's variance does not grow with depth.
    const double init_std = 0.02;
    const double proj_init_std = 0.02 / std::sqrt(2.0 * static_cast<double>(layers));
    ln_1_ = std::make_shared<LayerNorm>(channels, layer_norm_eps);
    attn_ = std::make_shared<CausalSelfAttention>(channels, heads, gen, init_std, proj_init_std);
    ln_2_ = std::make_shared<LayerNorm>(channels, layer_norm_eps);
    mlp_ = std::make_shared<MLP>(channels, gen, init_std, proj_init_std);
    register_module("ln_1", ln_1_);
    register_module("attn", attn_);
    register_module("ln_2", ln_2_);
    register_module("mlp", mlp_);
    if (dropout > 0.0) {
        dropout_ = std::make_shared<Dropout>(dropout, dropout_seed);
        register_module("dropout", dropout_);
    }
}

Tensor TransformerBlock::forward(const Tensor& x) {
    auto residual_branch = [&](const Tensor& branch) { return dropout_ ? dropout_->forward(branch) : branch; };
    Tensor h = fn::add(x, residual_branch(attn_->forward(ln_1_->forward(x))));
    return fn::add(h, residual_branch(mlp_->forward(ln_2_->forward(h))));
}

std::string TransformerBlock::describe() const { return "TransformerBlock"; }

// ---- LMHead
LMHead::LMHead(Tensor head_weight, double layer_norm_eps) : weight(std::move(head_weight)), eps_(layer_norm_eps) {
    MP_REQUIRE(weight.defined() && weight.dim() == 2, "LMHead: the weight must be (vocab, channels), got ",
               weight.defined() ? shape_str(weight.shape()) : std::string("undefined"));
    ln_f_weight = Tensor::full({weight.size(1)}, 1.0);
    ln_f_bias = Tensor::zeros({weight.size(1)});
    register_parameter("ln_f.weight", &ln_f_weight);
    register_parameter("ln_f.bias", &ln_f_bias);
    register_parameter("weight", &weight);
}

Tensor LMHead::forward(const Tensor& x) {
    MP_REQUIRE(x.dim() >= 1 && x.size(-1) == weight.size(1), "LMHead: input ", shape_str(x.shape()), " has ",
               x.dim() ? x.size(-1) : 0, " features, the head expects ", weight.size(1));
    Tensor normalised = fn::layernorm(x, for_compute(ln_f_weight), for_compute(ln_f_bias), eps_);
    return fn::linear(normalised, for_compute(weight), Tensor());
}

std::string LMHead::describe() const { return str("LMHead(", weight.size(1), " -> ", weight.size(0), ")"); }

// ---- Sequential
void Sequential::add(const std::string& name, std::shared_ptr<Module> layer) {
    register_module(name, layer);
    layers_.emplace_back(name, std::move(layer));
}

Tensor Sequential::forward(const Tensor& x) {
    Tensor h = x;
    for (auto& [name, layer] : layers_) h = layer->forward(h);
    return h;
}

std::string Sequential::describe() const { return str("Sequential(", layers_.size(), " layers)"); }

std::shared_ptr<Sequential> Sequential::slice(size_t begin, size_t end) const {
    MP_REQUIRE(begin <= end && end <= layers_.size(), "Sequential::slice: [", begin, ", ", end, ") out of range for ",
               layers_.size(), " layers");
    auto part = std::make_shared<Sequential>();
    for (size_t i = begin; i < end; ++i) part->add(layers_[i].first, layers_[i].second);
    return part;
}

void Sequential::add_layers_of(const Sequential& other) {
    for (const auto& [name, layer] : other.layers_) add(name, layer);
}

}  // namespace mp::nn
