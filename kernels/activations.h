// Activation kernels: ReLU and GELU (the tanh approximation of GPT-2 and PyTorch's
// approximate='tanh'), each forward and backward, elementwise over n contiguous values.
// defines: relu_forward, relu_backward, gelu_forward, gelu_backward (cpu:: for float, double and
//          bfloat16; cuda:: for float and bfloat16), gelu_forward_reference, gelu_backward_reference
//          (cpu::). bfloat16 is computed wide and rounded to nearest even once on store.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/bfloat16.h"
#include "kernels/common/stream.h"

namespace mp::kernels {
// GELU(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
constexpr double kGeluSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluCubic = 0.044715;
// The definition, in double (the CPU references evaluate it so and round once).
inline double gelu_in_double(double x) {
    return 0.5 * x * (1.0 + std::tanh(kGeluSqrt2OverPi * (x + kGeluCubic * x * x * x)));
}
}  // namespace mp::kernels

namespace mp::kernels::cpu {
// y = max(x, 0); NaN stays NaN.
template <typename T> void relu_forward(const T* x, T* y, int64_t n);
// dx = dy where x > 0, else 0 (the gradient at x = 0 is taken as 0, as in PyTorch).
template <typename T> void relu_backward(const T* x, const T* dy, T* dx, int64_t n);
// GELU and dx = dy * GELU'(x) (the analytic derivative of the tanh approximation). double and
// bfloat16 run the references; float runs a vectorized fast path (kernels/cpu/activations.cpp),
// equal to the reference within one float32 ulp plus the reference's own error where its 1 + tanh u
// cancels (tests/test_activations.cpp states the bound).
template <typename T> void gelu_forward(const T* x, T* y, int64_t n);
template <typename T> void gelu_backward(const T* x, const T* dy, T* dx, int64_t n);
// The definition evaluated in double with std::tanh and rounded once.
template <typename T> void gelu_forward_reference(const T* x, T* y, int64_t n);
template <typename T> void gelu_backward_reference(const T* x, const T* dy, T* dx, int64_t n);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
// float32; outputs must not overlap the inputs.
void relu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
void relu_backward(const float* x, const float* dy, float* dx, int64_t n, cudaStream_t stream);
void gelu_forward(const float* x, float* y, int64_t n, cudaStream_t stream);
void gelu_backward(const float* x, const float* dy, float* dx, int64_t n, cudaStream_t stream);
void relu_forward(const bfloat16* x, bfloat16* y, int64_t n, cudaStream_t stream);
void relu_backward(const bfloat16* x, const bfloat16* dy, bfloat16* dx, int64_t n, cudaStream_t stream);
void gelu_forward(const bfloat16* x, bfloat16* y, int64_t n, cudaStream_t stream);
void gelu_backward(const bfloat16* x, const bfloat16* dy, bfloat16* dx, int64_t n, cudaStream_t stream);
}  // namespace mp::kernels::cuda
