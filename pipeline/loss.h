// The loss a pipeline's last stage applies to its output. A loss is a mean over some count of
// items (counted targets for cross-entropy, elements for MSE); the engine weights micro-batch m
// by count_m / Σ count so the gradients equal those of the mean over the whole global batch.
#pragma once

#include <functional>
#include <string>

#include "tensor/tensor.h"

namespace mp::pipeline {

struct LossFunction {
    std::string name;
    std::function<Tensor(const Tensor& output, const Tensor& targets)> mean_loss;  // differentiable
    std::function<double(const Tensor& targets)> count;  // items the mean is over
    // Optional: the same loss whose backward is done in the forward, for the known backward seed
    // (the micro-batch's weight); it may overwrite the output with its gradient (cross-entropy:
    // one pass over the logits, no second logits-sized buffer).
    std::function<Tensor(const Tensor& output, const Tensor& targets, double seed)> seeded_mean_loss;
};

// vocab >= 0 and smaller than the logits' last dimension: the columns past it are padding (no loss).
LossFunction cross_entropy_loss(int ignore_index = -100, int64_t vocab = -1);
LossFunction mse_loss();

}  // namespace mp::pipeline
