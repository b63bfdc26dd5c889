// Elementwise ops and reductions: argument checks, output (and CUDA workspace) allocation, and
// dispatch to kernels::cpu (float32, float64, bfloat16) or kernels::cuda (float32 and bfloat16; the
// reductions of bfloat16 run the float32 kernels on the widened tensor).
#include "tensor/ops/elementwise.h"

#include <algorithm>
#include <cmath>

#include "kernels/elementwise.h"
#include "tensor/ops/common.h"

namespace mp::ops {

namespace {

// The dtypes of the reductions: floating_on(device), less bfloat16 on CUDA (no kernel yet).
DTypes reduction_dtypes(Device device) {
    return device.is_cpu() ? kFloatingDTypes : DTypes{DType::Float32};
}

// The checks shared by add / sub / mul and axpy_: both defined, one device, float, one dtype.
void check_pair(const char* op, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
    detail::require_defined(op, a, a_name);
    detail::require_defined(op, b, b_name);
    detail::require_same_device(op, {&a, &b});
    detail::require_floating(op, a);
    detail::require_floating(op, b);
    detail::require_same_dtype(op, {&a, &b});
}

// An output like a, after the checks of a binary elementwise op.
Tensor binary_output(const char* op, const Tensor& a, const Tensor& b) {
    check_pair(op, a, "a", b, "b");
    detail::require_same_shape(op, a, b);
    return Tensor::empty(a.shape(), a.dtype(), a.device());
}

#if MP_CUDA
// Scratch memory for a CUDA reduction from the device's caching allocator; undefined (and a
// null pointer) when the kernel needs none.
Tensor cuda_workspace(size_t floats, Device device) {
    if (floats == 0) return Tensor();
    return Tensor::empty({static_cast<int64_t>(floats)}, DType::Float32, device);
}

float* data_or_null(const Tensor& workspace) { return workspace.defined() ? workspace.data<float>() : nullptr; }

// The sum over float32 CUDA tensors (one device) of their sums of squares: one multi-tensor
// reduction on the device, one value copied back (the one synchronisation).
double sum_of_squares_cuda(const std::vector<Tensor>& tensors) {
    const Device device = tensors[0].device();
    std::vector<const float*> pointers;
    std::vector<int64_t> sizes;
    for (const Tensor& t : tensors) pointers.push_back(t.data<float>()), sizes.push_back(t.numel());
    const int64_t count = static_cast<int64_t>(tensors.size());
    Tensor workspace = cuda_workspace(kernels::cuda::sum_squares_multi_tensor_workspace_floats(sizes.data(), count),
                                      device);
    Tensor total = Tensor::empty({1}, DType::Float32, device);
    kernels::cuda::sum_squares_multi_tensor(total.data<float>(), pointers.data(), sizes.data(), count,
                                            data_or_null(workspace), detail::stream_of(tensors[0]));
    return static_cast<double>(total.to_vector<float>()[0]);
}
#endif

}  // namespace

Tensor cast(const Tensor& x, DType dtype) {
    detail::require_defined("cast", x, "x");
    detail::require_floating("cast", x);
    MP_REQUIRE(detail::floating_on(x.device()).contains(dtype), "cast: ", x.describe(), " to ", dtype_name(dtype),
               ": on ", x.device().str(), " the floating dtypes are ", detail::floating_on(x.device()).names());
    if (x.dtype() == dtype) return x.clone();
    if (x.device().is_cpu()) return x.to(dtype);
    Tensor out = Tensor::empty(x.shape(), dtype, x.device());
    if (dtype == DType::BFloat16)
        MP_ON_CUDA(kernels::cuda::convert(out.data<bfloat16>(), x.data<float>(), x.numel(), detail::stream_of(x)));
    else
        MP_ON_CUDA(kernels::cuda::convert(out.data<float>(), x.data<bfloat16>(), x.numel(), detail::stream_of(x)));
    return out;
}

Tensor add(const Tensor& a, const Tensor& b) {
    Tensor out = binary_output("add", a, b);
    dispatch_floating("add", a.dtype(), detail::floating_on(a.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (a.device().is_cpu()) {
            kernels::cpu::add(out.data<T>(), a.data<T>(), b.data<T>(), a.numel());
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::add(out.data<T>(), a.data<T>(), b.data<T>(), a.numel(), detail::stream_of(a)));
        }
    });
    return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
    Tensor out = binary_output("sub", a, b);
    dispatch_floating("sub", a.dtype(), detail::floating_on(a.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (a.device().is_cpu()) {
            kernels::cpu::sub(out.data<T>(), a.data<T>(), b.data<T>(), a.numel());
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::sub(out.data<T>(), a.data<T>(), b.data<T>(), a.numel(), detail::stream_of(a)));
        }
    });
    return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
    Tensor out = binary_output("mul", a, b);
    dispatch_floating("mul", a.dtype(), detail::floating_on(a.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (a.device().is_cpu()) {
            kernels::cpu::mul(out.data<T>(), a.data<T>(), b.data<T>(), a.numel());
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::mul(out.data<T>(), a.data<T>(), b.data<T>(), a.numel(), detail::stream_of(a)));
        }
    });
    return out;
}

