// Dropout op: argument checks and dispatch.
#include "tensor/ops/dropout.h"

#include "kernels/dropout.h"
#include "tensor/ops/common.h"

namespace mp::ops {

Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
    detail::require_defined("dropout", x, "x");
    detail::require_floating("dropout", x, detail::floating_on(x.device()));
    MP_REQUIRE(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
    Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
    dispatch_floating("dropout", x.dtype(), detail::floating_on(x.device()), [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (x.device().is_cpu()) {
            kernels::cpu::dropout_apply(out.data<T>(), x.data<T>(), x.numel(), p, seed, offset);
        } else if constexpr (detail::kHasCudaKernels<T>) {
            MP_ON_CUDA(kernels::cuda::dropout_apply(out.data<T>(), x.data<T>(), x.numel(), p, seed, offset,
                                                    detail::stream_of(x)));
        }
    });
    return out;
}

}  // namespace mp::ops
