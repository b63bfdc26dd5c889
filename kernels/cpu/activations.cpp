// CPU reference for the activation kernels: plain elementwise loops. GELU is evaluated in
// double straight from its definition, so the float instantiation is the correctly rounded value
// (bfloat16: rounded to float32, then to nearest even).
#include <cmath>

#include "kernels/common/bfloat16.h"

#include "kernels/activations.h"

namespace mp::kernels::cpu {

template <typename T>
void relu_forward(const T* x, T* y, int64_t n) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) y[i] = element_to_double(x[i]) < 0.0 ? element_from_double<T>(0.0) : x[i];
}

template <typename T>
void relu_backward(const T* x, const T* dy, T* dx, int64_t n) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) dx[i] = element_to_double(x[i]) > 0.0 ? dy[i] : element_from_double<T>(0.0);
}

template <typename T>
void gelu_forward(const T* x, T* y, int64_t n) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) y[i] = element_from_double<T>(gelu_in_double(element_to_double(x[i])));
}

template <typename T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n) {
#pragma omp parallel for
    for (int64_t i = 0; i < n; ++i) {
        double v = element_to_double(x[i]);
        double u = kGeluSqrt2OverPi * (v + kGeluCubic * v * v * v);
        double tanh_u = std::tanh(u);
        double du_dx = kGeluSqrt2OverPi * (1.0 + 3.0 * kGeluCubic * v * v);
        // d/dx [0.5 x (1 + tanh u)] = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx
        double slope = 0.5 * (1.0 + tanh_u) + 0.5 * v * (1.0 - tanh_u * tanh_u) * du_dx;
        dx[i] = element_from_double<T>(element_to_double(dy[i]) * slope);
    }
}

template void relu_forward<float>(const float*, float*, int64_t);
template void relu_forward<double>(const double*, double*, int64_t);
template void relu_backward<float>(const float*, const float*, float*, int64_t);
template void relu_backward<double>(const double*, const double*, double*, int64_t);
template void gelu_forward<float>(const float*, float*, int64_t);
template void gelu_forward<double>(const double*, double*, int64_t);
template void gelu_backward<float>(const float*, const float*, float*, int64_t);
template void gelu_backward<double>(const double*, const double*, double*, int64_t);
template void relu_forward<bfloat16>(const bfloat16*, bfloat16*, int64_t);
template void relu_backward<bfloat16>(const bfloat16*, const bfloat16*, bfloat16*, int64_t);
template void gelu_forward<bfloat16>(const bfloat16*, bfloat16*, int64_t);
template void gelu_backward<bfloat16>(const bfloat16*, const bfloat16*, bfloat16*, int64_t);

}  // namespace mp::kernels::cpu
