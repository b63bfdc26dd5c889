// Differentiable layer norm and embedding lookup.
#include "autograd/functions.h"
#include "tensor/ops/embedding.h"
#include "tensor/ops/layernorm.h"

namespace mp::fn {

using autograd::Grads;
using autograd::TensorRef;

Tensor layernorm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
    ops::LayerNormResult r = ops::layernorm(x, gamma, beta, eps);
    // Saves x, the per-row mean and rstd (two floats a row) and gamma; not y.
    autograd::record("layernorm", {x, gamma, beta}, {r.y},
                     [x, gamma, rb = TensorRef(beta), mean = r.mean, rstd = r.rstd](Grads& g, const std::vector<Tensor>& dy) {
                         ops::LayerNormGrads grads = ops::layernorm_backward(dy[0], x, gamma, mean, rstd);
                         g.accumulate(x, grads.dx);
                         g.accumulate(gamma, grads.dgamma);
                         g.accumulate(rb, grads.dbeta);
                     });
    return r.y;
}

Tensor embedding(const Tensor& ids, const Tensor& weight) {
    Tensor y = ops::embedding(ids, weight);
    // Token ids are not differentiable; the weight's gradient is a scatter-add of dy by id.
    autograd::record("embedding", {ids, weight}, {y}, [ids, rw = TensorRef(weight)](Grads& g, const std::vector<Tensor>& dy) {
        g.accumulate(rw, ops::embedding_backward(ids, dy[0], rw.shape[0]));
    });
    return y;
}

}  // namespace mp::fn
