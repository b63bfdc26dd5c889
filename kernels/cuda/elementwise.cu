// CUDA elementwise kernels (add, sub, mul, scale, axpy, bias_add; float32 and bfloat16) and
// deterministic reductions (sum_rows, sum, sum_squares; float32).
//
// Floor (H100, ~3 TB/s): add/sub/mul and axpy move 12 bytes per element (two reads, one write),
// scale 8, bias_add ~8 (the bias row stays in L2), the reductions read 4 — e.g. a 16384 x 768
// add moves 151 MB, ~50 us.
//
// Design:
// - Elementwise: one grid-stride loop of float4 loads/stores when every pointer is 16-byte
//   aligned, then a scalar loop for the n % 4 tail (or for everything when a pointer is not
//   aligned, e.g. a dim-0 slice of an odd-width tensor). The operations use __fadd_rn /
//   __fmul_rn so nvcc cannot contract axpy into an FMA: each output is the same one or two IEEE
//   roundings as the CPU reference, hence bitwise equal to it. bfloat16: the same operations on
//   values loaded to float32, rounded to nearest even once on store (a scalar grid-stride loop;
//   half the bytes of float32, so its floor is half as long).
// - sum / sum_squares: a fixed-shape two-pass tree, no atomics. Pass 1 runs a grid of
//   reduce_blocks(n) blocks (a function of n only); each thread accumulates its grid-stride
//   elements in order, the block reduces with warp shuffles and writes one partial to the
//   workspace. Pass 2 is the same kernel on one block over the partials. Same n, same order,
//   same bits, every run.
// - Multi-tensor (multi_tensor.cuh): sum_squares_multi_tensor gives one partial per chunk of
//   every tensor (pass 1, one launch per 192 tensors) and sums the partials in double in one
//   block (pass 2): the global gradient norm in two launches whatever the parameter count.
//   scale_multi_tensor scales every tensor in place (clipping), one launch. Floors for GPT-2
//   124M's 148 gradients (124.4M floats): the norm reads 498 MB (~170 us), scaling reads and
//   writes them (995 MB, ~330 us).
// - sum_rows: each thread owns one column and walks its rows in order (adjacent threads read
//   adjacent columns, so loads coalesce). With few columns the rows are cut into chunks
//   (blockIdx.y), each chunk's column sums go to the workspace, and the same kernel then sums
//   the chunks in order. The chunk count depends only on (rows, cols).
#include <cstdint>

#include "kernels/common/bfloat16.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/multi_tensor.cuh"
#include "kernels/elementwise.h"

namespace mp::kernels::cuda {

namespace {

constexpr int kBlock = 256;            // threads per block for every kernel here
constexpr int kMaxReduceBlocks = 1024;  // pass-1 blocks of sum / sum_squares (~8 per SM)
constexpr int kSumRowsTargetBlocks = 1024;
constexpr int64_t kSumRowsMinRowsPerChunk = 32;

bool is_aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

__device__ inline int64_t global_thread_index() { return blockIdx.x * (int64_t)blockDim.x + threadIdx.x; }
__device__ inline int64_t grid_stride() { return (int64_t)gridDim.x * blockDim.x; }

// ---------------------------------------------------------------- elementwise

struct AddOp {
    __device__ float operator()(float a, float b) const { return __fadd_rn(a, b); }
};
struct SubOp {
    __device__ float operator()(float a, float b) const { return __fsub_rn(a, b); }
};
struct MulOp {
    __device__ float operator()(float a, float b) const { return __fmul_rn(a, b); }
};
// y + alpha * x with two roundings, as the CPU reference.
struct AxpyOp {
    float alpha;
    __device__ float operator()(float y, float x) const { return __fadd_rn(y, __fmul_rn(alpha, x)); }
};
struct ScaleOp {
    float s;
    __device__ float operator()(float x) const { return __fmul_rn(s, x); }
};

// out[i] = op(a[i], b[i]). The first vector_count float4s are done vectorised (vector_count is
// n / 4 when all pointers are aligned, else 0); elements from 4 * vector_count on are scalar.
// out may alias a (axpy), so no __restrict__.
template <typename Op>
__global__ void binary_kernel(float* out, const float* a, const float* b, int64_t n, int64_t vector_count, Op op) {
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int64_t i = global_thread_index(); i < vector_count; i += grid_stride()) {
        float4 va = a4[i];
        float4 vb = b4[i];
        out4[i] = make_float4(op(va.x, vb.x), op(va.y, vb.y), op(va.z, vb.z), op(va.w, vb.w));
    }
    for (int64_t i = 4 * vector_count + global_thread_index(); i < n; i += grid_stride()) out[i] = op(a[i], b[i]);
}

// out[i] = op(x[i]), vectorised as binary_kernel.
template <typename Op>
__global__ void unary_kernel(float* out, const float* x, int64_t n, int64_t vector_count, Op op) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int64_t i = global_thread_index(); i < vector_count; i += grid_stride()) {
        float4 v = x4[i];
        out4[i] = make_float4(op(v.x), op(v.y), op(v.z), op(v.w));
    }
    for (int64_t i = 4 * vector_count + global_thread_index(); i < n; i += grid_stride()) out[i] = op(x[i]);
}

