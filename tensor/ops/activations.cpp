// Activation ops: argument checks, output allocation and CPU/CUDA dispatch for ReLU and GELU.
#include "tensor/ops/activations.h"

#include "kernels/activations.h"
#include "tensor/ops/common.h"

namespace mp::ops {

namespace {

void check_forward(const char* op, const Tensor& x) {
    detail::require_defined(op, x, "x");
    detail::require_float(op, x);
}

void check_backward(const char* op, const Tensor& x, const Tensor& dy) {
    detail::require_defined(op, x, "x");
    detail::require_defined(op, dy, "dy");
    detail::require_float(op, x);
    detail::require_same_device(op, {&x, &dy});
    detail::require_same_dtype(op, {&x, &dy});
    detail::require_same_shape(op, x, dy);
}

}  // namespace

Tensor relu(const Tensor& x) {
    check_forward("relu", x);
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (x.device().is_cpu()) {
        if (x.dtype() == DType::Float64)
            kernels::cpu::relu_forward(x.data<double>(), y.data<double>(), x.numel());
        else
            kernels::cpu::relu_forward(x.data<float>(), y.data<float>(), x.numel());
    } else {
        MP_ON_CUDA(kernels::cuda::relu_forward(x.data<float>(), y.data<float>(), x.numel(), detail::stream_of(x)));
    }
    return y;
}

Tensor relu_backward(const Tensor& x, const Tensor& dy) {
    check_backward("relu_backward", x, dy);
    Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (x.device().is_cpu()) {
        if (x.dtype() == DType::Float64)
            kernels::cpu::relu_backward(x.data<double>(), dy.data<double>(), dx.data<double>(), x.numel());
        else
            kernels::cpu::relu_backward(x.data<float>(), dy.data<float>(), dx.data<float>(), x.numel());
    } else {
        MP_ON_CUDA(kernels::cuda::relu_backward(x.data<float>(), dy.data<float>(), dx.data<float>(), x.numel(),
                                                detail::stream_of(x)));
    }
    return dx;
}

Tensor gelu(const Tensor& x) {
    check_forward("gelu", x);
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (x.device().is_cpu()) {
        if (x.dtype() == DType::Float64)
            kernels::cpu::gelu_forward(x.data<double>(), y.data<double>(), x.numel());
        else
            kernels::cpu::gelu_forward(x.data<float>(), y.data<float>(), x.numel());
    } else {
        MP_ON_CUDA(kernels::cuda::gelu_forward(x.data<float>(), y.data<float>(), x.numel(), detail::stream_of(x)));
    }
    return y;
}

Tensor gelu_backward(const Tensor& x, const Tensor& dy) {
    check_backward("gelu_backward", x, dy);
    Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (x.device().is_cpu()) {
        if (x.dtype() == DType::Float64)
            kernels::cpu::gelu_backward(x.data<double>(), dy.data<double>(), dx.data<double>(), x.numel());
        else
            kernels::cpu::gelu_backward(x.data<float>(), dy.data<float>(), dx.data<float>(), x.numel());
    } else {
        MP_ON_CUDA(kernels::cuda::gelu_backward(x.data<float>(), dy.data<float>(), dx.data<float>(), x.numel(),
                                                detail::stream_of(x)));
    }
    return dx;
}

}  // namespace mp::ops
