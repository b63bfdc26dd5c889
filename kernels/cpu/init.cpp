// CPU reference for the initialisation kernels: plain loops.
#include <cmath>

#include "kernels/common/bfloat16.h"
#include "kernels/common/counter_rng.h"
#include "kernels/init.h"

namespace mp::kernels::cpu {

template <typename T>
void fill(T* out, int64_t n, double value) {
    const T element = element_from_double<T>(value);
    for (int64_t i = 0; i < n; ++i) out[i] = element;
}

template <typename T>
void arange(T* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(i);
}

template <typename T>
void fill_uniform(T* out, int64_t n, uint64_t seed, uint64_t offset, double low, double high) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(low + (high - low) * rng::uniform01(seed, offset + i));
}

template <typename T>
void fill_normal(T* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std) {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(mean + std * rng::normal(seed, offset + i));
}

template void fill<float>(float*, int64_t, double);
template void fill<double>(double*, int64_t, double);
template void fill<int32_t>(int32_t*, int64_t, double);
template void fill<bfloat16>(bfloat16*, int64_t, double);
template void arange<float>(float*, int64_t);
template void arange<double>(double*, int64_t);
template void arange<int32_t>(int32_t*, int64_t);
template void fill_uniform<float>(float*, int64_t, uint64_t, uint64_t, double, double);
template void fill_uniform<double>(double*, int64_t, uint64_t, uint64_t, double, double);
template void fill_normal<float>(float*, int64_t, uint64_t, uint64_t, double, double);
template void fill_normal<double>(double*, int64_t, uint64_t, uint64_t, double, double);

}  // namespace mp::kernels::cpu
