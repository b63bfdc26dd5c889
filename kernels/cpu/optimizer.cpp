// CPU reference for the optimizer updates: one plain loop per optimizer, the formulas of
// kernels/optimizer.h written out in T, with the per-step scalars computed once in double.
// Elementwise, so vectorized (`omp simd`: the same arithmetic per element) and threaded only
// where a tensor is large enough to pay for waking the pool.
#include "kernels/optimizer.h"

#include <cmath>

#include "kernels/cpu/parallel.h"

namespace mp::kernels::cpu {

template <typename T>
void sgd_step(T* param, const T* grad, T* momentum_buffer, int64_t n, double lr, double momentum, double weight_decay,
              bool first_step) {
    const bool has_momentum = momentum != 0.0;
    const T lr_t = static_cast<T>(lr);
    const T momentum_t = static_cast<T>(momentum);
    const T weight_decay_t = static_cast<T>(weight_decay);
#pragma omp parallel for simd if (n >= kMinParallelElements)
    for (int64_t i = 0; i < n; ++i) {
        T update = grad[i] + weight_decay_t * param[i];
        if (has_momentum) {
            momentum_buffer[i] = first_step ? update : momentum_t * momentum_buffer[i] + update;
            update = momentum_buffer[i];
        }
        param[i] = param[i] - lr_t * update;
    }
}

template <typename T>
void adamw_step(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, int64_t n, int64_t step, double lr, double beta1,
                double beta2, double eps, double weight_decay) {
    const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(step));
    const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(step));
    const T decay_factor = static_cast<T>(1.0 - lr * weight_decay);
    const T beta1_t = static_cast<T>(beta1);
    const T one_minus_beta1 = static_cast<T>(1.0 - beta1);
    const T beta2_t = static_cast<T>(beta2);
    const T one_minus_beta2 = static_cast<T>(1.0 - beta2);
    const T step_size = static_cast<T>(lr / bias_correction1);
    const T bias_correction2_sqrt = static_cast<T>(std::sqrt(bias_correction2));
    const T eps_t = static_cast<T>(eps);
#pragma omp parallel for simd if (n >= kMinParallelElements)
    for (int64_t i = 0; i < n; ++i) {
        const T g = grad[i];
        param[i] = param[i] * decay_factor;
        exp_avg[i] = beta1_t * exp_avg[i] + one_minus_beta1 * g;
        exp_avg_sq[i] = beta2_t * exp_avg_sq[i] + one_minus_beta2 * (g * g);
        const T denom = std::sqrt(exp_avg_sq[i]) / bias_correction2_sqrt + eps_t;
        param[i] = param[i] - step_size * (exp_avg[i] / denom);
    }
}

template <typename T>
void adamw_step_multi_tensor(const AdamWBuffersOf<T>* tensors, int64_t count, int64_t step, double lr, double beta1,
                             double beta2, double eps, double weight_decay) {
    for (int64_t i = 0; i < count; ++i)
        adamw_step(tensors[i].param, tensors[i].grad, tensors[i].exp_avg, tensors[i].exp_avg_sq, tensors[i].n, step, lr,
                   beta1, beta2, eps, weight_decay);
}

template void sgd_step<float>(float*, const float*, float*, int64_t, double, double, double, bool);
template void sgd_step<double>(double*, const double*, double*, int64_t, double, double, double, bool);
template void adamw_step<float>(float*, const float*, float*, float*, int64_t, int64_t, double, double, double, double,
                                double);
template void adamw_step<double>(double*, const double*, double*, double*, int64_t, int64_t, double, double, double,
                                 double, double);

template void adamw_step_multi_tensor<float>(const AdamWBuffersOf<float>*, int64_t, int64_t, double, double, double,
                                             double, double);
template void adamw_step_multi_tensor<double>(const AdamWBuffersOf<double>*, int64_t, int64_t, double, double, double,
                                              double, double);

}  // namespace mp::kernels::cpu
