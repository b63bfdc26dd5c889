// Differentiable losses reducing to a scalar mean: cross-entropy (fused with the softmax, with
// an ignore index) and mean squared error.
#include "autograd/functions.h"
#include "tensor/ops/common.h"
#include "tensor/ops/cross_entropy.h"
#include "tensor/ops/elementwise.h"

namespace mp::fn {

using autograd::Grads;
using autograd::TensorRef;

namespace {

// The loss's dlosses for every row: the backward seed times the mean weight, on the device.
Tensor row_dloss(const Tensor& seed, const Tensor& mean_weight) { return ops::mul(seed, mean_weight); }

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index, int64_t vocab) {
    const DType statistics = ops::cross_entropy_statistics_dtype(logits.dtype());
    // The mean is over counted rows; the weight 1 / count is computed where the targets are, so
    // neither direction makes the host wait for the device.
    Tensor mean_weight = ops::cross_entropy_mean_weight(targets, ignore_index, statistics);
    if (vocab < 0 || (logits.dim() > 0 && vocab == logits.shape().back())) {
        ops::CrossEntropyResult r = ops::cross_entropy_forward(logits, targets, ignore_index);
        Tensor loss = ops::mul(ops::sum(r.losses), mean_weight);
        autograd::record("cross_entropy", {logits, targets}, {loss},
                         [logits, targets, lse = r.logsumexp, mean_weight, ignore_index](
                             Grads& g, const std::vector<Tensor>& dy) {
                             Tensor dlosses = ops::broadcast_scalar(row_dloss(dy[0], mean_weight), targets.shape());
                             g.accumulate(logits,
                                          ops::cross_entropy_backward(logits, targets, lse, dlosses, ignore_index));
                         });
        return loss;
    }
    // Padded rows: the one-pass kernel, the forward leaving the logits alone and the backward
    // writing the gradient over a copy.
    Tensor untouched = logits;
    Tensor loss = ops::mul(ops::sum(ops::cross_entropy_fused_(untouched, targets, ignore_index, vocab, Tensor())),
                           mean_weight);
    autograd::record("cross_entropy", {logits, targets}, {loss},
                     [logits, targets, mean_weight, ignore_index, vocab](Grads& g, const std::vector<Tensor>& dy) {
                         Tensor dlogits = logits.clone();
                         ops::cross_entropy_fused_(dlogits, targets, ignore_index, vocab,
                                                   row_dloss(dy[0], mean_weight));
                         g.accumulate(logits, dlogits);
                     });
    return loss;
}

Tensor cross_entropy_seeded(const Tensor& logits, const Tensor& targets, int ignore_index, double seed,
                            int64_t vocab) {
    const DType statistics = ops::cross_entropy_statistics_dtype(logits.dtype());
    Tensor mean_weight = ops::cross_entropy_mean_weight(targets, ignore_index, statistics);
    const Tensor seed_tensor = Tensor::full({}, seed, statistics, logits.device());
    // With a tape the gradient is written over the logits (the handle shares their storage).
    Tensor buffer = logits;
    Tensor losses = ops::cross_entropy_fused_(buffer, targets, ignore_index, vocab < 0 ? logits.shape().back() : vocab,
                                              autograd::is_recording() ? row_dloss(seed_tensor, mean_weight) : Tensor());
    Tensor loss = ops::mul(ops::sum(losses), mean_weight);
    autograd::record("cross_entropy_seeded", {logits, targets}, {loss},
                     [dlogits = buffer, seed_tensor](Grads& g, const std::vector<Tensor>& dy) {
                         if (dy[0].device().is_cpu()) {  // free to check here; on a GPU it would wait
                             const double given = dy[0].item(), expected = seed_tensor.item();
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
