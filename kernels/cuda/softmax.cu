// CUDA softmax over the last dimension, float32, forward and backward, plain and causal-masked.
// Floor (H100, ~3 TB/s): the forward reads x and writes y, 8 bytes per element (196608 x 1024
// in ~0.54 ms); the backward reads y and dy and writes dx, 12 bytes. Causal rows read only the
// columns j <= i, so over a (T, T) block the forward moves ~6 bytes per element, the backward ~8.
//
// Design:
// - cols <= 1024: one warp per row, 4 rows per 128-thread block. The row lives in registers
//   (lane l owns the chunks c * 32 + l, each kVec columns wide), the max and the sums are
//   warp-shuffle butterflies, so x is read once and y written once. kVec = 4 (float4 loads and
//   stores) when cols % 4 == 0 and every pointer is 16-byte aligned, else 1. The chunk count per
//   lane is a template parameter, the power of two that covers the row, so the arrays stay in
//   registers.
// - cols > 1024 (a 50257-token vocabulary): one 512-thread block per row and two passes. Pass 1
//   keeps a running max m and sum s per thread (s rescaled by exp(m_old - m_new) when m grows),
//   combined across the block by shuffles and one shared-memory step; pass 2 rereads the row
//   (mostly from L2) and writes y = exp(x - m) / s. The backward is the same shape with a dot
//   product in pass 1.
// - Causal rows keep kept = i + 1 columns: loops stop at column kept (a float4 that straddles
//   column i is read element by element), and the masked columns are written as 0 unread.
// - Reductions run in a fixed order (butterflies, then warp 0 over the per-warp partials), so
//   results are identical run to run; no atomics.
#include <cfloat>
#include <climits>
#include <cstdint>

#include "kernels/cuda/check.cuh"
#include "kernels/softmax.h"

namespace mp::kernels::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpRowMaxCols = 1024;  // longest row the one-warp kernels hold in registers
constexpr int kWarpsPerBlock = 4;      // rows per block in the one-warp kernels
constexpr int kRowBlock = 512;         // threads per row in the one-block kernels
constexpr int kRowBlockWarps = kRowBlock / kWarpSize;

__device__ __forceinline__ float warp_max(float value) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
        value = fmaxf(value, __shfl_xor_sync(kFullMask, value, offset));
    return value;
}

__device__ __forceinline__ float warp_sum(float value) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(kFullMask, value, offset);
    return value;
}

// Adds value v to a running (max, sum of exp(value - max)). The max starts at -FLT_MAX rather
// than -inf so that -inf logits add exp(-inf) = 0 instead of exp(-inf + inf) = NaN.
__device__ __forceinline__ void online_add(float& run_max, float& run_sum, float v) {
    if (v > run_max) {
        run_sum = run_sum * expf(run_max - v) + 1.0f;
        run_max = v;
    } else {
        run_sum += expf(v - run_max);
    }
}

// Merges another running (max, sum) into this one. Symmetric in its two arguments (float addition
// commutes), so every lane of a butterfly ends with the same bits.
__device__ __forceinline__ void online_merge(float& run_max, float& run_sum, float other_max, float other_sum) {
    const float merged_max = fmaxf(run_max, other_max);
    run_sum = run_sum * expf(run_max - merged_max) + other_sum * expf(other_max - merged_max);
    run_max = merged_max;
}

__device__ __forceinline__ void warp_merge(float& run_max, float& run_sum) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        const float other_max = __shfl_xor_sync(kFullMask, run_max, offset);
        const float other_sum = __shfl_xor_sync(kFullMask, run_sum, offset);
        online_merge(run_max, run_sum, other_max, other_sum);
    }
}

// Block-wide merge of every thread's (max, sum); every thread gets the row's result. Call from
// all kRowBlock threads of the block (it synchronises).
__device__ void block_merge(float& run_max, float& run_sum) {
    __shared__ float warp_maxes[kRowBlockWarps];
    __shared__ float warp_sums[kRowBlockWarps];
    __shared__ float row_max;
    __shared__ float row_sum;
    const int warp = threadIdx.x / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    warp_merge(run_max, run_sum);
    if (lane == 0) {
        warp_maxes[warp] = run_max;
        warp_sums[warp] = run_sum;
    }
    __syncthreads();
    if (warp == 0) {
        run_max = lane < kRowBlockWarps ? warp_maxes[lane] : -FLT_MAX;
        run_sum = lane < kRowBlockWarps ? warp_sums[lane] : 0.0f;
        warp_merge(run_max, run_sum);
        if (lane == 0) {
            row_max = run_max;
            row_sum = run_sum;
        }
    }
    __syncthreads();
    run_max = row_max;
    run_sum = row_sum;
}