// out[i] = x[i] + bias[i % cols]. Vectorised only when cols % 4 == 0 (then the four elements of a
// float4 share a row and bias[c..c+3] is itself an aligned float4); vector_count is n / 4 or 0.
__global__ void bias_add_kernel(float* out, const float* x, const float* bias, int64_t n, int64_t cols,
                                int64_t vector_count) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    const float4* bias4 = reinterpret_cast<const float4*>(bias);
    float4* out4 = reinterpret_cast<float4*>(out);
    for (int64_t i = global_thread_index(); i < vector_count; i += grid_stride()) {
        int64_t col = (4 * i) % cols;
        float4 v = x4[i];
        float4 b = bias4[col / 4];
        out4[i] = make_float4(__fadd_rn(v.x, b.x), __fadd_rn(v.y, b.y), __fadd_rn(v.z, b.z), __fadd_rn(v.w, b.w));
    }
    for (int64_t i = 4 * vector_count + global_thread_index(); i < n; i += grid_stride())
        out[i] = __fadd_rn(x[i], bias[i % cols]);
}

template <typename Op>
void launch_binary(float* out, const float* a, const float* b, int64_t n, Op op, cudaStream_t stream) {
    if (n == 0) return;
    bool aligned = is_aligned16(out) && is_aligned16(a) && is_aligned16(b);
    int64_t vector_count = aligned ? n / 4 : 0;
    // Enough threads for the float4 part; the tail (< 4 elements when aligned) fits in them.
    int64_t work_items = aligned ? vector_count + n % 4 : n;
    binary_kernel<<<cuda_detail::grid_for(work_items, kBlock), kBlock, 0, stream>>>(out, a, b, n, vector_count, op);
    CUDA_CHECK_LAUNCH();
}

// bfloat16: out[i] = op(a[i], b[i]) computed in float32 and rounded once on store.
template <typename Op>
__global__ void binary_bf16_kernel(bfloat16* out, const bfloat16* a, const bfloat16* b, int64_t n, Op op) {
    for (int64_t i = global_thread_index(); i < n; i += grid_stride())
        out[i] = bfloat16(op(static_cast<float>(a[i]), static_cast<float>(b[i])));
}

template <typename Op>
__global__ void unary_bf16_kernel(bfloat16* out, const bfloat16* x, int64_t n, Op op) {
    for (int64_t i = global_thread_index(); i < n; i += grid_stride()) out[i] = bfloat16(op(static_cast<float>(x[i])));
}

__global__ void bias_add_bf16_kernel(bfloat16* out, const bfloat16* x, const bfloat16* bias, int64_t n, int64_t cols) {
    for (int64_t i = global_thread_index(); i < n; i += grid_stride())
        out[i] = bfloat16(__fadd_rn(static_cast<float>(x[i]), static_cast<float>(bias[i % cols])));
}

// out[i] = x[i] converted between float32 and bfloat16 (to bfloat16: round to nearest even).
template <typename To, typename From>
__global__ void convert_kernel(To* out, const From* x, int64_t n) {
    for (int64_t i = global_thread_index(); i < n; i += grid_stride()) out[i] = To(static_cast<float>(x[i]));
}

template <typename Op>
void launch_binary(bfloat16* out, const bfloat16* a, const bfloat16* b, int64_t n, Op op, cudaStream_t stream) {
    if (n == 0) return;
    binary_bf16_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(out, a, b, n, op);
    CUDA_CHECK_LAUNCH();
}

// ---------------------------------------------------------------- reductions

struct IdentityOp {
    __device__ float operator()(float x) const { return x; }
};
struct SquareOp {
    __device__ float operator()(float x) const { return x * x; }
};

