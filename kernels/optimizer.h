// Optimizer update kernels on flat buffers: one parameter tensor, its gradient and its state,
// all with n elements, updated in place with exactly torch.optim's SGD and AdamW formulas.
// defines: sgd_step, adamw_step (cpu:: for float and double; cuda:: for float), and
//          adamw_step_multi_tensor: a list of parameters in one call (one launch on CUDA)
#pragma once

#include <cstdint>

#include "kernels/common/stream.h"

// SGD (torch.optim.SGD, dampening 0, nesterov false), per element:
//   g = grad + weight_decay * param
//   if momentum != 0: buf = first_step ? g : momentum * buf + g;  g = buf
//   param -= lr * g
// momentum_buffer may be nullptr when momentum == 0 (it is then not touched).
//
// AdamW (torch.optim.AdamW, amsgrad false), per element, step >= 1 (1-based):
//   param *= 1 - lr * weight_decay
//   m = beta1 * m + (1 - beta1) * grad;  v = beta2 * v + (1 - beta2) * grad^2
//   param -= (lr / (1 - beta1^step)) * (m / (sqrt(v) / sqrt(1 - beta2^step) + eps))
// The bias corrections are computed once per call on the host in double, as PyTorch does.

namespace mp::kernels {
// One parameter of a multi-tensor AdamW step: its buffers, n elements each.
template <typename T>
struct AdamWBuffersOf {
    T* param;
    const T* grad;
    T* exp_avg;
    T* exp_avg_sq;
    int64_t n;
};
using AdamWBuffers = AdamWBuffersOf<float>;
}  // namespace mp::kernels

namespace mp::kernels::cpu {
template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buffer, int64_t n, double lr, double momentum, double weight_decay,
              bool first_step);
template <typename T>
void adamw_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t n, int64_t step, double lr, double beta1,
                double beta2, double eps, double weight_decay);
// adamw_step on each of `count` parameters in turn (the reference for the multi-tensor kernel).
template <typename T>
void adamw_step_multi_tensor(const AdamWBuffersOf<T>* tensors, int64_t count, int64_t step, double lr, double beta1,
                             double beta2, double eps, double weight_decay);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
void sgd_step(float* param, const float* grad, float* momentum_buffer, int64_t n, double lr, double momentum,
              double weight_decay, bool first_step, cudaStream_t stream);
void adamw_step(float* param, const float* grad, float* exp_avg, float* exp_avg_sq, int64_t n, int64_t step, double lr,
                double beta1, double beta2, double eps, double weight_decay, cudaStream_t stream);
// Every parameter of the list in one launch per 192 tensors; bitwise the same as adamw_step on each.
void adamw_step_multi_tensor(const AdamWBuffers* tensors, int64_t count, int64_t step, double lr, double beta1,
                             double beta2, double eps, double weight_decay, cudaStream_t stream);
}  // namespace mp::kernels::cuda
