// Differentiable activations and the causal softmax of attention.
#include "autograd/functions.h"
#include "tensor/ops/activations.h"
#include "tensor/ops/dropout.h"
#include "tensor/ops/softmax.h"

namespace mp::fn {

using autograd::Grads;
using autograd::TensorRef;

Tensor relu(const Tensor& x) {
    Tensor y = ops::relu(x);
    autograd::record("relu", {x}, {y}, [x](Grads& g, const std::vector<Tensor>& dy) {
        g.accumulate(x, ops::relu_backward(x, dy[0]));
    });
    return y;
}

Tensor gelu(const Tensor& x) {
    Tensor y = ops::gelu(x);
    autograd::record("gelu", {x}, {y}, [x](Grads& g, const std::vector<Tensor>& dy) {
        g.accumulate(x, ops::gelu_backward(x, dy[0]));
    });
    return y;
}

Tensor causal_softmax(const Tensor& scores, double scale) {
    Tensor y = ops::causal_softmax(scores, scale);
    // The backward needs only the output (dx = scale·y·(dy − Σ dy·y)), not the scores.
    autograd::record("causal_softmax", {scores}, {y}, [rs = TensorRef(scores), y, scale](Grads& g, const std::vector<Tensor>& dy) {
        g.accumulate(rs, ops::causal_softmax_backward(y, dy[0], scale));
    });
    return y;
}

Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
    Tensor y = ops::dropout(x, p, seed, offset);
    autograd::record("dropout", {x}, {y}, [rx = TensorRef(x), p, seed, offset](Grads& g, const std::vector<Tensor>& dy) {
        g.accumulate(rx, ops::dropout(dy[0], p, seed, offset));  // the same mask and scale
    });
    return y;
}

}  // namespace mp::fn
