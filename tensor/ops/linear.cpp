// The linear ops: shape checks naming the tensors, then the fused kernels (kernels/linear.h) —
// on CUDA cuBLASLt's epilogues, falling back to GEMM + bias + GELU kernels when cuBLASLt has no
// algorithm for the shapes — and the in-place gradient accumulation.
#include "tensor/ops/linear.h"

#include "kernels/linear.h"
#include "tensor/ops/activations.h"
#include "tensor/ops/common.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/gemm.h"

namespace mp::ops {

namespace {

void check_linear(const char* op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
    detail::require_defined(op, x, "x");
    detail::require_defined(op, weight, "weight");
    detail::require_floating(op, x);
    detail::require_rank_at_least(op, x, 1, "x");
    MP_REQUIRE(weight.dim() == 2, op, ": weight must be (out, in), got ", weight.describe());
    MP_REQUIRE(detail::last_dim(x) == weight.size(1), op, ": x ", x.describe(), " has ", detail::last_dim(x),
               " features but weight ", weight.describe(), " takes ", weight.size(1));
    detail::require_same_dtype(op, {&x, &weight});
    detail::require_same_device(op, {&x, &weight});
    if (bias.defined()) {
        MP_REQUIRE(bias.dim() == 1 && bias.size(0) == weight.size(0), op, ": bias ", bias.describe(),
                   " must be (", weight.size(0), ") to match weight ", weight.describe());
        detail::require_same_dtype(op, {&x, &bias});
        detail::require_same_device(op, {&x, &bias});
    }
}

Shape output_shape(const Tensor& x, int64_t out) {
    Shape shape = x.shape();
    shape.back() = out;
    return shape;
}

[[maybe_unused]] bool allow_tf32() { return matmul_precision() == MatmulPrecision::TF32; }

// y (and pre for BiasGelu) from the fused kernel; false when CUDA's cuBLASLt declined.
bool run_fused(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, Tensor* pre,
               kernels::LinearEpilogue epilogue) {
    const int64_t rows = detail::rows_over_last_dim(x), in = weight.size(1), out = weight.size(0);
    bool done = false;
    dispatch_floating("linear", x.dtype(), detail::floating_on(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        const T* b = bias.defined() ? bias.data<T>() : nullptr;
        T* pre_data = pre != nullptr ? pre->data<T>() : nullptr;
        if (x.device().is_cpu()) {
            kernels::cpu::linear_forward(x.data<T>(), weight.data<T>(), b, y.data<T>(), pre_data, rows, in, out,
                                         epilogue);
            done = true;
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(done = kernels::cuda::linear_forward(x.data<T>(), weight.data<T>(), b, y.data<T>(), pre_data,
                                                            rows, in, out, epilogue, allow_tf32(),
                                                            detail::stream_of(x)));
        }
    });
    return done;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    check_linear("linear", x, weight, bias);
    Tensor y = Tensor::empty(output_shape(x, weight.size(0)), x.dtype(), x.device());
    const auto epilogue = bias.defined() ? kernels::LinearEpilogue::Bias : kernels::LinearEpilogue::None;
    if (run_fused(x, weight, bias, y, nullptr, epilogue)) return y;
    y = matmul(x, weight, false, true);
    return bias.defined() ? bias_add(y, bias) : y;
}

std::pair<Tensor, Tensor> linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    check_linear("linear_gelu", x, weight, bias);
    MP_REQUIRE(bias.defined(), "linear_gelu: needs a bias (the fused epilogue is bias + GELU)");
    const Shape shape = output_shape(x, weight.size(0));
    Tensor y = Tensor::empty(shape, x.dtype(), x.device()), pre = Tensor::empty(shape, x.dtype(), x.device());
    if (run_fused(x, weight, bias, y, &pre, kernels::LinearEpilogue::BiasGelu)) return {y, pre};
    pre = bias_add(matmul(x, weight, false, true), bias);
    return {gelu(pre), pre};
}

void weight_grad_(Tensor& grad, const Tensor& dy, const Tensor& x, bool accumulate) {
    detail::require_defined("weight_grad_", grad, "grad");
    detail::require_defined("weight_grad_", dy, "dy");
    detail::require_defined("weight_grad_", x, "x");
    MP_REQUIRE(detail::rows_over_last_dim(dy) == detail::rows_over_last_dim(x), "weight_grad_: dy ", dy.describe(),
               " and x ", x.describe(), " have different row counts");
    matmul_into(grad, dy, x, true, false, 1.0, accumulate ? 1.0 : 0.0);
}

void bias_grad_(Tensor& grad, const Tensor& dy, bool accumulate) {
    const char* op = "bias_grad_";
    detail::require_defined(op, grad, "grad");
    detail::require_defined(op, dy, "dy");
    detail::require_floating(op, dy);
    detail::require_same_device(op, {&grad, &dy});
    MP_REQUIRE(grad.dim() == 1 && grad.size(0) == detail::last_dim(dy), op, ": grad ", grad.describe(), " must be (",
               detail::last_dim(dy), ") for dy ", dy.describe());
    const bool mixed = dy.dtype() == DType::BFloat16 && grad.dtype() == DType::Float32;
    if (!mixed) detail::require_same_dtype(op, {&grad, &dy});
    const int64_t rows = detail::rows_over_last_dim(dy), cols = detail::last_dim(dy);
    dispatch_floating(op, dy.dtype(), detail::floating_on(dy.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        auto run = [&](auto* grad_data) {
            if (dy.device().is_cpu()) {
                kernels::cpu::bias_grad(dy.data<T>(), grad_data, rows, cols, accumulate);
            } else if constexpr (detail::kHasCudaKernels<T>) {
                MP_ON_CUDA(const size_t floats = kernels::cuda::bias_grad_workspace_floats(rows, cols);
                           Tensor workspace = Tensor::empty({static_cast<int64_t>(floats)}, DType::Float32,
                                                            dy.device());
                           kernels::cuda::bias_grad(dy.data<T>(), grad_data, rows, cols, accumulate,
                                                    floats == 0 ? nullptr : workspace.data<float>(),
                                                    detail::stream_of(dy)));
            }
        };
        if constexpr (std::is_same_v<T, bfloat16>) {
            if (mixed) run(grad.data<float>());
            else run(grad.data<bfloat16>());
        } else {
            run(grad.data<T>());
        }
    });
}

}  // namespace mp::ops
