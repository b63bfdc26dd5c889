// Activation ops: argument checks, output allocation and CPU/CUDA dispatch for ReLU and GELU
// (float32 and bfloat16; float64 on the CPU).
#include "tensor/ops/activations.h"

#include "kernels/activations.h"
#include "tensor/ops/common.h"

namespace mp::ops {

namespace {

void check_forward(const char* op, const Tensor& x) {
    detail::require_defined(op, x, "x");
    detail::require_floating(op, x);
}

void check_backward(const char* op, const Tensor& x, const Tensor& dy) {
    detail::require_defined(op, x, "x");
    detail::require_defined(op, dy, "dy");
    detail::require_floating(op, x);
    detail::require_same_device(op, {&x, &dy});
    detail::require_same_dtype(op, {&x, &dy});
    detail::require_same_shape(op, x, dy);
}

}  // namespace

Tensor relu(const Tensor& x) {
    check_forward("relu", x);
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    dispatch_floating("relu", x.dtype(), detail::floating_on(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (x.device().is_cpu()) {
            kernels::cpu::relu_forward(x.data<T>(), y.data<T>(), x.numel());
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::relu_forward(x.data<T>(), y.data<T>(), x.numel(), detail::stream_of(x)));
        }
    });
    return y;
}

Tensor relu_backward(const Tensor& x, const Tensor& dy) {
    check_backward("relu_backward", x, dy);
    Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    dispatch_floating("relu_backward", x.dtype(), detail::floating_on(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (x.device().is_cpu()) {
            kernels::cpu::relu_backward(x.data<T>(), dy.data<T>(), dx.data<T>(), x.numel());
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::relu_backward(x.data<T>(), dy.data<T>(), dx.data<T>(), x.numel(),
                                                    detail::stream_of(x)));
        }
    });
    return dx;
}

Tensor gelu(const Tensor& x) {
    check_forward("gelu", x);
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    dispatch_floating("gelu", x.dtype(), detail::floating_on(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (x.device().is_cpu()) {
            kernels::cpu::gelu_forward(x.data<T>(), y.data<T>(), x.numel());
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::gelu_forward(x.data<T>(), y.data<T>(), x.numel(), detail::stream_of(x)));
        }
    });
    return y;
}

Tensor gelu_backward(const Tensor& x, const Tensor& dy) {
    check_backward("gelu_backward", x, dy);
    Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    dispatch_floating("gelu_backward", x.dtype(), detail::floating_on(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (x.device().is_cpu()) {
            kernels::cpu::gelu_backward(x.data<T>(), dy.data<T>(), dx.data<T>(), x.numel());
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::gelu_backward(x.data<T>(), dy.data<T>(), dx.data<T>(), x.numel(),
                                                    detail::stream_of(x)));
        }
    });
    return dx;
}

}  // namespace mp::ops
