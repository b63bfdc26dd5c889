// Attention layout as differentiable functions; causal self-attention composed from them
// (qkv -> (q, k, v) heads -> scores = q·kᵀ/√D -> causal softmax -> att·v -> merged heads, no gradient
// code of its own), the fused cuDNN attention as one entry, and the choice between the two.
#include <cmath>

#include "autograd/functions.h"
#include "tensor/ops/attention_fused.h"
#include "tensor/ops/attention_layout.h"

namespace mp::fn {

using autograd::Grads;
using autograd::TensorRef;

std::array<Tensor, 3> split_qkv_heads(const Tensor& qkv, int64_t heads) {
    std::array<Tensor, 3> qkv_heads = ops::split_qkv_heads(qkv, heads);
    autograd::record("split_qkv_heads", {qkv}, {qkv_heads[0], qkv_heads[1], qkv_heads[2]},
                     [rqkv = TensorRef(qkv)](Grads& g, const std::vector<Tensor>& dy) {
                         g.accumulate(rqkv, ops::merge_qkv_heads(dy[0], dy[1], dy[2]));
                     });
    return qkv_heads;
}

Tensor merge_heads(const Tensor& y) {
    Tensor merged = ops::merge_heads(y);
    int64_t heads = y.size(1);
    autograd::record("merge_heads", {y}, {merged}, [ry = TensorRef(y), heads](Grads& g, const std::vector<Tensor>& dy) {
        g.accumulate(ry, ops::split_heads(dy[0], heads));
    });
    return merged;
}

Tensor causal_attention_composed(const Tensor& qkv, int64_t heads) {
    auto [q, k, v] = split_qkv_heads(qkv, heads);
    double head_dim = static_cast<double>(q.size(-1));
    Tensor scores = bmm(q, k, false, true);                     // (B, H, T, T)
    Tensor att = causal_softmax(scores, 1.0 / std::sqrt(head_dim));
    Tensor y = bmm(att, v);                                     // (B, H, T, D)
    return merge_heads(y);                                      // (B, T, C)
}

// One tape entry. The closure keeps what cuDNN's backward reads: qkv (q, k, v in place), the
// output and the float32 logsumexp per score row — (B, T, 3C) + (B, T, C) + 4·B·H·T bytes/elem
// instead of the composed path's (B, H, T, T) probabilities. No weights: it all runs in the I half.
Tensor causal_attention_fused(const Tensor& qkv, int64_t heads) {
    ops::FusedAttentionOutput fused = ops::causal_attention_fused(qkv, heads);
    autograd::record("causal_attention_fused", {qkv}, {fused.out},
                     [qkv, out = fused.out, stats = fused.stats, heads](Grads& g, const std::vector<Tensor>& dy) {
                         if (!g.wants(TensorRef(qkv))) return;
                         g.accumulate(qkv, ops::causal_attention_fused_backward(qkv, out, stats, dy[0], heads));
                     });
    return fused.out;
}

Tensor causal_attention(const Tensor& qkv, int64_t heads) {
    const ops::AttentionPath path = ops::attention_path();
    if (path == ops::AttentionPath::Composed) return causal_attention_composed(qkv, heads);
    const ops::FusedAttentionSupport support = ops::fused_attention_support(qkv, heads);
    if (support.supported) return causal_attention_fused(qkv, heads);
    MP_REQUIRE(path != ops::AttentionPath::Fused, "causal_attention: the attention path is 'fused' (",
               "MINIPIPE_ATTENTION or ops::set_attention_path) but it cannot take qkv ",
               qkv.defined() ? qkv.describe() : "(undefined)", " with heads = ", heads, ": ", support.reason);
    return causal_attention_composed(qkv, heads);
}

}  // namespace mp::fn
