// The two losses a pipeline can end in.
#include "pipeline/loss.h"

#include "autograd/functions.h"

namespace mp::pipeline {

LossFunction cross_entropy_loss(int ignore_index, int64_t vocab) {
    return LossFunction{
        "cross_entropy",
        [ignore_index, vocab](const Tensor& logits, const Tensor& targets) {
            return fn::cross_entropy(logits, targets, ignore_index, vocab);
        },
        [ignore_index](const Tensor& targets) {
            double counted = 0;
            for (int32_t t : targets.to_vector<int32_t>()) counted += (t != ignore_index);
            return counted;
        },
        [ignore_index, vocab](const Tensor& logits, const Tensor& targets, double seed) {
            return fn::cross_entropy_seeded(logits, targets, ignore_index, seed, vocab);
        }};
}

LossFunction mse_loss() {
    return LossFunction{"mse", [](const Tensor& prediction, const Tensor& target) { return fn::mse(prediction, target); },
                        [](const Tensor& target) { return static_cast<double>(target.numel()); },
                        nullptr};  // no seeded variant: the engine uses mean_loss
}

}  // namespace mp::pipeline