// Sum of v over the 32 lanes of a warp, left in lane 0; every lane must call it.
__device__ inline float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024), valid in thread 0; every
// thread must call it. Fixed order: lanes by shuffle tree, then warps by shuffle tree.
__device__ inline float block_sum(float v) {
    __shared__ float warp_sums[32];
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int num_warps = blockDim.x / 32;
    v = warp_sum(v);
    if (lane == 0) warp_sums[warp] = v;
    __syncthreads();
    float total = 0.0f;
    if (warp == 0) total = warp_sum(lane < num_warps ? warp_sums[lane] : 0.0f);
    return total;
}

// partials[blockIdx.x] = sum over this block's grid-stride elements of op(x[i]). Vectorised as
// the elementwise kernels (vector_count is n / 4 when x is aligned, else 0).
template <typename Op>
__global__ void reduce_kernel(float* partials, const float* x, int64_t n, int64_t vector_count, Op op) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float acc = 0.0f;
    for (int64_t i = global_thread_index(); i < vector_count; i += grid_stride()) {
        float4 v = x4[i];
        acc += op(v.x);
        acc += op(v.y);
        acc += op(v.z);
        acc += op(v.w);
    }
    for (int64_t i = 4 * vector_count + global_thread_index(); i < n; i += grid_stride()) acc += op(x[i]);
    float block_total = block_sum(acc);
    if (threadIdx.x == 0) partials[blockIdx.x] = block_total;
}

// partials[first_block + b] = the sum of squares of block b's chunk (multi_tensor.cuh).
__global__ void sum_squares_chunks_kernel(const __grid_constant__ multi_tensor::Table<1> table, float* partials,
                                          int first_block) {
    const auto [t, begin, end] = multi_tensor::chunk_of_block(table, blockIdx.x);
    const float* x = table.pointers[0][t];
    float acc = 0.0f;
    int64_t scalar_begin = begin;
    if (table.aligned[t]) {
        for (int64_t i = begin / 4 + threadIdx.x; i < end / 4; i += blockDim.x) {
            const float4 v = reinterpret_cast<const float4*>(x)[i];
            acc += v.x * v.x;
            acc += v.y * v.y;
            acc += v.z * v.z;
            acc += v.w * v.w;
        }
        scalar_begin = end / 4 * 4;
    }
    for (int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x) acc += x[i] * x[i];
    const float block_total = block_sum(acc);
    if (threadIdx.x == 0) partials[first_block + blockIdx.x] = block_total;
}

// out[0] = the n partials summed in double (each thread its strided share in order, then a fixed
// tree), rounded once to float. One block.
__global__ void sum_partials_in_double_kernel(float* out, const float* partials, int64_t n) {
    __shared__ double sums[kBlock];
    double acc = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += static_cast<double>(partials[i]);
    sums[threadIdx.x] = acc;
    __syncthreads();
    for (int width = kBlock / 2; width > 0; width /= 2) {
        if (threadIdx.x < width) sums[threadIdx.x] += sums[threadIdx.x + width];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = static_cast<float>(sums[0]);
}

__global__ void scale_chunks_kernel(const __grid_constant__ multi_tensor::Table<1> table, float s) {
    const auto [t, begin, end] = multi_tensor::chunk_of_block(table, blockIdx.x);
    float* x = table.pointers[0][t];
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) x[i] = __fmul_rn(s, x[i]);
}

// Pass-1 blocks for n elements: one float4 per thread per block, capped. Depends on n only.
int reduce_blocks(int64_t n) {
    int64_t blocks = (n + 4 * kBlock - 1) / (4 * kBlock);
    if (blocks < 1) blocks = 1;
    if (blocks > kMaxReduceBlocks) blocks = kMaxReduceBlocks;
    return static_cast<int>(blocks);
}

template <typename Op>
void launch_reduce(float* out, const float* x, int64_t n, float* workspace, Op op, cudaStream_t stream) {
    const int blocks = reduce_blocks(n);
    const int64_t vector_count = is_aligned16(x) ? n / 4 : 0;
    if (blocks == 1) {  // one block already reduces everything: write the result directly
        reduce_kernel<<<1, kBlock, 0, stream>>>(out, x, n, vector_count, op);
        CUDA_CHECK_LAUNCH();
        return;
    }
    reduce_kernel<<<blocks, kBlock, 0, stream>>>(workspace, x, n, vector_count, op);
    CUDA_CHECK_LAUNCH();
    const int64_t partial_vector_count = is_aligned16(workspace) ? blocks / 4 : 0;
    reduce_kernel<<<1, kBlock, 0, stream>>>(out, workspace, blocks, partial_vector_count, IdentityOp{});
    CUDA_CHECK_LAUNCH();
}

