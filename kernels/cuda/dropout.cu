// CUDA dropout (float32 and bfloat16): out[i] = keep(i) ? in[i]/(1−p) : 0 with keep(i) from the counter-based RNG, so
// the mask needs no memory and backward regenerates it. Floor (H100): 8 bytes/element (read in,
// write out) at ~3 TB/s; the 64-bit hash is ~20 integer ops per element, well under the memory time.
// Design: grid-stride loop, one element per thread per step; the mask depends only on the
// global index, so the result is independent of the launch shape.
#include "kernels/common/bfloat16.h"
#include "kernels/common/counter_rng.h"
#include "kernels/cuda/check.cuh"
#include "kernels/dropout.h"

namespace mp::kernels::cuda {

namespace {
// S is float or bfloat16: the kept value is scaled in float32 and rounded once on store.
template <typename S>
__global__ void dropout_kernel(S* out, const S* in, int64_t n, double p, float keep_scale, uint64_t seed,
                               uint64_t offset) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        bool keep = rng::uniform01(seed, offset + static_cast<uint64_t>(i)) >= p;
        out[i] = S(keep ? __fmul_rn(static_cast<float>(in[i]), keep_scale) : 0.0f);
    }
}

template <typename S>
void launch_dropout(S* out, const S* in, int64_t n, double p, uint64_t seed, uint64_t offset, cudaStream_t stream) {
    if (n == 0) return;
    constexpr int kBlock = 256;
    float keep_scale = static_cast<float>(1.0 / (1.0 - p));
    dropout_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(out, in, n, p, keep_scale, seed, offset);
    CUDA_CHECK_LAUNCH();
}
}  // namespace

void dropout_apply(float* out, const float* in, int64_t n, double p, uint64_t seed, uint64_t offset, cudaStream_t stream) {
    launch_dropout(out, in, n, p, seed, offset, stream);
}

void dropout_apply(bfloat16* out, const bfloat16* in, int64_t n, double p, uint64_t seed, uint64_t offset,
                   cudaStream_t stream) {
    launch_dropout(out, in, n, p, seed, offset, stream);
}

}  // namespace mp::kernels::cuda
