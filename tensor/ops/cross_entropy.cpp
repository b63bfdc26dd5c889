// Cross-entropy ops: argument checks, output allocation, and dispatch to the CPU reference or the
// CUDA kernels (whose targets are checked by a queued GPU check, since a kernel cannot throw).
#include "tensor/ops/cross_entropy.h"

#include <string>

#include "kernels/cross_entropy.h"
#include "tensor/device_checks.h"
#include "tensor/ops/common.h"
#include "tensor/ops/elementwise.h"

namespace mp::ops {

namespace {

// logits (..., V) with V >= 1, float; targets int32 of shape (...); all on one device.
void check_logits_and_targets(const char* op, const Tensor& logits, const Tensor& targets) {
    detail::require_defined(op, logits, "logits");
    detail::require_defined(op, targets, "targets");
    detail::require_same_device(op, {&logits, &targets});
    detail::require_floating(op, logits);
    detail::require_dtype(op, targets, DType::Int32, "targets");
    detail::require_rank_at_least(op, logits, 1, "logits");
    MP_REQUIRE(logits.shape().back() >= 1, op, ": logits ", shape_str(logits.shape()),
               " has an empty last dimension (vocabulary of 0)");
    Shape leading(logits.shape().begin(), logits.shape().end() - 1);
    MP_REQUIRE(targets.shape() == leading, op, ": targets has shape ", shape_str(targets.shape()), ", expected ",
               shape_str(leading), " to match logits ", shape_str(logits.shape()));
}

// A per-row tensor of the backward (logsumexp, dlosses): shaped like targets, of the statistics
// dtype (float32 for bfloat16 logits, else the logits' dtype).
void check_per_row(const char* op, const Tensor& per_row, const char* name, const Tensor& logits,
                   const Tensor& targets) {
    detail::require_defined(op, per_row, name);
    detail::require_same_device(op, {&logits, &per_row});
    MP_REQUIRE(per_row.dtype() == cross_entropy_statistics_dtype(logits.dtype()), op, ": ", name, " is ",
               per_row.describe(), ", expected ", dtype_name(cross_entropy_statistics_dtype(logits.dtype())),
               " for logits ", logits.describe());
    MP_REQUIRE(per_row.shape() == targets.shape(), op, ": ", name, " has shape ", shape_str(per_row.shape()),
               ", expected ", shape_str(targets.shape()), " to match targets");
}

// The CUDA kernels cannot throw, so the check of CUDA targets is queued on the GPU and reported at
// the device's next synchronisation (tensor/device_checks.h): the host never waits for it here.
// The message is the CPU reference's.
void check_cuda_targets(const char* op, const Tensor& targets, int64_t vocab, int ignore_index) {
    const std::string op_name = op;
    check_index_range(targets, 0, vocab, ignore_index, [op_name, vocab, ignore_index](int64_t row, int32_t target) {
        return str(op_name, ": target ", target, " at row ", row, " is outside [0, ", vocab, ") and is not ignore_index ",
                   ignore_index);
    });
}

}  // namespace

CrossEntropyResult cross_entropy_forward(const Tensor& logits, const Tensor& targets, int ignore_index) {
    const char* op = "cross_entropy_forward";
    check_logits_and_targets(op, logits, targets);
    const int64_t vocab = logits.shape().back();
    const int64_t rows = targets.numel();
    const DType statistics = cross_entropy_statistics_dtype(logits.dtype());
    CrossEntropyResult result{Tensor::empty(targets.shape(), statistics, logits.device()),
                              Tensor::empty(targets.shape(), statistics, logits.device())};
    if (rows == 0) return result;

    dispatch_floating(op, logits.dtype(), detail::floating_on(logits.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        using S = compute_t<T>;
        if (logits.device().is_cpu()) {
            kernels::cpu::cross_entropy_forward(logits.data<T>(), targets.data<int32_t>(), result.losses.data<S>(),
                                                result.logsumexp.data<S>(), rows, vocab, ignore_index);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            check_cuda_targets(op, targets, vocab, ignore_index);
            MP_ON_CUDA(kernels::cuda::cross_entropy_forward(logits.data<T>(), targets.data<int32_t>(),
                                                            result.losses.data<float>(),
                                                            result.logsumexp.data<float>(), rows, vocab, ignore_index,
                                                            detail::stream_of(logits)));
        }
    });
    return result;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& logsumexp,
                              const Tensor& dlosses, int ignore_index) {
    const char* op = "cross_entropy_backward";
    check_logits_and_targets(op, logits, targets);
    check_per_row(op, logsumexp, "logsumexp", logits, targets);
    check_per_row(op, dlosses, "dlosses", logits, targets);
    const int64_t vocab = logits.shape().back();
    const int64_t rows = targets.numel();
    Tensor dlogits = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
    if (rows == 0) return dlogits;

    dispatch_floating(op, logits.dtype(), detail::floating_on(logits.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        using S = compute_t<T>;
        if (logits.device().is_cpu()) {
            kernels::cpu::cross_entropy_backward(logits.data<T>(), targets.data<int32_t>(), logsumexp.data<S>(),
                                                 dlosses.data<S>(), dlogits.data<T>(), rows, vocab, ignore_index);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            check_cuda_targets(op, targets, vocab, ignore_index);
            MP_ON_CUDA(kernels::cuda::cross_entropy_backward(logits.data<T>(), targets.data<int32_t>(),
                                                             logsumexp.data<float>(), dlosses.data<float>(),
                                                             dlogits.data<T>(), rows, vocab, ignore_index,
                                                             detail::stream_of(logits)));
        }
    });
    return dlogits;
}

Tensor cross_entropy_fused_(Tensor& logits, const Tensor& targets, int ignore_index, int64_t vocab,
                            const Tensor& dloss) {
    const char* op = "cross_entropy_fused_";
    check_logits_and_targets(op, logits, targets);
    const int64_t stride = logits.shape().back();
    MP_REQUIRE(vocab >= 1 && vocab <= stride, op, ": vocab ", vocab, " must be in [1, ", stride,
               "] (the logits' last dimension, padding included) for logits ", logits.describe());
    const DType statistics = cross_entropy_statistics_dtype(logits.dtype());
    const bool write_gradient = dloss.defined();
    if (write_gradient) {
        MP_REQUIRE(dloss.numel() == 1 && dloss.dtype() == statistics, op, ": dloss is ", dloss.describe(),
                   ", expected one ", dtype_name(statistics), " for logits ", logits.describe());
        detail::require_same_device(op, {&logits, &dloss});
    }
    const int64_t rows = targets.numel();
    Tensor losses = Tensor::empty(targets.shape(), statistics, logits.device());
    if (rows == 0) return losses;
    dispatch_floating(op, logits.dtype(), detail::floating_on(logits.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        using S = compute_t<T>;
        if (logits.device().is_cpu()) {
            const S row_dloss = write_gradient ? dloss.data<S>()[0] : S(0);
            kernels::cpu::cross_entropy_fused(logits.data<T>(), targets.data<int32_t>(), losses.data<S>(), rows, vocab,
                                              stride, ignore_index, row_dloss, write_gradient);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            check_cuda_targets(op, targets, vocab, ignore_index);
            MP_ON_CUDA(kernels::cuda::cross_entropy_fused(logits.data<T>(), targets.data<int32_t>(),
                                                          losses.data<float>(), rows, vocab, stride, ignore_index,
                                                          write_gradient ? dloss.data<float>() : nullptr,
                                                          write_gradient, detail::stream_of(logits)));
        }
    });
    return losses;
}

Tensor cross_entropy_mean_weight(const Tensor& targets, int ignore_index, DType dtype) {
    const char* op = "cross_entropy_mean_weight";
    detail::require_defined(op, targets, "targets");
    detail::require_dtype(op, targets, DType::Int32, "targets");
    MP_REQUIRE(dtype == DType::Float32 || (dtype == DType::Float64 && targets.device().is_cpu()), op,
               ": the weight's dtype must be float32 (or float64 on the CPU), got ", dtype_name(dtype), " on ",
               targets.device().str());
    Tensor weight = Tensor::empty({}, dtype, targets.device());
    if (targets.device().is_cpu()) {
        if (dtype == DType::Float32)
            kernels::cpu::cross_entropy_mean_weight(targets.data<int32_t>(), targets.numel(), ignore_index,
                                                    weight.data<float>());
        else
            kernels::cpu::cross_entropy_mean_weight(targets.data<int32_t>(), targets.numel(), ignore_index,
                                                    weight.data<double>());
    } else {
        MP_ON_CUDA(kernels::cuda::cross_entropy_mean_weight(targets.data<int32_t>(), targets.numel(), ignore_index,
                                                            weight.data<float>(), detail::stream_of(targets)));
    }
    return weight;
}

}  // namespace mp::ops
