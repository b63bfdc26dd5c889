// Differentiable layer norm and embedding lookup.
#include <memory>
#include <utility>

#include "autograd/functions.h"
#include "tensor/ops/embedding.h"
#include "tensor/ops/layernorm.h"

namespace mp::fn {

using autograd::Grads;
using autograd::TensorRef;

Tensor layernorm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
    ops::LayerNormResult r = ops::layernorm(x, gamma, beta, eps);
    // Saves x, the per-row mean and rstd (two floats a row) and gamma; not y. One fused kernel
    // computes dx, dγ and dβ in the I half; W only adds the two small parameter gradients
    // (handed over from I), so it keeps nothing of the activations alive.
    auto parameter_grads = std::make_shared<std::pair<Tensor, Tensor>>();
    autograd::record(
        "layernorm", {x, gamma, beta}, {r.y},
        [x, gamma, mean = r.mean, rstd = r.rstd, parameter_grads](Grads& g, const std::vector<Tensor>& dy) {
            ops::LayerNormGrads grads = ops::layernorm_backward(dy[0], x, gamma, mean, rstd);
            g.accumulate(x, grads.dx);
            *parameter_grads = {grads.dgamma, grads.dbeta};
        },
        [rg = TensorRef(gamma), rb = TensorRef(beta), parameter_grads](Grads& g, const std::vector<Tensor>&) {
            g.accumulate(rg, parameter_grads->first);
            g.accumulate(rb, parameter_grads->second);
            *parameter_grads = {};
        });
    return r.y;
}

Tensor embedding(const Tensor& ids, const Tensor& weight) {
    Tensor y = ops::embedding(ids, weight);
    // Token ids are not differentiable; the weight's gradient is a scatter-add of dy by id.
    // Only a W half: nothing flows back to the ids.
    // A parameter's gradient is accumulated in place (only the rows its ids touch, bfloat16 into a
    // float32 master unrounded).
    autograd::record("embedding", {ids, weight}, {y}, nullptr, [ids, weight](Grads& g, const std::vector<Tensor>& dy) {
        const Tensor& dout = dy[0];
        if (!autograd::accumulate_into_slot(
                weight, [&](Tensor& grad, bool acc) { ops::embedding_backward_(grad, ids, dout, acc); }))
            g.accumulate(weight, ops::embedding_backward(ids, dout, weight.size(0)));
    });
    return y;
}

}  // namespace mp::fn
