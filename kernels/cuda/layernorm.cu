// CUDA LayerNorm over the last dimension (float32 and bfloat16, statistics in float32): forward
// saving the per-row mean and rstd, backward giving dx, dgamma and dbeta, deterministic run to run
// (no atomics). bfloat16 halves every byte count below; it takes the scalar path (no float4
// register path yet), rounding each output once.
//
// Floor (H100, ~3 TB/s): forward reads x and writes y, 8 B/element (16384 x 768: 101 MB, ~34 us;
// PyTorch eager: 69 us). Backward must read dy and x and write dx, 12 B/element (~50 us; PyTorch
// eager: 207 us); this backward reads dy and x a second time for dgamma/dbeta, 20 B/element
// (~84 us), in exchange for a deterministic column reduction that works for any cols.
//
// Design:
//  - Row kernels (forward, backward dx): one warp per row, 8 rows per 256-thread block; row sums
//    by xor-shuffle butterflies (every lane ends with the same bits). When cols % 4 == 0,
//    cols <= 1024 and every pointer is 16-byte aligned, each lane keeps its slice of the row in
//    registers as float4 (kFloat4PerLane of them; C = 768 -> 6), so x (and dy) are read from
//    memory once. Otherwise a scalar loop re-reads the row per pass (from L1/L2).
//  - Forward statistics are two-pass over the registers: mean, then the mean of squared
//    deviations (no E[x^2] - mean^2 cancellation).
//  - dgamma/dbeta: a column-parallel kernel over (32-column tile, chunk of rows) blocks; each
//    thread sums its rows in increasing order, the block's 8 row-lanes are added in a fixed
//    order through shared memory and the chunk's partial sums go to the workspace; a second
//    kernel adds each column's chunk partials in chunk order.
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "kernels/common/bfloat16.h"
#include "kernels/cuda/check.cuh"
#include "kernels/layernorm.h"

