// Differentiable losses reducing to a scalar mean: cross-entropy (fused with the softmax, with
// an ignore index) and mean squared error.
#include "autograd/functions.h"
#include "tensor/ops/common.h"
#include "tensor/ops/cross_entropy.h"
#include "tensor/ops/elementwise.h"

namespace mp::fn {

using autograd::Grads;
using autograd::TensorRef;

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index) {
    ops::CrossEntropyResult r = ops::cross_entropy_forward(logits, targets, ignore_index);
    // The mean is over counted rows; the count needs the targets on the host (N int32s).
    int64_t counted = 0;
    for (int32_t t : targets.to_vector<int32_t>()) counted += (t != ignore_index);
    double inv_count = counted > 0 ? 1.0 / static_cast<double>(counted) : 0.0;
    Tensor loss = ops::scale(ops::sum(r.losses), inv_count);
    autograd::record("cross_entropy", {logits, targets}, {loss},
                     [logits, targets, lse = r.logsumexp, inv_count, ignore_index](Grads& g, const std::vector<Tensor>& dy) {
                         Tensor dlosses = Tensor::full(targets.shape(), dy[0].item() * inv_count, logits.dtype(),
                                                       logits.device());
                         g.accumulate(logits, ops::cross_entropy_backward(logits, targets, lse, dlosses, ignore_index));
                     });
    return loss;
}

Tensor mse(const Tensor& prediction, const Tensor& target) {
    ops::detail::require_same_shape("mse", prediction, target);
    Tensor diff = ops::sub(prediction, target);
    double inv_n = prediction.numel() > 0 ? 1.0 / static_cast<double>(prediction.numel()) : 0.0;
    Tensor loss = ops::scale(ops::sum(ops::mul(diff, diff)), inv_n);
    autograd::record("mse", {prediction, target}, {loss},
                     [diff, rp = TensorRef(prediction), rt = TensorRef(target), inv_n](Grads& g, const std::vector<Tensor>& dy) {
                         Tensor dpred = ops::scale(diff, 2.0 * inv_n * dy[0].item());
                         g.accumulate(rp, dpred);
                         g.accumulate(rt, ops::scale(dpred, -1.0));
                     });
    return loss;
}

}  // namespace mp::fn
