// CPU kernels for the activations. The references are plain elementwise loops; GELU's reference is
// evaluated in double straight from its definition, so its float instantiation is the correctly
// rounded value (bfloat16: rounded to float32, then to nearest even). float32 GELU, the one a
// float32 model spends its time in, takes a vectorized fast path tested against that reference.
#include <type_traits>

#include "kernels/common/bfloat16.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/simd_math.h"

#include "kernels/activations.h"

namespace mp::kernels::cpu {

template <typename T>
void relu_forward(const T* x, T* y, int64_t n) {
#pragma omp parallel for if (n >= kMinParallelElements)
    for (int64_t i = 0; i < n; ++i) y[i] = element_to_double(x[i]) < 0.0 ? element_from_double<T>(0.0) : x[i];
}

template <typename T>
void relu_backward(const T* x, const T* dy, T* dx, int64_t n) {
#pragma omp parallel for if (n >= kMinParallelElements)
    for (int64_t i = 0; i < n; ++i) dx[i] = element_to_double(x[i]) > 0.0 ? dy[i] : element_from_double<T>(0.0);
}

template <typename T>
void gelu_forward_reference(const T* x, T* y, int64_t n) {
#pragma omp parallel for if (n >= kMinParallelElements)
    for (int64_t i = 0; i < n; ++i) y[i] = element_from_double<T>(gelu_in_double(element_to_double(x[i])));
}

template <typename T>
void gelu_backward_reference(const T* x, const T* dy, T* dx, int64_t n) {
#pragma omp parallel for if (n >= kMinParallelElements)
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

namespace {

// The float32 fast path over one span: the same definition in double, with GELU's tanh factor
// taken as a sigmoid of e^{-2|u|} (simd_math.h), vectorized. It differs from the reference only
// where the reference's 1 + tanh u cancels (x < -4: the fast path is the more accurate there) and
// by one float32 ulp on the rare value within ~1e-15 of a rounding midpoint.
MP_SIMD_CLONES void gelu_forward_span(const float* x, float* y, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        const double v = x[i];
        y[i] = static_cast<float>(v * simd::gelu_sigmoid_vectorizable(v, kGeluSqrt2OverPi, kGeluCubic).s);
    }
}

// GELU'(x) = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx = s + 2 x s (1 - s) du/dx.
MP_SIMD_CLONES void gelu_backward_span(const float* x, const float* dy, float* dx, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        const double v = x[i];
        const simd::GeluSigmoid sig = simd::gelu_sigmoid_vectorizable(v, kGeluSqrt2OverPi, kGeluCubic);
        const double du_dx = kGeluSqrt2OverPi * (1.0 + 3.0 * kGeluCubic * v * v);
        const double slope = sig.s + 2.0 * v * sig.s_times_one_minus_s * du_dx;
        dx[i] = static_cast<float>(static_cast<double>(dy[i]) * slope);
    }
}

}  // namespace

template <typename T>
void gelu_forward(const T* x, T* y, int64_t n) {
    if constexpr (std::is_same_v<T, float>) {
        for_each_span(n, [&](int64_t begin, int64_t end) { gelu_forward_span(x + begin, y + begin, end - begin); });
    } else {
        gelu_forward_reference(x, y, n);
    }
}

template <typename T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n) {
    if constexpr (std::is_same_v<T, float>) {
        for_each_span(n, [&](int64_t begin, int64_t end) {
            gelu_backward_span(x + begin, dy + begin, dx + begin, end - begin);
        });
    } else {
        gelu_backward_reference(x, dy, dx, n);
    }
}

template void relu_forward<float>(const float*, float*, int64_t);
template void relu_backward<float>(const float*, const float*, float*, int64_t);
template void gelu_forward<float>(const float*, float*, int64_t);
template void gelu_backward<float>(const float*, const float*, float*, int64_t);
template void gelu_forward_reference<float>(const float*, float*, int64_t);
template void gelu_backward_reference<float>(const float*, const float*, float*, int64_t);
template void relu_forward<double>(const double*, double*, int64_t);
template void relu_backward<double>(const double*, const double*, double*, int64_t);
template void gelu_forward<double>(const double*, double*, int64_t);
template void gelu_backward<double>(const double*, const double*, double*, int64_t);
template void gelu_forward_reference<double>(const double*, double*, int64_t);
template void gelu_backward_reference<double>(const double*, const double*, double*, int64_t);
template void relu_forward<bfloat16>(const bfloat16*, bfloat16*, int64_t);
template void relu_backward<bfloat16>(const bfloat16*, const bfloat16*, bfloat16*, int64_t);
template void gelu_forward<bfloat16>(const bfloat16*, bfloat16*, int64_t);
template void gelu_backward<bfloat16>(const bfloat16*, const bfloat16*, bfloat16*, int64_t);
template void gelu_forward_reference<bfloat16>(const bfloat16*, bfloat16*, int64_t);
template void gelu_backward_reference<bfloat16>(const bfloat16*, const bfloat16*, bfloat16*, int64_t);

}  // namespace mp::kernels::cpu
