// CUDA initialisation kernels: fill, arange, seeded uniform and normal.
// Floor (H100): pure writes, 4 bytes per element at ~3 TB/s; the normal draw also spends
// ~2 double-precision log/cos per element (FP64 is 1/2 of FP32 rate on H100 — still far from
// the write floor for init-time use). Grid-stride loops, one element per thread per step.
#include "kernels/common/bfloat16.h"
#include "kernels/common/counter_rng.h"
#include "kernels/cuda/check.cuh"
#include "kernels/init.h"

namespace mp::kernels::cuda {

namespace {

template <typename T>
__global__ void fill_kernel(T* out, int64_t n, T value) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = value;
}

template <typename T>
__global__ void arange_kernel(T* out, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = static_cast<T>(i);
}

__global__ void uniform_kernel(float* out, int64_t n, uint64_t seed, uint64_t offset, double low, double high) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        // __dadd_rn/__dmul_rn: no FMA contraction, so the double rounds exactly as on the host.
        out[i] = static_cast<float>(__dadd_rn(low, __dmul_rn(high - low, rng::uniform01(seed, offset + i))));
}

__global__ void normal_kernel(float* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = static_cast<float>(__dadd_rn(mean, __dmul_rn(std, rng::normal(seed, offset + i))));
}

constexpr int kBlock = 256;

}  // namespace

template <typename T>
void fill(T* out, int64_t n, double value, cudaStream_t stream) {
    if (n == 0) return;
    fill_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(out, n, element_from_double<T>(value));
    CUDA_CHECK_LAUNCH();
}

template <typename T>
void arange(T* out, int64_t n, cudaStream_t stream) {
    if (n == 0) return;
    arange_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(out, n);
    CUDA_CHECK_LAUNCH();
}

void fill_uniform(float* out, int64_t n, uint64_t seed, uint64_t offset, double low, double high, cudaStream_t stream) {
    if (n == 0) return;
    uniform_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(out, n, seed, offset, low, high);
    CUDA_CHECK_LAUNCH();
}

void fill_normal(float* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std, cudaStream_t stream) {
    if (n == 0) return;
    normal_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(out, n, seed, offset, mean, std);
    CUDA_CHECK_LAUNCH();
}

template void fill<float>(float*, int64_t, double, cudaStream_t);
template void fill<int32_t>(int32_t*, int64_t, double, cudaStream_t);
template void fill<bfloat16>(bfloat16*, int64_t, double, cudaStream_t);
template void arange<float>(float*, int64_t, cudaStream_t);
template void arange<int32_t>(int32_t*, int64_t, cudaStream_t);

}  // namespace mp::kernels::cuda