Tensor scale(const Tensor& x, double s) {
    detail::require_defined("scale", x, "x");
    detail::require_floating("scale", x);
    Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
    dispatch_floating("scale", x.dtype(), detail::floating_on(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (x.device().is_cpu()) {
            kernels::cpu::scale(out.data<T>(), x.data<T>(), x.numel(), s);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::scale(out.data<T>(), x.data<T>(), x.numel(), s, detail::stream_of(x)));
        }
    });
    return out;
}

void axpy_(Tensor& y, const Tensor& x, double alpha) {
    check_pair("axpy_", y, "y", x, "x");
    MP_REQUIRE(y.numel() == x.numel(), "axpy_: y has ", y.numel(), " elements ", shape_str(y.shape()), " but x has ",
               x.numel(), " ", shape_str(x.shape()));
    detail::require_same_shape("axpy_", y, x);
    dispatch_floating("axpy_", y.dtype(), detail::floating_on(y.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (y.device().is_cpu()) {
            kernels::cpu::axpy(y.data<T>(), x.data<T>(), y.numel(), alpha);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::axpy(y.data<T>(), x.data<T>(), y.numel(), alpha, detail::stream_of(y)));
        }
    });
}

Tensor bias_add(const Tensor& x, const Tensor& bias) {
    check_pair("bias_add", x, "x", bias, "bias");
    detail::require_rank_at_least("bias_add", x, 1, "x");
    const int64_t cols = detail::last_dim(x);
    MP_REQUIRE(bias.shape() == Shape{cols}, "bias_add: bias has shape ", shape_str(bias.shape()), ", expected (", cols,
               ") to match x ", shape_str(x.shape()));
    const int64_t rows = detail::rows_over_last_dim(x);
    Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
    dispatch_floating("bias_add", x.dtype(), detail::floating_on(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (x.device().is_cpu()) {
            kernels::cpu::bias_add(out.data<T>(), x.data<T>(), bias.data<T>(), rows, cols);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::bias_add(out.data<T>(), x.data<T>(), bias.data<T>(), rows, cols,
                                               detail::stream_of(x)));
        }
    });
    return out;
}

Tensor sum_rows(const Tensor& x) {
    detail::require_defined("sum_rows", x, "x");
    detail::require_floating("sum_rows", x);
    detail::require_rank_at_least("sum_rows", x, 1, "x");
    if (detail::bf16_through_float32(x)) return cast(sum_rows(cast(x, DType::Float32)), DType::BFloat16);
    const int64_t cols = detail::last_dim(x);
    const int64_t rows = detail::rows_over_last_dim(x);
    Tensor out = Tensor::empty({cols}, x.dtype(), x.device());
    dispatch_floating("sum_rows", x.dtype(), reduction_dtypes(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (x.device().is_cpu()) {
            kernels::cpu::sum_rows(out.data<T>(), x.data<T>(), rows, cols);
        } else if constexpr (std::is_same_v<T, float>) {
            MP_ON_CUDA(Tensor workspace =
                           cuda_workspace(kernels::cuda::sum_rows_workspace_floats(rows, cols), x.device());
                       kernels::cuda::sum_rows(out.data<float>(), x.data<float>(), rows, cols, data_or_null(workspace),
                                               detail::stream_of(x)));
        }
    });
    return out;
}