// Block-wide sum; every thread gets the result. Call from all kRowBlock threads of the block.
__device__ float block_sum(float value) {
    __shared__ float warp_sums[kRowBlockWarps];
    __shared__ float total;
    const int warp = threadIdx.x / kWarpSize;
    const int lane = threadIdx.x % kWarpSize;
    value = warp_sum(value);
    if (lane == 0) warp_sums[warp] = value;
    __syncthreads();
    if (warp == 0) {
        value = warp_sum(lane < kRowBlockWarps ? warp_sums[lane] : 0.0f);
        if (lane == 0) total = value;
    }
    __syncthreads();
    return total;
}

// Columns [col, col + kVec) of a row, keeping those below `kept` and setting the rest to 0
// without reading them. A chunk wholly below `kept` moves as one float4 when kVec == 4 (the
// launcher guarantees the alignment).
template <int kVec>
__device__ __forceinline__ void load_chunk(const float* row, int64_t col, int64_t kept, float (&v)[kVec]) {
    if constexpr (kVec == 4) {
        if (col + 4 <= kept) {
            const float4 q = *reinterpret_cast<const float4*>(row + col);
            v[0] = q.x;
            v[1] = q.y;
            v[2] = q.z;
            v[3] = q.w;
            return;
        }
    }
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = col + k < kept ? row[col + k] : 0.0f;
}

// Writes columns [col, col + kVec); the caller checks col < cols (cols % kVec == 0).
template <int kVec>
__device__ __forceinline__ void store_chunk(float* row, int64_t col, const float (&v)[kVec]) {
    if constexpr (kVec == 4)
        *reinterpret_cast<float4*>(row + col) = make_float4(v[0], v[1], v[2], v[3]);
    else
        row[col] = v[0];
}

// ---------------------------------------------------------------- one warp per row (cols <= 1024)

template <int kVec, int kChunks, bool kCausal>
__global__ void softmax_forward_warp_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t rows,
                                            int cols, int seq_len, float scale) {
    const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / kWarpSize;
    if (row >= rows) return;  // the whole warp leaves together, so the shuffles below see 32 lanes
    const int lane = threadIdx.x % kWarpSize;
    const int kept = kCausal ? static_cast<int>(row % seq_len) + 1 : cols;
    const float* x_row = x + row * cols;
    float* y_row = y + row * cols;

    float v[kChunks][kVec];
    float row_max = -INFINITY;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
        const int col = (c * kWarpSize + lane) * kVec;
        load_chunk<kVec>(x_row, col, kept, v[c]);
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
            v[c][k] *= scale;
            if (col + k < kept) row_max = fmaxf(row_max, v[c][k]);
        }
    }
    row_max = warp_max(row_max);

    float row_sum = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
        const int col = (c * kWarpSize + lane) * kVec;
#pragma unroll
        for (int k = 0; k < kVec; ++k) {
            v[c][k] = col + k < kept ? expf(v[c][k] - row_max) : 0.0f;
            row_sum += v[c][k];
        }
    }
    const float inv_sum = 1.0f / warp_sum(row_sum);

#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
        const int col = (c * kWarpSize + lane) * kVec;
        if (col >= cols) continue;
        float out[kVec];
#pragma unroll
        for (int k = 0; k < kVec; ++k) out[k] = col + k < kept ? v[c][k] * inv_sum : 0.0f;
        store_chunk<kVec>(y_row, col, out);
    }
}

template <int kVec, int kChunks, bool kCausal>
__global__ void softmax_backward_warp_kernel(const float* __restrict__ y, const float* __restrict__ dy,
                                             float* __restrict__ dx, int64_t rows, int cols, int seq_len,
                                             float scale) {
    const int64_t row = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + threadIdx.x / kWarpSize;
    if (row >= rows) return;  // the whole warp leaves together
    const int lane = threadIdx.x % kWarpSize;
    const int kept = kCausal ? static_cast<int>(row % seq_len) + 1 : cols;
    const int64_t offset = row * cols;

    float y_v[kChunks][kVec];
    float dy_v[kChunks][kVec];
    float dot = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
        const int col = (c * kWarpSize + lane) * kVec;
        load_chunk<kVec>(y + offset, col, kept, y_v[c]);
        load_chunk<kVec>(dy + offset, col, kept, dy_v[c]);
#pragma unroll
        for (int k = 0; k < kVec; ++k) dot += y_v[c][k] * dy_v[c][k];  // 0 * 0 past `kept`
    }
    dot = warp_sum(dot);

#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
        const int col = (c * kWarpSize + lane) * kVec;
        if (col >= cols) continue;
        float out[kVec];
#pragma unroll
        for (int k = 0; k < kVec; ++k) out[k] = col + k < kept ? scale * y_v[c][k] * (dy_v[c][k] - dot) : 0.0f;
        store_chunk<kVec>(dx + offset, col, out);
    }
}