namespace mp::kernels::cuda {

namespace {

constexpr int kWarpSize = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kRowKernelThreads = kWarpSize * kWarpsPerBlock;
constexpr int kMaxFloat4PerLane = 8;  // the register path covers cols <= 32 * 8 * 4 = 1024

// dgamma/dbeta reduction: block = kColumnTile columns x kRowLanes row-lanes, rows split into
// at most kMaxChunks chunks of at least kMinRowsPerChunk rows.
constexpr int kColumnTile = 32;
constexpr int kRowLanes = 8;
constexpr int64_t kMinRowsPerChunk = 32;
constexpr int64_t kMaxChunks = 128;
constexpr int kFinishThreads = 256;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

// float4s per lane on the register path for a row of `cols`, or 0 when the row does not qualify.
int float4_per_lane(int64_t cols, std::initializer_list<const void*> pointers) {
    if (cols % 4 != 0 || cols > int64_t(kWarpSize) * 4 * kMaxFloat4PerLane) return 0;
    for (const void* pointer : pointers)
        if (!aligned16(pointer)) return 0;
    return static_cast<int>(ceil_div(cols / 4, kWarpSize));
}

// Calls launch(std::integral_constant<int, W>{}) for the smallest W >= needed (1 <= needed <= 8),
// so each register-path kernel is instantiated once per width.
template <int kWidth, typename Launch>
void dispatch_float4_width(int needed, Launch&& launch) {
    if constexpr (kWidth == kMaxFloat4PerLane) {
        launch(std::integral_constant<int, kWidth>{});
    } else {
        if (needed <= kWidth) launch(std::integral_constant<int, kWidth>{});
        else dispatch_float4_width<kWidth + 1>(needed, launch);
    }
}

struct ParamGradChunks {
    int64_t count;
    int64_t rows_per_chunk;
};

ParamGradChunks param_grad_chunks(int64_t rows) {
    if (rows == 0) return {0, 0};
    int64_t count = ceil_div(rows, kMinRowsPerChunk);
    if (count > kMaxChunks) count = kMaxChunks;
    return {count, ceil_div(rows, count)};
}

__device__ __forceinline__ float warp_sum(float value) {
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
    return value;
}

__device__ __forceinline__ float sum4(float4 v) { return (v.x + v.y) + (v.z + v.w); }

// ---------------------------------------------------------------- forward

template <int kFloat4PerLane>
__global__ void __launch_bounds__(kRowKernelThreads)
    layernorm_forward_float4_kernel(const float* __restrict__ x, const float* __restrict__ gamma,
                                    const float* __restrict__ beta, float* __restrict__ y, float* __restrict__ mean,
                                    float* __restrict__ rstd, int64_t rows, int cols, float eps) {
    const int lane = threadIdx.x % kWarpSize;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
    if (row >= rows) return;  // the whole warp leaves together, so every shuffle sees 32 lanes
    const int row_float4s = cols / 4;
    const float4* x_row = reinterpret_cast<const float4*>(x + row * cols);

    float4 values[kFloat4PerLane];
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < kFloat4PerLane; ++k) {
        const int i = lane + k * kWarpSize;
        values[k] = i < row_float4s ? x_row[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        sum += sum4(values[k]);
    }
    const float row_mean = warp_sum(sum) / cols;

    float squares = 0.0f;
#pragma unroll
    for (int k = 0; k < kFloat4PerLane; ++k) {
        const int i = lane + k * kWarpSize;
        if (i < row_float4s) {
            const float4 d = make_float4(values[k].x - row_mean, values[k].y - row_mean, values[k].z - row_mean,
                                         values[k].w - row_mean);
            squares += (d.x * d.x + d.y * d.y) + (d.z * d.z + d.w * d.w);
        }
    }
    const float row_rstd = rsqrtf(warp_sum(squares) / cols + eps);

    const float4* gamma4 = reinterpret_cast<const float4*>(gamma);
    const float4* beta4 = reinterpret_cast<const float4*>(beta);
    float4* y_row = reinterpret_cast<float4*>(y + row * cols);
#pragma unroll
    for (int k = 0; k < kFloat4PerLane; ++k) {
        const int i = lane + k * kWarpSize;
        if (i < row_float4s) {
            const float4 g = gamma4[i];
            const float4 b = beta4[i];
            float4 out;
            out.x = (values[k].x - row_mean) * row_rstd * g.x + b.x;
            out.y = (values[k].y - row_mean) * row_rstd * g.y + b.y;
            out.z = (values[k].z - row_mean) * row_rstd * g.z + b.z;
            out.w = (values[k].w - row_mean) * row_rstd * g.w + b.w;
            y_row[i] = out;
        }
    }
    if (lane == 0) {
        mean[row] = row_mean;
        rstd[row] = row_rstd;
    }
}

// Any cols, any alignment, float32 or bfloat16 (loaded to float32, the output rounded once): three
// passes over the row, re-reading it from L1/L2.
template <typename T>
__global__ void __launch_bounds__(kRowKernelThreads)
    layernorm_forward_scalar_kernel(const T* __restrict__ x, const T* __restrict__ gamma,
                                    const T* __restrict__ beta, T* __restrict__ y, float* __restrict__ mean,
                                    float* __restrict__ rstd, int64_t rows, int64_t cols, float eps) {
    const int lane = threadIdx.x % kWarpSize;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
    if (row >= rows) return;  // whole warp, as above
    const T* x_row = x + row * cols;
    T* y_row = y + row * cols;

    float sum = 0.0f;
    for (int64_t c = lane; c < cols; c += kWarpSize) sum += static_cast<float>(x_row[c]);
    const float row_mean = warp_sum(sum) / static_cast<float>(cols);

    float squares = 0.0f;
    for (int64_t c = lane; c < cols; c += kWarpSize) {
        const float d = static_cast<float>(x_row[c]) - row_mean;
        squares += d * d;
    }
    const float row_rstd = rsqrtf(warp_sum(squares) / static_cast<float>(cols) + eps);

    for (int64_t c = lane; c < cols; c += kWarpSize)
        y_row[c] = T((static_cast<float>(x_row[c]) - row_mean) * row_rstd * static_cast<float>(gamma[c]) +
                     static_cast<float>(beta[c]));
    if (lane == 0) {
        mean[row] = row_mean;
        rstd[row] = row_rstd;
    }
}

// ---------------------------------------------------------------- backward: dx
// With xhat = (x - mean) * rstd and g = dy * gamma:
//   dx = rstd * (g - mean_over_row(g) - xhat * mean_over_row(g * xhat)).

template <int kFloat4PerLane>
__global__ void __launch_bounds__(kRowKernelThreads)
    layernorm_backward_dx_float4_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                        const float* __restrict__ gamma, const float* __restrict__ mean,
                                        const float* __restrict__ rstd, float* __restrict__ dx, int64_t rows,
                                        int cols) {
    const int lane = threadIdx.x % kWarpSize;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
    if (row >= rows) return;  // whole warp, as in the forward
    const int row_float4s = cols / 4;
    const float4* dy_row = reinterpret_cast<const float4*>(dy + row * cols);
    const float4* x_row = reinterpret_cast<const float4*>(x + row * cols);
    const float4* gamma4 = reinterpret_cast<const float4*>(gamma);
    const float row_mean = mean[row];
    const float row_rstd = rstd[row];

    float4 g[kFloat4PerLane];
    float4 xhat[kFloat4PerLane];
    float sum_g = 0.0f;
    float sum_g_xhat = 0.0f;
#pragma unroll
    for (int k = 0; k < kFloat4PerLane; ++k) {
        const int i = lane + k * kWarpSize;
        g[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        xhat[k] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (i < row_float4s) {
            const float4 d = dy_row[i];
            const float4 v = x_row[i];
            const float4 w = gamma4[i];
            g[k] = make_float4(d.x * w.x, d.y * w.y, d.z * w.z, d.w * w.w);
            xhat[k] = make_float4((v.x - row_mean) * row_rstd, (v.y - row_mean) * row_rstd,
                                  (v.z - row_mean) * row_rstd, (v.w - row_mean) * row_rstd);
            sum_g += sum4(g[k]);
            sum_g_xhat += (g[k].x * xhat[k].x + g[k].y * xhat[k].y) + (g[k].z * xhat[k].z + g[k].w * xhat[k].w);
        }
    }
    const float mean_g = warp_sum(sum_g) / cols;
    const float mean_g_xhat = warp_sum(sum_g_xhat) / cols;

    float4* dx_row = reinterpret_cast<float4*>(dx + row * cols);
#pragma unroll
    for (int k = 0; k < kFloat4PerLane; ++k) {
        const int i = lane + k * kWarpSize;
        if (i < row_float4s) {
            float4 out;
            out.x = row_rstd * (g[k].x - mean_g - xhat[k].x * mean_g_xhat);
            out.y = row_rstd * (g[k].y - mean_g - xhat[k].y * mean_g_xhat);
            out.z = row_rstd * (g[k].z - mean_g - xhat[k].z * mean_g_xhat);
            out.w = row_rstd * (g[k].w - mean_g - xhat[k].w * mean_g_xhat);
            dx_row[i] = out;
        }
    }
}

// Any cols, any alignment, float32 or bfloat16: one pass for the two row sums, one to write dx.
template <typename T>
__global__ void __launch_bounds__(kRowKernelThreads)
    layernorm_backward_dx_scalar_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                        const T* __restrict__ gamma, const float* __restrict__ mean,
                                        const float* __restrict__ rstd, T* __restrict__ dx, int64_t rows,
                                        int64_t cols) {
    const int lane = threadIdx.x % kWarpSize;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarpSize;
    if (row >= rows) return;  // whole warp
    const T* dy_row = dy + row * cols;
    const T* x_row = x + row * cols;
    T* dx_row = dx + row * cols;
    const float row_mean = mean[row];
    const float row_rstd = rstd[row];

    float sum_g = 0.0f;
    float sum_g_xhat = 0.0f;
    for (int64_t c = lane; c < cols; c += kWarpSize) {
        const float g = static_cast<float>(dy_row[c]) * static_cast<float>(gamma[c]);
        sum_g += g;
        sum_g_xhat += g * ((static_cast<float>(x_row[c]) - row_mean) * row_rstd);
    }
    const float mean_g = warp_sum(sum_g) / static_cast<float>(cols);
    const float mean_g_xhat = warp_sum(sum_g_xhat) / static_cast<float>(cols);

    for (int64_t c = lane; c < cols; c += kWarpSize) {
        const float g = static_cast<float>(dy_row[c]) * static_cast<float>(gamma[c]);
        const float xhat = (static_cast<float>(x_row[c]) - row_mean) * row_rstd;
        dx_row[c] = T(row_rstd * (g - mean_g - xhat * mean_g_xhat));
    }
}

// ---------------------------------------------------------------- backward: dgamma, dbeta
// Block (kColumnTile, kRowLanes) at grid (column tile, chunk). Thread (tx, ty) sums, in order, rows
// chunk_begin + ty, chunk_begin + ty + 8, ... of column tile * 32 + tx; thread (tx, 0) then adds
// the 8 row-lanes in lane order and writes the chunk's partials: partial_dgamma[chunk * cols + col]
// and the same for dbeta.
template <typename T>
__global__ void __launch_bounds__(kColumnTile * kRowLanes)
    layernorm_param_grad_partials_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                         const float* __restrict__ mean, const float* __restrict__ rstd,
                                         float* __restrict__ partial_dgamma, float* __restrict__ partial_dbeta,
                                         int64_t rows, int64_t cols, int64_t rows_per_chunk) {
    __shared__ float dgamma_lanes[kRowLanes][kColumnTile];
    __shared__ float dbeta_lanes[kRowLanes][kColumnTile];
    const int64_t col = static_cast<int64_t>(blockIdx.x) * kColumnTile + threadIdx.x;
    const int64_t chunk = blockIdx.y;
    const int64_t chunk_begin = chunk * rows_per_chunk;
    const int64_t chunk_end = chunk_begin + rows_per_chunk < rows ? chunk_begin + rows_per_chunk : rows;

    float dgamma_sum = 0.0f;
    float dbeta_sum = 0.0f;
    if (col < cols) {
        for (int64_t r = chunk_begin + threadIdx.y; r < chunk_end; r += kRowLanes) {
            const float d = static_cast<float>(dy[r * cols + col]);
            const float xhat = (static_cast<float>(x[r * cols + col]) - mean[r]) * rstd[r];
            dgamma_sum += d * xhat;
            dbeta_sum += d;
        }
    }
    dgamma_lanes[threadIdx.y][threadIdx.x] = dgamma_sum;
    dbeta_lanes[threadIdx.y][threadIdx.x] = dbeta_sum;
    __syncthreads();  // reached by every thread: no early return above
    if (threadIdx.y == 0 && col < cols) {
        float dgamma_total = 0.0f;
        float dbeta_total = 0.0f;
        for (int lane = 0; lane < kRowLanes; ++lane) {
            dgamma_total += dgamma_lanes[lane][threadIdx.x];
            dbeta_total += dbeta_lanes[lane][threadIdx.x];
        }
        partial_dgamma[chunk * cols + col] = dgamma_total;
        partial_dbeta[chunk * cols + col] = dbeta_total;
    }
}

