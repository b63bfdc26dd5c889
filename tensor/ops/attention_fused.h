// Fused causal attention as tensor ops (cuDNN SDPA through cudnn-frontend, kernels/attention_fused.h):
// the choice between the fused and the composed attention (MINIPIPE_ATTENTION), the decision whether
// the fused path can take a given qkv and why not, and the forward and backward ops.
#pragma once

#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace mp::ops {

// Which attention fn::causal_attention runs. Auto: the fused one wherever it can (CUDA, bfloat16,
// built with cudnn-frontend, a head_dim cuDNN takes), the composed one elsewhere. Fused: the fused
// one or an error saying why not. Composed: always the composed one (the reference).
enum class AttentionPath { Auto, Fused, Composed };

const char* attention_path_name(AttentionPath path);  // "auto", "fused", "composed"
// "auto" | "fused" | "composed"; anything else throws std::invalid_argument naming the text.
AttentionPath parse_attention_path(const std::string& text, const char* what = "attention path");
// The process-wide choice: set_attention_path's, else the environment variable MINIPIPE_ATTENTION
// (read once; unset or empty means auto; a bad value throws on that first read).
AttentionPath attention_path();
void set_attention_path(AttentionPath path);

// Sets the choice for a scope (tests, benchmarks), restoring the previous one after.
class AttentionPathScope {
  public:
    explicit AttentionPathScope(AttentionPath path);
    ~AttentionPathScope();
    AttentionPathScope(const AttentionPathScope&) = delete;
    AttentionPathScope& operator=(const AttentionPathScope&) = delete;

  private:
    AttentionPath previous_;
};

// Whether the fused backward is bitwise deterministic (default true: cuDNN's dP-workspace
// algorithm, a (B, H, T, T) bf16 workspace). False lets cuDNN accumulate dQ with atomics.
bool fused_attention_deterministic();
void set_fused_attention_deterministic(bool deterministic);

// Whether the fused path can take causal attention of `qkv` (B, T, 3C) with `heads` heads, and if
// not, why (naming the values). `ask_cudnn`: also build (once) the graphs and ask cuDNN whether it
// supports them on this GPU; false checks only what is known without a GPU (build, device, dtype,
// shape, alignment). Does not look at attention_path().
struct FusedAttentionSupport {
    bool supported = false;
    std::string reason;  // "" when supported
};
FusedAttentionSupport fused_attention_support(const Tensor& qkv, int64_t heads, bool ask_cudnn = true);
// Whether this build has the fused attention at all (cudnn-frontend and cuDNN found by make).
bool fused_attention_compiled();

// Forward: out (B, T, C) = causal attention of qkv (B, T, 3C), bfloat16 on a GPU, and stats
// (B, H, T) float32, the logsumexp of each row of scaled scores, which the backward needs.
struct FusedAttentionOutput {
    Tensor out;
    Tensor stats;
};
FusedAttentionOutput causal_attention_fused(const Tensor& qkv, int64_t heads);
// Backward: dqkv (B, T, 3C), the gradient of qkv, from the forward's qkv, out and stats and the
// gradient dout (B, T, C) of out.
Tensor causal_attention_fused_backward(const Tensor& qkv, const Tensor& out, const Tensor& stats, const Tensor& dout,
                                       int64_t heads);

}  // namespace mp::ops
