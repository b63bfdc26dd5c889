// CPU reference for dropout: the mask from the counter-based generator, a plain loop.
#include "kernels/common/counter_rng.h"
#include "kernels/dropout.h"

namespace mp::kernels::cpu {

template <typename T>
void dropout_apply(T* out, const T* in, int64_t n, double p, uint64_t seed, uint64_t offset) {
    const T keep_scale = static_cast<T>(1.0 / (1.0 - p));
    for (int64_t i = 0; i < n; ++i) {
        bool keep = rng::uniform01(seed, offset + static_cast<uint64_t>(i)) >= p;
        out[i] = keep ? in[i] * keep_scale : T(0);
    }
}

template void dropout_apply<float>(float*, const float*, int64_t, double, uint64_t, uint64_t);
template void dropout_apply<double>(double*, const double*, int64_t, double, uint64_t, uint64_t);

}  // namespace mp::kernels::cpu