// ---------------------------------------------------------------- one block per row (cols > 1024)

template <int kVec, bool kCausal>
__global__ void __launch_bounds__(kRowBlock) softmax_forward_block_kernel(const float* __restrict__ x,
                                                                          float* __restrict__ y, int64_t cols,
                                                                          int64_t seq_len, float scale) {
    const int64_t row = blockIdx.x;
    const int64_t kept = kCausal ? row % seq_len + 1 : cols;
    const float* x_row = x + row * cols;
    float* y_row = y + row * cols;
    const int64_t first = static_cast<int64_t>(threadIdx.x) * kVec;
    const int64_t step = static_cast<int64_t>(kRowBlock) * kVec;

    float run_max = -FLT_MAX;
    float run_sum = 0.0f;
    for (int64_t col = first; col < kept; col += step) {
        float v[kVec];
        load_chunk<kVec>(x_row, col, kept, v);
#pragma unroll
        for (int k = 0; k < kVec; ++k)
            if (col + k < kept) online_add(run_max, run_sum, scale * v[k]);
    }
    block_merge(run_max, run_sum);
    const float inv_sum = 1.0f / run_sum;

    for (int64_t col = first; col < cols; col += step) {
        float v[kVec];
        load_chunk<kVec>(x_row, col, kept, v);
#pragma unroll
        for (int k = 0; k < kVec; ++k) v[k] = col + k < kept ? expf(scale * v[k] - run_max) * inv_sum : 0.0f;
        store_chunk<kVec>(y_row, col, v);
    }
}

template <int kVec, bool kCausal>
__global__ void __launch_bounds__(kRowBlock) softmax_backward_block_kernel(const float* __restrict__ y,
                                                                           const float* __restrict__ dy,
                                                                           float* __restrict__ dx, int64_t cols,
                                                                           int64_t seq_len, float scale) {
    const int64_t row = blockIdx.x;
    const int64_t kept = kCausal ? row % seq_len + 1 : cols;
    const int64_t offset = row * cols;
    const int64_t first = static_cast<int64_t>(threadIdx.x) * kVec;
    const int64_t step = static_cast<int64_t>(kRowBlock) * kVec;

    float partial_dot = 0.0f;
    for (int64_t col = first; col < kept; col += step) {
        float y_v[kVec], dy_v[kVec];
        load_chunk<kVec>(y + offset, col, kept, y_v);
        load_chunk<kVec>(dy + offset, col, kept, dy_v);
#pragma unroll
        for (int k = 0; k < kVec; ++k) partial_dot += y_v[k] * dy_v[k];  // 0 * 0 past `kept`
    }
    const float dot = block_sum(partial_dot);

    for (int64_t col = first; col < cols; col += step) {
        float y_v[kVec], dy_v[kVec], out[kVec];
        load_chunk<kVec>(y + offset, col, kept, y_v);
        load_chunk<kVec>(dy + offset, col, kept, dy_v);
#pragma unroll
        for (int k = 0; k < kVec; ++k) out[k] = col + k < kept ? scale * y_v[k] * (dy_v[k] - dot) : 0.0f;
        store_chunk<kVec>(dx + offset, col, out);
    }
}

// ---------------------------------------------------------------- launchers

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Chunks of kVec columns each lane needs for a row of `cols`, rounded up to a power of two.
int chunks_per_lane(int64_t cols, int vec) {
    const int64_t needed = (cols + kWarpSize * vec - 1) / (kWarpSize * vec);
    int chunks = 1;
    while (chunks < needed) chunks *= 2;
    return chunks;
}

unsigned warp_kernel_grid(int64_t rows) {
    const int64_t blocks = (rows + kWarpsPerBlock - 1) / kWarpsPerBlock;
    MP_REQUIRE(blocks <= INT_MAX, "softmax: ", rows, " rows need more than 2^31 - 1 blocks");
    return static_cast<unsigned>(blocks);
}

unsigned block_kernel_grid(int64_t rows) {
    MP_REQUIRE(rows <= INT_MAX, "softmax: ", rows, " rows of more than ", kWarpRowMaxCols,
               " columns exceed 2^31 - 1 blocks");
    return static_cast<unsigned>(rows);
}

// Launches the one-warp forward kernel with the fewest chunks per lane that hold the row:
// instantiates kChunks = 1, 2, 4, ... up to kWarpRowMaxCols / (32 * kVec).
template <int kVec, bool kCausal, int kChunks = 1>
void launch_forward_warp(const float* x, float* y, int64_t rows, int cols, int seq_len, float scale, int chunks,
                         cudaStream_t stream) {
    if constexpr (kChunks * kVec * kWarpSize < kWarpRowMaxCols) {
        if (chunks > kChunks) {
            launch_forward_warp<kVec, kCausal, 2 * kChunks>(x, y, rows, cols, seq_len, scale, chunks, stream);
            return;
        }
    }
    softmax_forward_warp_kernel<kVec, kChunks, kCausal>
        <<<warp_kernel_grid(rows), kWarpsPerBlock * kWarpSize, 0, stream>>>(x, y, rows, cols, seq_len, scale);
    CUDA_CHECK_LAUNCH();
}

