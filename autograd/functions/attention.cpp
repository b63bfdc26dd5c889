// Attention layout as differentiable functions, and causal self-attention composed from them:
// qkv -> (q, k, v) heads -> scores = q·kᵀ/√D (cuBLAS strided-batched) -> causal softmax
// -> att·v -> merged heads. The composite has no gradient code of its own.
#include <cmath>

#include "autograd/functions.h"
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

Tensor causal_attention(const Tensor& qkv, int64_t heads) {
    auto [q, k, v] = split_qkv_heads(qkv, heads);
    double head_dim = static_cast<double>(q.size(-1));
    Tensor scores = bmm(q, k, false, true);                     // (B, H, T, T)
    Tensor att = causal_softmax(scores, 1.0 / std::sqrt(head_dim));
    Tensor y = bmm(att, v);                                     // (B, H, T, D)
    return merge_heads(y);                                      // (B, T, C)
}

}  // namespace mp::fn