Tensor sum(const Tensor& x) {
    detail::require_defined("sum", x, "x");
    detail::require_floating("sum", x);
    if (detail::bf16_through_float32(x)) return cast(sum(cast(x, DType::Float32)), DType::BFloat16);
    Tensor out = Tensor::empty({}, x.dtype(), x.device());
    dispatch_floating("sum", x.dtype(), reduction_dtypes(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (x.device().is_cpu()) {
            kernels::cpu::sum(out.data<T>(), x.data<T>(), x.numel());
        } else if constexpr (std::is_same_v<T, float>) {
            MP_ON_CUDA(Tensor workspace = cuda_workspace(kernels::cuda::sum_workspace_floats(x.numel()), x.device());
                       kernels::cuda::sum(out.data<float>(), x.data<float>(), x.numel(), data_or_null(workspace),
                                          detail::stream_of(x)));
        }
    });
    return out;
}

double global_l2_norm(const std::vector<Tensor>& tensors) {
    if (tensors.empty()) return 0.0;
    for (size_t i = 0; i < tensors.size(); ++i) {
        MP_REQUIRE(tensors[i].defined(), "global_l2_norm: tensor ", i, " is an undefined tensor");
        detail::require_floating("global_l2_norm", tensors[i]);
        MP_REQUIRE(tensors[i].device() == tensors[0].device(), "global_l2_norm: tensors on different devices: tensor 0 is ",
                   tensors[0].describe(), ", tensor ", i, " is ", tensors[i].describe());
    }
    double total = 0.0;
    if (tensors[0].device().is_cpu()) {
        for (const Tensor& t : tensors) {
            dispatch_floating("global_l2_norm", t.dtype(), kFloatingDTypes, [&](auto tag) {
                using T = typename decltype(tag)::type;
                if constexpr (std::is_same_v<T, bfloat16>) {
                    // Not rounded to bfloat16's 8 bits: the norm of bfloat16 tensors is taken in float32.
                    float partial = 0;
                    const Tensor widened = t.to(DType::Float32);
                    kernels::cpu::sum_squares(&partial, widened.data<float>(), widened.numel());
                    total += partial;
                } else {
                    T partial = 0;
                    kernels::cpu::sum_squares(&partial, t.data<T>(), t.numel());
                    total += static_cast<double>(partial);
                }
            });
        }
    } else {
        // bfloat16 tensors through their float32 widening (no bfloat16 reduction kernel yet).
        std::vector<Tensor> widened;
        for (const Tensor& t : tensors) widened.push_back(t.dtype() == DType::Float32 ? t : cast(t, DType::Float32));
        MP_ON_CUDA(total = sum_of_squares_cuda(widened));
    }
    return std::sqrt(total);
}

void scale_(const std::vector<Tensor>& tensors, double s) {
    for (size_t i = 0; i < tensors.size(); ++i) {
        MP_REQUIRE(tensors[i].defined(), "scale_: tensor ", i, " is an undefined tensor");
        detail::require_floating("scale_", tensors[i]);
    }
    std::vector<const Tensor*> on_cuda;
    for (const Tensor& t : tensors) {
        if (!t.device().is_cpu() && t.dtype() == DType::Float32) {
            on_cuda.push_back(&t);
            continue;
        }
        Tensor scaled = scale(t, s);
        Tensor target = t;  // the handle shares storage: written in place
        target.copy_from(scaled);
    }
    if (on_cuda.empty()) return;
    for (const Tensor* t : on_cuda)
        MP_REQUIRE(t->device() == on_cuda[0]->device(), "scale_: float32 CUDA tensors on different devices: ",
                   on_cuda[0]->describe(), " and ", t->describe());
    std::vector<float*> pointers;
    std::vector<int64_t> sizes;
    for (const Tensor* t : on_cuda) pointers.push_back(t->data<float>()), sizes.push_back(t->numel());
    MP_ON_CUDA(kernels::cuda::scale_multi_tensor(pointers.data(), sizes.data(), static_cast<int64_t>(sizes.size()), s,
                                                 detail::stream_of(*on_cuda[0])));
}

Tensor broadcast_scalar(const Tensor& scalar, const Shape& shape) {
    detail::require_defined("broadcast_scalar", scalar, "scalar");
    MP_REQUIRE(scalar.numel() == 1, "broadcast_scalar: needs a one-element tensor, got ", scalar.describe());
    // Composed from bias_add: zeros (..., 1) + the value as a one-column bias row. 0 + v = v exactly
    // (for v = -0 it gives +0, which no use of this op can tell apart).
    Shape column = shape;
    column.push_back(1);
    Tensor zeros = Tensor::zeros(column, scalar.dtype(), scalar.device());
    return bias_add(zeros, scalar.reshape({1})).reshape(shape);
}

}  // namespace mp::ops
