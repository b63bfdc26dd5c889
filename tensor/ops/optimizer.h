// Optimizer steps as tensor ops: update one parameter tensor and its state in place from its
// gradient, with torch.optim's SGD and AdamW semantics (kernels/optimizer.h has the formulas).
// The gradient and every state buffer must have the parameter's element count, dtype and device.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace mp::ops {

// torch.optim.SGD (dampening 0, nesterov false). momentum_buffer may be undefined when
// momentum == 0 (and is ignored then); otherwise it holds param's numel. On first_step the buffer
// is overwritten with the (weight-decayed) gradient, as PyTorch creates it on the first step.
// Requires lr >= 0, momentum >= 0, weight_decay >= 0.
void sgd_step_(Tensor& param, const Tensor& grad, Tensor& momentum_buffer, double lr, double momentum,
               double weight_decay, bool first_step);

// torch.optim.AdamW (amsgrad false). step counts from 1 (the first update is step 1); exp_avg and
// exp_avg_sq start as zeros. Requires lr >= 0, 0 <= beta1, beta2 < 1, eps > 0, weight_decay >= 0.
void adamw_step_(Tensor& param, const Tensor& grad, Tensor& exp_avg, Tensor& exp_avg_sq, int64_t step, double lr,
                 double beta1, double beta2, double eps, double weight_decay);
// The same step for lists of parameters (entry i of every list belongs to params[i], checked as
// above, naming i). The float32 CUDA parameters (one device) are updated in one multi-tensor
// launch, bitwise as one adamw_step_ each; the others one at a time.
void adamw_step_(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                 const std::vector<Tensor>& exp_avgs, const std::vector<Tensor>& exp_avg_sqs, int64_t step, double lr,
                 double beta1, double beta2, double eps, double weight_decay);

}  // namespace mp::ops