// One thread per column adds the chunk partials in chunk order (rounded once to T).
template <typename T>
__global__ void layernorm_param_grad_finish_kernel(const float* __restrict__ partial_dgamma,
                                                   const float* __restrict__ partial_dbeta, T* __restrict__ dgamma,
                                                   T* __restrict__ dbeta, int64_t cols, int64_t chunks) {
    for (int64_t col = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; col < cols;
         col += (int64_t)gridDim.x * blockDim.x) {
        float dgamma_total = 0.0f;
        float dbeta_total = 0.0f;
        for (int64_t chunk = 0; chunk < chunks; ++chunk) {
            dgamma_total += partial_dgamma[chunk * cols + col];
            dbeta_total += partial_dbeta[chunk * cols + col];
        }
        dgamma[col] = T(dgamma_total);
        dbeta[col] = T(dbeta_total);
    }
}

// The launches shared by float32 and bfloat16; only float32 has the register (float4) path.
template <typename T>
void launch_layernorm_forward(const T* x, const T* gamma, const T* beta, T* y, float* mean, float* rstd,
                              int64_t rows, int64_t cols, double eps, cudaStream_t stream) {
    if (rows == 0 || cols == 0) return;
    const unsigned blocks = static_cast<unsigned>(ceil_div(rows, kWarpsPerBlock));
    const float eps_f = static_cast<float>(eps);
    int width = 0;
    if constexpr (std::is_same_v<T, float>) width = float4_per_lane(cols, {x, gamma, beta, y});
    if constexpr (std::is_same_v<T, float>) {
        if (width > 0) {
            dispatch_float4_width<1>(width, [&](auto width_constant) {
                constexpr int kWidth = decltype(width_constant)::value;
                layernorm_forward_float4_kernel<kWidth><<<blocks, kRowKernelThreads, 0, stream>>>(
                    x, gamma, beta, y, mean, rstd, rows, static_cast<int>(cols), eps_f);
            });
            CUDA_CHECK_LAUNCH();
            return;
        }
    }
    layernorm_forward_scalar_kernel<T><<<blocks, kRowKernelThreads, 0, stream>>>(x, gamma, beta, y, mean, rstd, rows,
                                                                                 cols, eps_f);
    CUDA_CHECK_LAUNCH();
}

