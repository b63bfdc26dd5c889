// CPU reference for dropout: the mask from the counter-based generator, a plain loop.
#include "kernels/common/bfloat16.h"
#include "kernels/common/counter_rng.h"
#include "kernels/dropout.h"

namespace mp::kernels::cpu {

template <typename T>
void dropout_apply(T* out, const T* in, int64_t n, double p, uint64_t seed, uint64_t offset) {
    using C = compute_t<T>;  // bfloat16: scaled in float32, rounded once
    const C keep_scale = static_cast<C>(1.0 / (1.0 - p));
    for (int64_t i = 0; i < n; ++i) {
        bool keep = rng::uniform01(seed, offset + static_cast<uint64_t>(i)) >= p;
        out[i] = keep ? static_cast<T>(static_cast<C>(in[i]) * keep_scale) : static_cast<T>(C(0));
    }
}

template void dropout_apply<float>(float*, const float*, int64_t, double, uint64_t, uint64_t);
template void dropout_apply<double>(double*, const double*, int64_t, double, uint64_t, uint64_t);
template void dropout_apply<bfloat16>(bfloat16*, const bfloat16*, int64_t, double, uint64_t, uint64_t);

}  // namespace mp::kernels::cpu
