// Optimizers over a module's parameters (SGD with momentum, AdamW), the cosine learning-rate
// schedule with linear warm-up, and clipping by the global gradient norm. The updates are the
// fused kernels of kernels/optimizer.h with torch.optim's semantics, so runs match PyTorch.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace mp::nn {

class Optimizer {
  public:
    explicit Optimizer(std::vector<Tensor> parameters);
    virtual ~Optimizer() = default;
    // One update of every parameter that has a gradient; then the step count advances.
    virtual void step() = 0;
    // Drops every parameter's accumulated gradient.
    void zero_grad();
    void set_lr(double lr) { lr_ = lr; }
    double lr() const { return lr_; }
    int64_t steps_taken() const { return steps_; }
    const std::vector<Tensor>& parameters() const { return parameters_; }

    // ---- checkpoint support
    // The optimizer's type ("SGD", "AdamW"), recorded in checkpoints and checked on load.
    virtual std::string type_name() const = 0;
    // Per-parameter state: (kind, one tensor per parameter in parameters() order). The handles
    // share storage with the optimizer, so a checkpoint load copies into them in place. A slot
    // is undefined where the optimizer keeps no state (SGD without momentum).
    virtual std::vector<std::pair<std::string, std::vector<Tensor>>> state() const = 0;
    // Restores the step count on resume (AdamW's bias correction, SGD's first-step momentum).
    void set_steps_taken(int64_t steps);

  protected:
    std::vector<Tensor> parameters_;
    double lr_ = 0.0;
    int64_t steps_ = 0;
};

struct SGDOptions {
    double lr = 0.01;
    double momentum = 0.0;
    double weight_decay = 0.0;
};

class SGD : public Optimizer {
  public:
    SGD(std::vector<Tensor> parameters, SGDOptions options);
    void step() override;
    std::string type_name() const override { return "SGD"; }
    std::vector<std::pair<std::string, std::vector<Tensor>>> state() const override;

  private:
    SGDOptions options_;
    std::vector<Tensor> momentum_buffers_;
};

struct AdamWOptions {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.01;
};

class AdamW : public Optimizer {
  public:
    AdamW(std::vector<Tensor> parameters, AdamWOptions options);
    void step() override;
    std::string type_name() const override { return "AdamW"; }
    std::vector<std::pair<std::string, std::vector<Tensor>>> state() const override;
    // State per parameter (same order as parameters()), for checkpoints.
    const std::vector<Tensor>& exp_avg() const { return exp_avg_; }
    const std::vector<Tensor>& exp_avg_sq() const { return exp_avg_sq_; }

  private:
    AdamWOptions options_;
    std::vector<Tensor> exp_avg_, exp_avg_sq_;
};

// Learning rate at `step` (0-based): linear warm-up from max_lr/warmup_steps to max_lr over
// warmup_steps, then cosine decay to min_lr at total_steps (and min_lr after).
double cosine_lr(int64_t step, int64_t warmup_steps, int64_t total_steps, double max_lr, double min_lr);
// The same warm-up, then max_lr for good.
double constant_lr(int64_t step, int64_t warmup_steps, double max_lr);

// Scales every gradient by max_norm / norm when the global L2 norm exceeds max_norm (as
// torch.nn.utils.clip_grad_norm_, with its 1e-6 guard); returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor>& parameters, double max_norm);

}  // namespace mp::nn
