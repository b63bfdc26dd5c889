// LayerNorm ops: argument checks (messages name the op and the shapes), output allocation, and
// dispatch to the CPU reference or the CUDA kernels; the CUDA backward's dgamma/dbeta workspace
// is allocated here as a tensor.
#include "tensor/ops/layernorm.h"

#include "kernels/layernorm.h"
#include "tensor/ops/common.h"
#include "tensor/ops/elementwise.h"

namespace mp::ops {

namespace {

// x's shape without its last dimension: the shape of the per-row mean and rstd.
Shape leading_dims(const Tensor& x) { return Shape(x.shape().begin(), x.shape().end() - 1); }

// The dtype of the saved statistics: float32 for bfloat16 inputs (never rounded to 8 bits), else x's.
DType statistics_dtype(DType x) { return x == DType::BFloat16 ? DType::Float32 : x; }

// Checks shared by forward and backward: x is a float tensor with a non-empty last dimension,
// and gamma is a vector over that dimension.
void check_x_and_gamma(const char* op, const Tensor& x, const Tensor& gamma) {
    detail::require_floating(op, x);
    detail::require_rank_at_least(op, x, 1, "x");
    MP_REQUIRE(x.shape().back() > 0, op, ": x has shape ", shape_str(x.shape()),
               "; the normalised (last) dimension must be non-empty");
    MP_REQUIRE(gamma.shape() == Shape{x.shape().back()}, op, ": gamma has shape ", shape_str(gamma.shape()),
               ", expected (", x.shape().back(), ") to match x ", shape_str(x.shape()));
}

}  // namespace

LayerNormResult layernorm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps) {
    const char* op = "layernorm";
    detail::require_defined(op, x, "x");
    detail::require_defined(op, gamma, "gamma");
    detail::require_defined(op, beta, "beta");
    check_x_and_gamma(op, x, gamma);
    MP_REQUIRE(beta.shape() == gamma.shape(), op, ": beta has shape ", shape_str(beta.shape()), ", expected (",
               x.shape().back(), ") to match x ", shape_str(x.shape()));
    detail::require_same_dtype(op, {&x, &gamma, &beta});
    detail::require_same_device(op, {&x, &gamma, &beta});
    MP_REQUIRE(eps >= 0.0, op, ": eps must be >= 0, got ", eps);

    const int64_t cols = detail::last_dim(x);
    const int64_t rows = detail::rows_over_last_dim(x);
    LayerNormResult result;
    result.y = Tensor::empty(x.shape(), x.dtype(), x.device());
    result.mean = Tensor::empty(leading_dims(x), statistics_dtype(x.dtype()), x.device());
    result.rstd = Tensor::empty(leading_dims(x), statistics_dtype(x.dtype()), x.device());
    dispatch_floating(op, x.dtype(), detail::floating_on(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        using S = compute_t<T>;
        if (x.device().is_cpu()) {
            kernels::cpu::layernorm_forward(x.data<T>(), gamma.data<T>(), beta.data<T>(), result.y.data<T>(),
                                            result.mean.data<S>(), result.rstd.data<S>(), rows, cols, eps);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::layernorm_forward(x.data<T>(), gamma.data<T>(), beta.data<T>(),
                                                        result.y.data<T>(), result.mean.data<float>(),
                                                        result.rstd.data<float>(), rows, cols, eps,
                                                        detail::stream_of(x)));
        }
    });
    return result;
}

LayerNormGrads layernorm_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma, const Tensor& mean,
                                  const Tensor& rstd) {
    const char* op = "layernorm_backward";
    detail::require_defined(op, dy, "dy");
    detail::require_defined(op, x, "x");
    detail::require_defined(op, gamma, "gamma");
    detail::require_defined(op, mean, "mean");
    detail::require_defined(op, rstd, "rstd");
    check_x_and_gamma(op, x, gamma);
    MP_REQUIRE(dy.shape() == x.shape(), op, ": dy has shape ", shape_str(dy.shape()), ", expected x's shape ",
               shape_str(x.shape()));
    MP_REQUIRE(mean.shape() == leading_dims(x), op, ": mean has shape ", shape_str(mean.shape()), ", expected ",
               shape_str(leading_dims(x)), " (the leading dims of x ", shape_str(x.shape()), ")");
    MP_REQUIRE(rstd.shape() == leading_dims(x), op, ": rstd has shape ", shape_str(rstd.shape()), ", expected ",
               shape_str(leading_dims(x)), " (the leading dims of x ", shape_str(x.shape()), ")");
    detail::require_same_dtype(op, {&x, &dy, &gamma});
    for (const Tensor* statistic : {&mean, &rstd})
        MP_REQUIRE(statistic->dtype() == statistics_dtype(x.dtype()), op, ": dtype mismatch: ",
                   statistic == &mean ? "mean" : "rstd", " is ", statistic->describe(), ", expected ",
                   dtype_name(statistics_dtype(x.dtype())), " for x ", x.describe(), " (as layernorm saves it)");
    detail::require_same_device(op, {&x, &dy, &gamma, &mean, &rstd});

    const int64_t cols = detail::last_dim(x);
    const int64_t rows = detail::rows_over_last_dim(x);
    LayerNormGrads grads;
    grads.dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    grads.dgamma = Tensor::empty(gamma.shape(), x.dtype(), x.device());
    grads.dbeta = Tensor::empty(gamma.shape(), x.dtype(), x.device());
    dispatch_floating(op, x.dtype(), detail::floating_on(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        using S = compute_t<T>;
        if (x.device().is_cpu()) {
            kernels::cpu::layernorm_backward(dy.data<T>(), x.data<T>(), gamma.data<T>(), mean.data<S>(),
                                             rstd.data<S>(), grads.dx.data<T>(), grads.dgamma.data<T>(),
                                             grads.dbeta.data<T>(), rows, cols);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA({
                Tensor workspace = Tensor::empty({kernels::cuda::layernorm_backward_workspace_floats(rows, cols)},
                                                 DType::Float32, x.device());
                kernels::cuda::layernorm_backward(dy.data<T>(), x.data<T>(), gamma.data<T>(), mean.data<float>(),
                                                  rstd.data<float>(), grads.dx.data<T>(), grads.dgamma.data<T>(),
                                                  grads.dbeta.data<T>(), workspace.data<float>(), rows, cols,
                                                  detail::stream_of(x));
            });
        }
    });
    return grads;
}

}  // namespace mp::ops
