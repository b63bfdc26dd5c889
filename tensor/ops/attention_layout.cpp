// Attention layout ops: argument checks (ranks, divisibility of 3*C and C by heads, matching head
// tensors), output allocation, and dispatch to the CPU reference or the CUDA kernels.
#include "tensor/ops/attention_layout.h"

#include "kernels/attention_layout.h"
#include "tensor/ops/common.h"

namespace mp::ops {

namespace {

void require_rank(const char* op, const Tensor& t, int64_t rank, const char* name, const char* layout) {
    MP_REQUIRE(t.dim() == rank, op, ": ", name, " must be ", layout, ", got shape ", shape_str(t.shape()));
}

void require_positive_heads(const char* op, int64_t heads) {
    MP_REQUIRE(heads >= 1, op, ": heads must be at least 1, got ", heads);
}

}  // namespace

std::array<Tensor, 3> split_qkv_heads(const Tensor& qkv, int64_t heads) {
    const char* op = "split_qkv_heads";
    detail::require_defined(op, qkv, "qkv");
    detail::require_floating(op, qkv, detail::floating_on(qkv.device()));
    require_rank(op, qkv, 3, "qkv", "(B, T, 3*C)");
    require_positive_heads(op, heads);
    const int64_t batch = qkv.size(0), seq = qkv.size(1), width = qkv.size(2);
    MP_REQUIRE(width % 3 == 0, op, ": qkv ", shape_str(qkv.shape()), " has last dimension ", width,
               ", not divisible by 3");
    const int64_t channels = width / 3;
    MP_REQUIRE(channels % heads == 0, op, ": C = ", channels, " (qkv ", shape_str(qkv.shape()),
               ") is not divisible by heads = ", heads);
    const int64_t head_dim = channels / heads;

    const Shape head_shape{batch, heads, seq, head_dim};
    std::array<Tensor, 3> qkv_heads;
    for (Tensor& t : qkv_heads) t = Tensor::empty(head_shape, qkv.dtype(), qkv.device());
    if (qkv.numel() == 0) return qkv_heads;

    Tensor &q = qkv_heads[0], &k = qkv_heads[1], &v = qkv_heads[2];
    dispatch_floating(op, qkv.dtype(), detail::floating_on(qkv.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (qkv.device().is_cpu()) {
            kernels::cpu::split_qkv_heads(qkv.data<T>(), q.data<T>(), k.data<T>(), v.data<T>(), batch, seq, heads,
                                          head_dim);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::split_qkv_heads(qkv.data<T>(), q.data<T>(), k.data<T>(),
                       v.data<T>(), batch, seq, heads, head_dim, detail::stream_of(qkv)));
        }
    });
    return qkv_heads;
}

Tensor merge_qkv_heads(const Tensor& dq, const Tensor& dk, const Tensor& dv) {
    const char* op = "merge_qkv_heads";
    detail::require_defined(op, dq, "dq");
    detail::require_defined(op, dk, "dk");
    detail::require_defined(op, dv, "dv");
    detail::require_same_device(op, {&dq, &dk, &dv});
    detail::require_floating(op, dq, detail::floating_on(dq.device()));
    detail::require_same_dtype(op, {&dq, &dk, &dv});
    require_rank(op, dq, 4, "dq", "(B, H, T, D)");
    detail::require_same_shape(op, dq, dk);
    detail::require_same_shape(op, dq, dv);
    const int64_t batch = dq.size(0), heads = dq.size(1), seq = dq.size(2), head_dim = dq.size(3);

    Tensor dqkv = Tensor::empty({batch, seq, 3 * heads * head_dim}, dq.dtype(), dq.device());
    if (dqkv.numel() == 0) return dqkv;
    dispatch_floating(op, dq.dtype(), detail::floating_on(dq.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (dq.device().is_cpu()) {
            kernels::cpu::merge_qkv_heads(dq.data<T>(), dk.data<T>(), dv.data<T>(), dqkv.data<T>(), batch, seq,
                                          heads, head_dim);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::merge_qkv_heads(dq.data<T>(), dk.data<T>(), dv.data<T>(),
                       dqkv.data<T>(), batch, seq, heads, head_dim, detail::stream_of(dq)));
        }
    });
    return dqkv;
}

Tensor merge_heads(const Tensor& y) {
    const char* op = "merge_heads";
    detail::require_defined(op, y, "y");
    detail::require_floating(op, y, detail::floating_on(y.device()));
    require_rank(op, y, 4, "y", "(B, H, T, D)");
    const int64_t batch = y.size(0), heads = y.size(1), seq = y.size(2), head_dim = y.size(3);

    Tensor out = Tensor::empty({batch, seq, heads * head_dim}, y.dtype(), y.device());
    if (out.numel() == 0) return out;
    dispatch_floating(op, y.dtype(), detail::floating_on(y.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (y.device().is_cpu()) {
            kernels::cpu::merge_heads(y.data<T>(), out.data<T>(), batch, seq, heads, head_dim);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::merge_heads(y.data<T>(), out.data<T>(), batch, seq, heads, head_dim,
                       detail::stream_of(y)));
        }
    });
    return out;
}

Tensor split_heads(const Tensor& x, int64_t heads) {
    const char* op = "split_heads";
    detail::require_defined(op, x, "x");
    detail::require_floating(op, x, detail::floating_on(x.device()));
    require_rank(op, x, 3, "x", "(B, T, C)");
    require_positive_heads(op, heads);
    const int64_t batch = x.size(0), seq = x.size(1), channels = x.size(2);
    MP_REQUIRE(channels % heads == 0, op, ": C = ", channels, " (x ", shape_str(x.shape()),
               ") is not divisible by heads = ", heads);
    const int64_t head_dim = channels / heads;

    Tensor out = Tensor::empty({batch, heads, seq, head_dim}, x.dtype(), x.device());
    if (out.numel() == 0) return out;
    dispatch_floating(op, x.dtype(), detail::floating_on(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (x.device().is_cpu()) {
            kernels::cpu::split_heads(x.data<T>(), out.data<T>(), batch, seq, heads, head_dim);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::split_heads(x.data<T>(), out.data<T>(), batch, seq, heads, head_dim,
                       detail::stream_of(x)));
        }
    });
    return out;
}

}  // namespace mp::ops
