// Dropout op: argument checks and dispatch.
#include "tensor/ops/dropout.h"

#include "kernels/dropout.h"
#include "tensor/ops/common.h"

namespace mp::ops {

Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset) {
    detail::require_defined("dropout", x, "x");
    detail::require_float("dropout", x);
    MP_REQUIRE(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
    Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
    if (x.device().is_cpu()) {
        if (x.dtype() == DType::Float64) kernels::cpu::dropout_apply(out.data<double>(), x.data<double>(), x.numel(), p, seed, offset);
        else kernels::cpu::dropout_apply(out.data<float>(), x.data<float>(), x.numel(), p, seed, offset);
    } else {
        MP_ON_CUDA(kernels::cuda::dropout_apply(out.data<float>(), x.data<float>(), x.numel(), p, seed, offset,
                                                detail::stream_of(x)));
    }
    return out;
}

}  // namespace mp::ops
