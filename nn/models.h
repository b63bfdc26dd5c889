// Model builders. Each returns a Sequential — the unit the pipeline partitions — whose layer
// names give the stable dotted parameter names ("blocks.3.attn.qkv.weight").
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "nn/layers.h"
#include "nn/model_spec.h"

namespace mp::nn {

// How many layers each model has: the units a pipeline partitions (what its spec's size() is).
// An MLP of n widths: n - 1 Linears and the n - 2 ReLUs between them.
constexpr int64_t mlp_layer_count(int64_t widths) { return 2 * widths - 3; }
// A GPT of L blocks: the embedding, the blocks, and the head (final LayerNorm + projection) as one.
constexpr int64_t gpt_layer_count(int64_t blocks) { return blocks + 2; }
// The RealisticModel: the embedding, the blocks, the head.
constexpr int64_t realistic_layer_count(int64_t blocks) { return blocks + 2; }

// Linear(w0, w1) -> ReLU -> Linear(w1, w2) -> ... -> Linear(w_{n-2}, w_{n-1}); no ReLU after the last.
// Layers are named "0", "1", ...
ModelSpec mlp_spec(const std::vector<int64_t>& widths, uint64_t seed);
std::shared_ptr<Sequential> mlp(const std::vector<int64_t>& widths, uint64_t seed);

struct GPTConfig {
    int64_t vocab = 256;
    int64_t context = 64;
    int64_t layers = 2;
    int64_t heads = 4;
    int64_t channels = 64;
    double dropout = 0.0;
    uint64_t seed = 1337;
    double layer_norm_eps = 1e-5;
    bool tie_embeddings = false;  // GPT-2's: the head's weight is the token embedding embed.wte
    // Rows of embed.wte and head.weight, >= vocab (0: vocab): the rows past vocab are padding (e.g.
    // GPT-2's 50257 padded to 50304 = 64·786, for tensor-core-friendly GEMMs, as llm.c does). They
    // start at zero, no id reaches them, and their logits never reach the loss or the samples.
    int64_t padded_vocab = 0;
    int64_t table_rows() const { return padded_vocab > vocab ? padded_vocab : vocab; }
};
// [embed: TokenPositionEmbedding, blocks.0 .. blocks.{L-1}: TransformerBlock, head: LMHead (final
//  LayerNorm + vocabulary projection)] — gpt_layer_count(L) layers, as the pipeline counts them — with GPT-2
// initialisation. Parameters: embed.wte, embed.wpe, blocks.<l>.…, head.ln_f.weight, head.ln_f.bias,
// head.weight. With tie_embeddings, head.weight is tied to embed.wte (spec.ties): built together
// they are one parameter; the head built alone holds a copy with embed.wte's initial values.
ModelSpec gpt_spec(const GPTConfig& config);
std::shared_ptr<Sequential> gpt(const GPTConfig& config);

// Linear -> ReLU -> Linear, one block of the seed notebook's RealisticModel.
class LinearReluLinear : public Module {
  public:
    LinearReluLinear(int64_t hidden, Generator& gen);
    Tensor forward(const Tensor& x) override;
    std::string describe() const override;

  private:
    std::shared_ptr<Linear> l1_, l2_;
};

// The seed notebook's "RealisticModel": Embedding(vocab, hidden) -> blocks × (Linear–ReLU–Linear)
// -> Linear(hidden, vocab), with PyTorch's default initialisation.
ModelSpec realistic_spec(int64_t vocab = 1000, int64_t hidden = 2048, int64_t blocks = 30, uint64_t seed = 0);
std::shared_ptr<Sequential> realistic_model(int64_t vocab = 1000, int64_t hidden = 2048, int64_t blocks = 30,
                                            uint64_t seed = 0);

}  // namespace mp::nn
