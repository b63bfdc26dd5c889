// The layers: Linear, ReLU, GELU, Embedding, token+position embedding, LayerNorm, Dropout,
// CausalSelfAttention, MLP, TransformerBlock (pre-LN, GPT-2 residual layout), LMHead (final
// LayerNorm + vocabulary projection) and Sequential.
// Each takes one tensor and returns one; parameters are created on the CPU from a seeded
// Generator (move a model with Module::to). Layers with parameters compute with for_compute(p)
// (nn/compute_dtype.h: the mixed-precision copies).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/compute_dtype.h"
#include "nn/module.h"

namespace mp::nn {

// y = x·Wᵀ + b. weight (out, in), bias (out). init_std > 0: weight ~ N(0, init_std²) and zero
// bias (GPT-2); init_std <= 0: PyTorch's default, U(−1/√in, 1/√in) for both.
class Linear : public Module {
  public:
    Linear(int64_t in_features, int64_t out_features, Generator& gen, bool bias = true, double init_std = 0.0);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Tensor weight, bias;

  private:
    int64_t in_features_, out_features_;
};

class ReLU : public Module {
  public:
    Tensor forward(const Tensor& x) override;
    std::string describe() const override { return "ReLU"; }
};

class GELU : public Module {
  public:
    Tensor forward(const Tensor& x) override;
    std::string describe() const override { return "GELU(tanh)"; }
};

// ids (int32, any shape) -> ids.shape + (dim). weight ~ N(0, init_std²).
class Embedding : public Module {
  public:
    Embedding(int64_t num_embeddings, int64_t dim, Generator& gen, double init_std = 1.0);
    Tensor forward(const Tensor& ids) override;
    std::string describe() const override;
    Tensor weight;
};

// GPT-2 input layer: ids (B, T) -> wte[ids] + wpe[0..T) of shape (B, T, C).
class TokenPositionEmbedding : public Module {
  public:
    // table_rows > vocab: wte gets zero rows past vocab (padding, see GPTConfig::padded_vocab).
    TokenPositionEmbedding(int64_t vocab, int64_t context, int64_t channels, Generator& gen, double init_std = 0.02,
                           int64_t table_rows = 0);
    Tensor forward(const Tensor& ids) override;
    std::string describe() const override;
    Tensor wte, wpe;

  private:
    int64_t context_;
    Tensor position_ids_;  // 0..T-1 per row, for the last (B, T) and device seen
};

// `rows` (>= t's) rows: t's, then zeros (a padded vocabulary table). t itself when rows == t's.
Tensor pad_rows(const Tensor& t, int64_t rows);

class LayerNorm : public Module {
  public:
    explicit LayerNorm(int64_t channels, double eps = 1e-5);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    Tensor weight, bias;

  private:
    double eps_;
};

// Makes dropout masks a function of where they are drawn instead of the layers' running counters
// while alive: inside the scope, the n-th call of one Dropout module draws its mask from (that
// module's own seed — its identity in the whole model —, `key`, n) at element offset
// first_row × (elements per row of dim 0), i.e. as the slice of the mask the whole batch would
// get. A pipeline stage opens one per micro-batch forward (key = the step, first_row = the
// micro-batch's first row in the global batch), so one process, any partition, any micro-batch
// count and any schedule draw the same masks, and a re-materialized forward, run again under a
// fresh scope with the same key and row, draws exactly the masks of the first.
class DropoutReplayScope {
  public:
    DropoutReplayScope(uint64_t key, int64_t first_row);
    ~DropoutReplayScope();
    DropoutReplayScope(const DropoutReplayScope&) = delete;
    DropoutReplayScope& operator=(const DropoutReplayScope&) = delete;
};

// Zeroes each element with probability p (training only) and scales survivors by 1/(1−p).
// The mask is a function of (seed, counter) — regenerated in backward, never stored.
class Dropout : public Module {
  public:
    Dropout(double p, uint64_t seed);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

  private:
    double p_;
    Generator gen_;
    uint64_t replay_scope_ = 0;  // the scope this module's call count belongs to
    uint64_t replay_calls_ = 0;  // calls inside that scope
};

// Multi-head causal self-attention: fused qkv projection, causal softmax(q·kᵀ/√D)·v, output projection.
class CausalSelfAttention : public Module {
  public:
    CausalSelfAttention(int64_t channels, int64_t heads, Generator& gen, double init_std, double proj_init_std);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

  private:
    int64_t channels_, heads_;
    std::shared_ptr<Linear> qkv_, proj_;
};

// Linear(C, 4C) -> GELU -> Linear(4C, C).
class MLP : public Module {
  public:
    MLP(int64_t channels, Generator& gen, double init_std, double proj_init_std);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

  private:
    // fc_ holds the first projection's parameters, but its forward never runs: MLP::forward calls
    // fn::linear_gelu with them, the GELU fused into the product's epilogue.
    std::shared_ptr<Linear> fc_, proj_;
};

// x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)).
class TransformerBlock : public Module {
  public:
    TransformerBlock(int64_t channels, int64_t heads, int64_t layers, Generator& gen, double dropout = 0.0,
                     uint64_t dropout_seed = 0, double layer_norm_eps = 1e-5);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

  private:
    std::shared_ptr<LayerNorm> ln_1_, ln_2_;
    std::shared_ptr<CausalSelfAttention> attn_;
    std::shared_ptr<MLP> mlp_;
    std::shared_ptr<Dropout> dropout_;
};

// GPT's last layer: logits = ln_f(x) · weightᵀ, weight (vocab, C), no bias. One pipeline layer (see
// nn::gpt_layer_count). `weight` is initialised by the caller: with tied embeddings it is the token
// embedding's table (or a copy of it on another stage).
class LMHead : public Module {
  public:
    LMHead(Tensor weight, double layer_norm_eps = 1e-5);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    // Registered in this order: ln_f.weight, ln_f.bias, weight (the final LayerNorm is held here,
    // not as a child, so the vocabulary projection stays the model's last parameter).
    Tensor ln_f_weight, ln_f_bias, weight;

  private:
    double eps_;
};

// An ordered list of named layers, each taking and returning one tensor.
class Sequential : public Module {
  public:
    Sequential() = default;
    void add(const std::string& name, std::shared_ptr<Module> layer);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;
    size_t size() const { return layers_.size(); }
    const std::string& layer_name(size_t i) const { return layers_.at(i).first; }
    Module& layer(size_t i) const { return *layers_.at(i).second; }
    // Layers [begin, end) as a new Sequential sharing the layers (a pipeline stage), names kept.
    std::shared_ptr<Sequential> slice(size_t begin, size_t end) const;
    // Appends `other`'s layers, shared, names kept (a pipeline rank's several stages as one module
    // for its checkpoint: the names are the whole model's, so they never collide).
    void add_layers_of(const Sequential& other);

  private:
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> layers_;
};

}  // namespace mp::nn