template <int kVec, bool kCausal, int kChunks = 1>
void launch_backward_warp(const float* y, const float* dy, float* dx, int64_t rows, int cols, int seq_len,
                          float scale, int chunks, cudaStream_t stream) {
    if constexpr (kChunks * kVec * kWarpSize < kWarpRowMaxCols) {
        if (chunks > kChunks) {
            launch_backward_warp<kVec, kCausal, 2 * kChunks>(y, dy, dx, rows, cols, seq_len, scale, chunks, stream);
            return;
        }
    }
    softmax_backward_warp_kernel<kVec, kChunks, kCausal>
        <<<warp_kernel_grid(rows), kWarpsPerBlock * kWarpSize, 0, stream>>>(y, dy, dx, rows, cols, seq_len, scale);
    CUDA_CHECK_LAUNCH();
}

// Plain softmax is the causal kernel's code with kCausal = false (every column kept) and scale 1.
template <bool kCausal>
void forward(const float* x, float* y, int64_t rows, int64_t cols, int64_t seq_len, double scale,
             cudaStream_t stream) {
    if (rows == 0 || cols == 0) return;
    const bool vec4 = cols % 4 == 0 && aligned16(x) && aligned16(y);
    const float scale_f = static_cast<float>(scale);
    if (cols <= kWarpRowMaxCols) {
        const int cols_i = static_cast<int>(cols);
        const int seq_len_i = static_cast<int>(seq_len);
        if (vec4)
            launch_forward_warp<4, kCausal>(x, y, rows, cols_i, seq_len_i, scale_f, chunks_per_lane(cols, 4), stream);
        else
            launch_forward_warp<1, kCausal>(x, y, rows, cols_i, seq_len_i, scale_f, chunks_per_lane(cols, 1), stream);
        return;
    }
    if (vec4)
        softmax_forward_block_kernel<4, kCausal>
            <<<block_kernel_grid(rows), kRowBlock, 0, stream>>>(x, y, cols, seq_len, scale_f);
    else
        softmax_forward_block_kernel<1, kCausal>
            <<<block_kernel_grid(rows), kRowBlock, 0, stream>>>(x, y, cols, seq_len, scale_f);
    CUDA_CHECK_LAUNCH();
}

template <bool kCausal>
void backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, int64_t seq_len,
              double scale, cudaStream_t stream) {
    if (rows == 0 || cols == 0) return;
    const bool vec4 = cols % 4 == 0 && aligned16(y) && aligned16(dy) && aligned16(dx);
    const float scale_f = static_cast<float>(scale);
    if (cols <= kWarpRowMaxCols) {
        const int cols_i = static_cast<int>(cols);
        const int seq_len_i = static_cast<int>(seq_len);
        if (vec4)
            launch_backward_warp<4, kCausal>(y, dy, dx, rows, cols_i, seq_len_i, scale_f, chunks_per_lane(cols, 4),
                                             stream);
        else
            launch_backward_warp<1, kCausal>(y, dy, dx, rows, cols_i, seq_len_i, scale_f, chunks_per_lane(cols, 1),
                                             stream);
        return;
    }
    if (vec4)
        softmax_backward_block_kernel<4, kCausal>
            <<<block_kernel_grid(rows), kRowBlock, 0, stream>>>(y, dy, dx, cols, seq_len, scale_f);
    else
        softmax_backward_block_kernel<1, kCausal>
            <<<block_kernel_grid(rows), kRowBlock, 0, stream>>>(y, dy, dx, cols, seq_len, scale_f);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols, cudaStream_t stream) {
    forward<false>(x, y, rows, cols, cols, 1.0, stream);
}

void softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t cols, cudaStream_t stream) {
    backward<false>(y, dy, dx, rows, cols, cols, 1.0, stream);
}

void causal_softmax_forward(const float* x, float* y, int64_t rows, int64_t seq_len, double scale,
                            cudaStream_t stream) {
    forward<true>(x, y, rows, seq_len, seq_len, scale, stream);
}

void causal_softmax_backward(const float* y, const float* dy, float* dx, int64_t rows, int64_t seq_len,
                             double scale, cudaStream_t stream) {
    backward<true>(y, dy, dx, rows, seq_len, seq_len, scale, stream);
}

}  // namespace mp::kernels::cuda
