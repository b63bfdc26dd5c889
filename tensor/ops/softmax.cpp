// Softmax ops: argument checks, output allocation and CPU/CUDA dispatch, plain and causal
// (float32 and bfloat16; float64 on the CPU). bfloat16 on a GPU runs the float32 kernels on widened
// inputs (detail::bf16_through_float32) until its own kernels exist.
#include "tensor/ops/softmax.h"

#include <cmath>

#include "kernels/softmax.h"
#include "tensor/ops/common.h"
#include "tensor/ops/elementwise.h"

namespace mp::ops {

namespace {

void check_backward(const char* op, const Tensor& y, const Tensor& dy) {
    detail::require_defined(op, y, "y");
    detail::require_defined(op, dy, "dy");
    detail::require_floating(op, y);
    detail::require_same_device(op, {&y, &dy});
    detail::require_same_dtype(op, {&y, &dy});
    detail::require_same_shape(op, y, dy);
}

// The causal ops work on (..., T, T) blocks.
void check_causal(const char* op, const Tensor& t, const char* name, double scale) {
    detail::require_rank_at_least(op, t, 2, name);
    MP_REQUIRE(t.size(-1) == t.size(-2), op, ": ", name, " must end in a square (T, T) block, got ",
               shape_str(t.shape()));
    MP_REQUIRE(std::isfinite(scale), op, ": scale must be finite, got ", scale);
}

}  // namespace

Tensor softmax(const Tensor& x) {
    const char* op = "softmax";
    detail::require_defined(op, x, "x");
    detail::require_floating(op, x);
    detail::require_rank_at_least(op, x, 1, "x");
    if (detail::bf16_through_float32(x)) return cast(softmax(cast(x, DType::Float32)), DType::BFloat16);
    const int64_t rows = detail::rows_over_last_dim(x);
    const int64_t cols = detail::last_dim(x);
    Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
    dispatch_floating(op, x.dtype(), detail::floating_cpu_only_bf16(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (x.device().is_cpu()) {
            kernels::cpu::softmax_forward(x.data<T>(), y.data<T>(), rows, cols);
        } else if constexpr (std::is_same_v<T, float>) {
            MP_ON_CUDA(kernels::cuda::softmax_forward(x.data<float>(), y.data<float>(), rows, cols,
                                                      detail::stream_of(x)));
        }
    });
    return y;
}

Tensor softmax_backward(const Tensor& y, const Tensor& dy) {
    const char* op = "softmax_backward";
    check_backward(op, y, dy);
    detail::require_rank_at_least(op, y, 1, "y");
    if (detail::bf16_through_float32(y))
        return cast(softmax_backward(cast(y, DType::Float32), cast(dy, DType::Float32)), DType::BFloat16);
    const int64_t rows = detail::rows_over_last_dim(y);
    const int64_t cols = detail::last_dim(y);
    Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
    dispatch_floating(op, y.dtype(), detail::floating_cpu_only_bf16(y.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (y.device().is_cpu()) {
            kernels::cpu::softmax_backward(y.data<T>(), dy.data<T>(), dx.data<T>(), rows, cols);
        } else if constexpr (std::is_same_v<T, float>) {
            MP_ON_CUDA(kernels::cuda::softmax_backward(y.data<float>(), dy.data<float>(), dx.data<float>(),
                                                       rows, cols, detail::stream_of(y)));
        }
    });
    return dx;
}

Tensor causal_softmax(const Tensor& scores, double scale) {
    const char* op = "causal_softmax";
    detail::require_defined(op, scores, "scores");
    detail::require_floating(op, scores);
    check_causal(op, scores, "scores", scale);
    if (detail::bf16_through_float32(scores))
        return cast(causal_softmax(cast(scores, DType::Float32), scale), DType::BFloat16);
    const int64_t rows = detail::rows_over_last_dim(scores);
    const int64_t seq_len = detail::last_dim(scores);
    Tensor y = Tensor::empty(scores.shape(), scores.dtype(), scores.device());
    dispatch_floating(op, scores.dtype(), detail::floating_cpu_only_bf16(scores.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (scores.device().is_cpu()) {
            kernels::cpu::causal_softmax_forward(scores.data<T>(), y.data<T>(), rows, seq_len, scale);
        } else if constexpr (std::is_same_v<T, float>) {
            MP_ON_CUDA(kernels::cuda::causal_softmax_forward(scores.data<float>(), y.data<float>(), rows,
                                                             seq_len, scale, detail::stream_of(scores)));
        }
    });
    return y;
}

Tensor causal_softmax_backward(const Tensor& y, const Tensor& dy, double scale) {
    const char* op = "causal_softmax_backward";
    check_backward(op, y, dy);
    check_causal(op, y, "y", scale);
    if (detail::bf16_through_float32(y))
        return cast(causal_softmax_backward(cast(y, DType::Float32), cast(dy, DType::Float32), scale), DType::BFloat16);
    const int64_t rows = detail::rows_over_last_dim(y);
    const int64_t seq_len = detail::last_dim(y);
    Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
    dispatch_floating(op, y.dtype(), detail::floating_cpu_only_bf16(y.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (y.device().is_cpu()) {
            kernels::cpu::causal_softmax_backward(y.data<T>(), dy.data<T>(), dx.data<T>(), rows, seq_len, scale);
        } else if constexpr (std::is_same_v<T, float>) {
            MP_ON_CUDA(kernels::cuda::causal_softmax_backward(y.data<float>(), dy.data<float>(), dx.data<float>(),
                                                              rows, seq_len, scale, detail::stream_of(y)));
        }
    });
    return dx;
}

}  // namespace mp::ops