// out[chunk * cols + c] = sum of x[r][c] for r in [chunk * rows_per_chunk, (chunk+1) * rows_per_chunk)
// clipped to rows; chunk = blockIdx.y, c = one column per thread along x.
__global__ void sum_rows_kernel(float* out, const float* x, int64_t rows, int64_t cols, int64_t rows_per_chunk) {
    const int64_t col = global_thread_index();
    if (col >= cols) return;
    const int64_t first_row = blockIdx.y * rows_per_chunk;
    const int64_t end_row = min(rows, first_row + rows_per_chunk);
    float acc = 0.0f;
#pragma unroll 4
    for (int64_t r = first_row; r < end_row; ++r) acc += x[r * cols + col];
    out[blockIdx.y * cols + col] = acc;
}

// How sum_rows cuts rows into chunks: enough blocks in total to fill the GPU, at least
// kSumRowsMinRowsPerChunk rows per chunk. Depends on (rows, cols) only.
struct RowChunks {
    int64_t count;
    int64_t rows_per_chunk;
};

RowChunks sum_rows_chunks(int64_t rows, int64_t cols) {
    const int64_t column_blocks = (cols + kBlock - 1) / kBlock;
    const int64_t max_chunks = (rows + kSumRowsMinRowsPerChunk - 1) / kSumRowsMinRowsPerChunk;
    int64_t wanted = column_blocks > 0 ? kSumRowsTargetBlocks / column_blocks : 1;
    if (wanted > max_chunks) wanted = max_chunks;
    if (wanted < 1) wanted = 1;
    const int64_t rows_per_chunk = rows > 0 ? (rows + wanted - 1) / wanted : 1;
    const int64_t count = rows > 0 ? (rows + rows_per_chunk - 1) / rows_per_chunk : 1;  // no empty chunks
    return RowChunks{count, rows_per_chunk};
}

}  // namespace

void add(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream) {
    launch_binary(out, a, b, n, AddOp{}, stream);
}

void sub(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream) {
    launch_binary(out, a, b, n, SubOp{}, stream);
}

void mul(float* out, const float* a, const float* b, int64_t n, cudaStream_t stream) {
    launch_binary(out, a, b, n, MulOp{}, stream);
}

void axpy(float* y, const float* x, int64_t n, double alpha, cudaStream_t stream) {
    launch_binary(y, y, x, n, AxpyOp{static_cast<float>(alpha)}, stream);
}

void scale(float* out, const float* x, int64_t n, double s, cudaStream_t stream) {
    if (n == 0) return;
    bool aligned = is_aligned16(out) && is_aligned16(x);
    int64_t vector_count = aligned ? n / 4 : 0;
    int64_t work_items = aligned ? vector_count + n % 4 : n;
    unary_kernel<<<cuda_detail::grid_for(work_items, kBlock), kBlock, 0, stream>>>(out, x, n, vector_count,
                                                                                    ScaleOp{static_cast<float>(s)});
    CUDA_CHECK_LAUNCH();
}

void add(bfloat16* out, const bfloat16* a, const bfloat16* b, int64_t n, cudaStream_t stream) {
    launch_binary(out, a, b, n, AddOp{}, stream);
}

void sub(bfloat16* out, const bfloat16* a, const bfloat16* b, int64_t n, cudaStream_t stream) {
    launch_binary(out, a, b, n, SubOp{}, stream);
}

void mul(bfloat16* out, const bfloat16* a, const bfloat16* b, int64_t n, cudaStream_t stream) {
    launch_binary(out, a, b, n, MulOp{}, stream);
}

void axpy(bfloat16* y, const bfloat16* x, int64_t n, double alpha, cudaStream_t stream) {
    launch_binary(y, y, x, n, AxpyOp{static_cast<float>(alpha)}, stream);
}

void scale(bfloat16* out, const bfloat16* x, int64_t n, double s, cudaStream_t stream) {
    if (n == 0) return;
    const ScaleOp op{static_cast<float>(s)};
    unary_bf16_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(out, x, n, op);
    CUDA_CHECK_LAUNCH();
}

void bias_add(bfloat16* out, const bfloat16* x, const bfloat16* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
    const int64_t n = rows * cols;
    if (n == 0) return;
    bias_add_bf16_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(out, x, bias, n, cols);
    CUDA_CHECK_LAUNCH();
}

void convert(bfloat16* out, const float* x, int64_t n, cudaStream_t stream) {
    if (n == 0) return;
    convert_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(out, x, n);
    CUDA_CHECK_LAUNCH();
}

