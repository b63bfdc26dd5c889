// CUDA index range check (token ids, class targets): finds the first value outside [low, high)
// that is not the exempt value, without the host waiting for it.
//
// Floor: reads 4 B per value once (GPT-2 at batch 16: 16384 targets, 64 KB: well under a
// microsecond of bandwidth, so the launch itself is the cost).
//
// Design: one grid-stride pass; a bad value does an integer atomicMin of its position into one
// 64-bit word. The minimum does not depend on the order of the atomics, so the answer is
// deterministic; good values (the normal case) touch no shared state at all.
#include "kernels/cuda/check.cuh"
#include "kernels/index_check.h"

namespace mp::kernels::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void first_out_of_range_kernel(const int32_t* __restrict__ values, int64_t n, int64_t low, int64_t high,
                                          int64_t exempt, unsigned long long* first_position) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t value = values[i];
        if ((value < low || value >= high) && value != exempt)
            atomicMin(first_position, static_cast<unsigned long long>(i));
    }
}

}  // namespace

void first_out_of_range(const int32_t* values, int64_t n, int64_t low, int64_t high, int64_t exempt,
                        unsigned long long* first_position, cudaStream_t stream) {
    if (n == 0) return;
    first_out_of_range_kernel<<<cuda_detail::grid_for(n, kThreads), kThreads, 0, stream>>>(values, n, low, high, exempt,
                                                                                          first_position);
    CUDA_CHECK_LAUNCH();
}

}  // namespace mp::kernels::cuda
