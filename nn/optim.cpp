// Optimizer implementations, the learning-rate schedule and gradient clipping.
#include "nn/optim.h"

#include <cmath>

#include "autograd/tape.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/optimizer.h"

namespace mp::nn {

Optimizer::Optimizer(std::vector<Tensor> parameters) : parameters_(std::move(parameters)) {
    for (const Tensor& p : parameters_)
        MP_REQUIRE(autograd::is_parameter(p), "Optimizer: ", p.describe(), " is not a parameter");
}

void Optimizer::zero_grad() {
    for (const Tensor& p : parameters_) autograd::zero_grad(p);
}

void Optimizer::set_steps_taken(int64_t steps) {
    MP_REQUIRE(steps >= 0, type_name(), "::set_steps_taken: steps must be >= 0, got ", steps);
    steps_ = steps;
}

std::vector<std::pair<std::string, std::vector<Tensor>>> SGD::state() const {
    return {{"momentum_buffer", momentum_buffers_}};
}

std::vector<std::pair<std::string, std::vector<Tensor>>> AdamW::state() const {
    return {{"exp_avg", exp_avg_}, {"exp_avg_sq", exp_avg_sq_}};
}

SGD::SGD(std::vector<Tensor> parameters, SGDOptions options) : Optimizer(std::move(parameters)), options_(options) {
    lr_ = options.lr;
    for (const Tensor& p : parameters_)
        momentum_buffers_.push_back(options.momentum != 0.0 ? Tensor::zeros(p.shape(), p.dtype(), p.device()) : Tensor());
}

void SGD::step() {
    for (size_t i = 0; i < parameters_.size(); ++i) {
        Tensor grad = autograd::grad_of(parameters_[i]);
        if (!grad.defined()) continue;
        ops::sgd_step_(parameters_[i], grad, momentum_buffers_[i], lr_, options_.momentum, options_.weight_decay,
                       steps_ == 0);
    }
    ++steps_;
}

AdamW::AdamW(std::vector<Tensor> parameters, AdamWOptions options)
    : Optimizer(std::move(parameters)), options_(options) {
    lr_ = options.lr;
    for (const Tensor& p : parameters_) {
        exp_avg_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
        exp_avg_sq_.push_back(Tensor::zeros(p.shape(), p.dtype(), p.device()));
    }
}

void AdamW::step() {
    ++steps_;
    // Every parameter with a gradient in one call: one kernel launch on a GPU.
    std::vector<Tensor> params, grads, exp_avgs, exp_avg_sqs;
    for (size_t i = 0; i < parameters_.size(); ++i) {
        Tensor grad = autograd::grad_of(parameters_[i]);
        if (!grad.defined()) continue;
        params.push_back(parameters_[i]);
        grads.push_back(grad);
        exp_avgs.push_back(exp_avg_[i]);
        exp_avg_sqs.push_back(exp_avg_sq_[i]);
    }
    ops::adamw_step_(params, grads, exp_avgs, exp_avg_sqs, steps_, lr_, options_.beta1, options_.beta2, options_.eps,
                     options_.weight_decay);
}

double cosine_lr(int64_t step, int64_t warmup_steps, int64_t total_steps, double max_lr, double min_lr) {
    MP_REQUIRE(warmup_steps >= 0 && total_steps >= 1, "cosine_lr: warmup_steps ", warmup_steps, " and total_steps ",
               total_steps, " must be >= 0 and >= 1");
    if (step < warmup_steps) return max_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    if (step >= total_steps) return min_lr;
    double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

double constant_lr(int64_t step, int64_t warmup_steps, double max_lr) {
    MP_REQUIRE(warmup_steps >= 0, "constant_lr: warmup_steps must be >= 0, got ", warmup_steps);
    if (step < warmup_steps) return max_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    return max_lr;
}

double clip_grad_norm(const std::vector<Tensor>& parameters, double max_norm) {
    MP_REQUIRE(max_norm > 0, "clip_grad_norm: max_norm must be positive, got ", max_norm);
    std::vector<Tensor> grads;
    for (const Tensor& p : parameters) {
        Tensor g = autograd::grad_of(p);
        if (g.defined()) grads.push_back(g);
    }
    double norm = ops::global_l2_norm(grads);
    double coefficient = max_norm / (norm + 1e-6);
    if (coefficient < 1.0) ops::scale_(grads, coefficient);  // in place: the slots keep their tensors
    return norm;
}

}  // namespace mp::nn