void convert(float* out, const bfloat16* x, int64_t n, cudaStream_t stream) {
    if (n == 0) return;
    convert_kernel<<<cuda_detail::grid_for(n, kBlock), kBlock, 0, stream>>>(out, x, n);
    CUDA_CHECK_LAUNCH();
}

void bias_add(float* out, const float* x, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
    const int64_t n = rows * cols;
    if (n == 0) return;
    bool vectorise = cols % 4 == 0 && is_aligned16(out) && is_aligned16(x) && is_aligned16(bias);
    int64_t vector_count = vectorise ? n / 4 : 0;
    int64_t work_items = vectorise ? vector_count : n;
    bias_add_kernel<<<cuda_detail::grid_for(work_items, kBlock), kBlock, 0, stream>>>(out, x, bias, n, cols,
                                                                                       vector_count);
    CUDA_CHECK_LAUNCH();
}

size_t sum_rows_workspace_floats(int64_t rows, int64_t cols) {
    RowChunks chunks = sum_rows_chunks(rows, cols);
    return chunks.count == 1 ? 0 : static_cast<size_t>(chunks.count * cols);
}

void sum_rows(float* out, const float* x, int64_t rows, int64_t cols, float* workspace, cudaStream_t stream) {
    if (cols == 0) return;
    const RowChunks chunks = sum_rows_chunks(rows, cols);
    const unsigned column_blocks = static_cast<unsigned>((cols + kBlock - 1) / kBlock);
    if (chunks.count == 1) {  // one chunk of all rows (also rows == 0: writes zeros)
        sum_rows_kernel<<<dim3(column_blocks, 1), kBlock, 0, stream>>>(out, x, rows, cols, chunks.rows_per_chunk);
        CUDA_CHECK_LAUNCH();
        return;
    }
    const unsigned chunk_count = static_cast<unsigned>(chunks.count);
    sum_rows_kernel<<<dim3(column_blocks, chunk_count), kBlock, 0, stream>>>(workspace, x, rows, cols,
                                                                             chunks.rows_per_chunk);
    CUDA_CHECK_LAUNCH();
    // The chunk sums form a (chunks.count x cols) matrix: sum its rows in order, as one chunk.
    sum_rows_kernel<<<dim3(column_blocks, 1), kBlock, 0, stream>>>(out, workspace, chunks.count, cols, chunks.count);
    CUDA_CHECK_LAUNCH();
}

size_t sum_workspace_floats(int64_t n) {
    const int blocks = reduce_blocks(n);
    return blocks == 1 ? 0 : static_cast<size_t>(blocks);
}

void sum(float* out, const float* x, int64_t n, float* workspace, cudaStream_t stream) {
    launch_reduce(out, x, n, workspace, IdentityOp{}, stream);
}

void sum_squares(float* out, const float* x, int64_t n, float* workspace, cudaStream_t stream) {
    launch_reduce(out, x, n, workspace, SquareOp{}, stream);
}

size_t sum_squares_multi_tensor_workspace_floats(const int64_t* sizes, int64_t count) {
    size_t chunks = 0;
    for (int64_t i = 0; i < count; ++i) chunks += static_cast<size_t>(multi_tensor::chunks_of(sizes[i]));
    return chunks;
}

void sum_squares_multi_tensor(float* out, const float* const* tensors, const int64_t* sizes, int64_t count,
                              float* workspace, cudaStream_t stream) {
    const size_t chunks = sum_squares_multi_tensor_workspace_floats(sizes, count);
    if (chunks == 0) {
        CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(float), stream));
        return;
    }
    multi_tensor::for_each_table<1>(
        count, sizes, [&](int64_t i, int) { return const_cast<float*>(tensors[i]); },
        [&](const multi_tensor::Table<1>& table, int blocks, int first_block) {
            sum_squares_chunks_kernel<<<blocks, kBlock, 0, stream>>>(table, workspace, first_block);
            CUDA_CHECK_LAUNCH();
        });
    sum_partials_in_double_kernel<<<1, kBlock, 0, stream>>>(out, workspace, static_cast<int64_t>(chunks));
    CUDA_CHECK_LAUNCH();
}

void scale_multi_tensor(float* const* tensors, const int64_t* sizes, int64_t count, double s, cudaStream_t stream) {
    const float factor = static_cast<float>(s);
    multi_tensor::for_each_table<1>(
        count, sizes, [&](int64_t i, int) { return tensors[i]; },
        [&](const multi_tensor::Table<1>& table, int blocks, int) {
            scale_chunks_kernel<<<blocks, kBlock, 0, stream>>>(table, factor);
            CUDA_CHECK_LAUNCH();
        });
}

}  // namespace mp::kernels::cuda
