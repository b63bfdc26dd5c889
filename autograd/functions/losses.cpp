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
    // The mean is over counted rows; the weight 1 / count is computed where the targets are, so
    // neither direction makes the host wait for the device.
    Tensor mean_weight =
        ops::cross_entropy_mean_weight(targets, ignore_index, ops::cross_entropy_statistics_dtype(logits.dtype()));
    Tensor loss = ops::mul(ops::sum(r.losses), mean_weight);
    autograd::record("cross_entropy", {logits, targets}, {loss},
                     [logits, targets, lse = r.logsumexp, mean_weight, ignore_index](Grads& g, const std::vector<Tensor>& dy) {
                         Tensor dlosses = ops::broadcast_scalar(ops::mul(dy[0], mean_weight), targets.shape());
                         g.accumulate(logits, ops::cross_entropy_backward(logits, targets, lse, dlosses, ignore_index));
                     });
    return loss;
}

Tensor cross_entropy_seeded(const Tensor& logits, const Tensor& targets, int ignore_index, double seed,
                            int64_t vocab) {
    const bool recording = autograd::is_recording();
    Tensor mean_weight =
        ops::cross_entropy_mean_weight(targets, ignore_index, ops::cross_entropy_statistics_dtype(logits.dtype()));
    Tensor buffer = logits;  // the handle shares storage: with a tape, the gradient is written over the logits
    Tensor losses = ops::cross_entropy_fused_(buffer, targets, ignore_index, vocab < 0 ? logits.shape().back() : vocab,
                                              seed, mean_weight, recording);
    Tensor loss = ops::mul(ops::sum(losses), mean_weight);
    autograd::record("cross_entropy_seeded", {logits, targets}, {loss},
                     [dlogits = buffer, seed](Grads& g, const std::vector<Tensor>& dy) {
                         if (dy[0].device().is_cpu()) {
                             const double given = dy[0].item();
                             const double expected = Tensor::full({}, seed, dy[0].dtype()).item();  // in its dtype
                             MP_REQUIRE(given == expected, "cross_entropy_seeded: the backward seed is ", given,
                                        " but the gradient was computed in the forward for seed ", expected);
                         }
                         g.accumulate(dlogits, dlogits);
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
                         // dy stays on the device: no host wait for its value.
                         Tensor dpred = ops::mul(ops::scale(diff, 2.0 * inv_n), ops::broadcast_scalar(dy[0], diff.shape()));
                         g.accumulate(rp, dpred);
                         g.accumulate(rt, ops::scale(dpred, -1.0));
                     });
    return loss;
}

}  // namespace mp::fn