template <typename T>
void launch_layernorm_backward(const T* dy, const T* x, const T* gamma, const float* mean, const float* rstd, T* dx,
                               T* dgamma, T* dbeta, float* workspace, int64_t rows, int64_t cols,
                               cudaStream_t stream) {
    if (cols == 0) return;
    if (rows == 0) {  // no rows: the parameter gradients are empty sums (all-zero bits in both types)
        CUDA_CHECK(cudaMemsetAsync(dgamma, 0, static_cast<size_t>(cols) * sizeof(T), stream));
        CUDA_CHECK(cudaMemsetAsync(dbeta, 0, static_cast<size_t>(cols) * sizeof(T), stream));
        return;
    }

    const unsigned row_blocks = static_cast<unsigned>(ceil_div(rows, kWarpsPerBlock));
    bool done = false;
    if constexpr (std::is_same_v<T, float>) {
        const int width = float4_per_lane(cols, {dy, x, gamma, dx});
        if (width > 0) {
            dispatch_float4_width<1>(width, [&](auto width_constant) {
                constexpr int kWidth = decltype(width_constant)::value;
                layernorm_backward_dx_float4_kernel<kWidth><<<row_blocks, kRowKernelThreads, 0, stream>>>(
                    dy, x, gamma, mean, rstd, dx, rows, static_cast<int>(cols));
            });
            done = true;
        }
    }
    if (!done)
        layernorm_backward_dx_scalar_kernel<T><<<row_blocks, kRowKernelThreads, 0, stream>>>(dy, x, gamma, mean, rstd,
                                                                                             dx, rows, cols);
    CUDA_CHECK_LAUNCH();

    const ParamGradChunks chunks = param_grad_chunks(rows);
    float* partial_dgamma = workspace;
    float* partial_dbeta = workspace + chunks.count * cols;
    const dim3 tile_grid(static_cast<unsigned>(ceil_div(cols, kColumnTile)), static_cast<unsigned>(chunks.count));
    const dim3 tile_block(kColumnTile, kRowLanes);
    layernorm_param_grad_partials_kernel<T><<<tile_grid, tile_block, 0, stream>>>(
        dy, x, mean, rstd, partial_dgamma, partial_dbeta, rows, cols, chunks.rows_per_chunk);
    CUDA_CHECK_LAUNCH();
    layernorm_param_grad_finish_kernel<T><<<cuda_detail::grid_for(cols, kFinishThreads), kFinishThreads, 0, stream>>>(
        partial_dgamma, partial_dbeta, dgamma, dbeta, cols, chunks.count);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

void layernorm_forward(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd,
                       int64_t rows, int64_t cols, double eps, cudaStream_t stream) {
    launch_layernorm_forward(x, gamma, beta, y, mean, rstd, rows, cols, eps, stream);
}

void layernorm_forward(const bfloat16* x, const bfloat16* gamma, const bfloat16* beta, bfloat16* y, float* mean,
                       float* rstd, int64_t rows, int64_t cols, double eps, cudaStream_t stream) {
    launch_layernorm_forward(x, gamma, beta, y, mean, rstd, rows, cols, eps, stream);
}

int64_t layernorm_backward_workspace_floats(int64_t rows, int64_t cols) {
    return 2 * param_grad_chunks(rows).count * cols;
}

void layernorm_backward(const float* dy, const float* x, const float* gamma, const float* mean, const float* rstd,
                        float* dx, float* dgamma, float* dbeta, float* workspace, int64_t rows, int64_t cols,
                        cudaStream_t stream) {
    launch_layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, workspace, rows, cols, stream);
}

void layernorm_backward(const bfloat16* dy, const bfloat16* x, const bfloat16* gamma, const float* mean,
                        const float* rstd, bfloat16* dx, bfloat16* dgamma, bfloat16* dbeta, float* workspace,
                        int64_t rows, int64_t cols, cudaStream_t stream) {
    launch_layernorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta, workspace, rows, cols, stream);
}

}  // namespace mp::kernels::cuda
