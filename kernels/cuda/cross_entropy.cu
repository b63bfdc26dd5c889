// CUDA cross-entropy fused with softmax, float32 and bfloat16 logits (losses, logsumexp and
// dloss in float32; bfloat16 rows take a scalar loop, half the bytes), with an ignore index.
// Forward: per row, logsumexp = max + log(sum exp(x - max)) and loss = logsumexp - x[target]
// (0 for ignored rows). Backward: dlogits = dloss * (exp(x - logsumexp) - [j == target]).
//
// Floor (H100, ~3 TB/s): the forward must read the logits once, N*V*4 bytes (16384 x 50257:
// 3.3 GB, ~1.1 ms); the backward reads logits and writes dlogits, 8 B per element (~2.2 ms).
// PyTorch eager forward+backward takes 9.74 ms on that shape. bfloat16 logits halve these: 1.65 GB
// per pass over 16384 x 50257 (forward ~0.55 ms, forward + backward ~1.65 ms). The fused kernel's
// floor is one read of the vocabulary columns and one write of the whole padded row (its second
// sweep reads from L2): 16384 x (50257 + 50304) x 2 B = 3.3 GB, ~1.1 ms (half that at B 8).
//
// Design: one 512-thread block per row (V is large: 50257 floats is ~25 float4 per thread).
// - Forward is a single pass with an online max/sum: each thread keeps a running max and the sum
//   of exp(x - max), rescaling the sum when the max grows; the (max, sum) pairs are merged by warp
//   shuffles, then across warps through shared memory. Rows never re-read.
// - Loads are float4 where possible. V = 50257 is odd, so row starts are generally not 16-byte
//   aligned: each row is split into a scalar head up to the first 16-byte boundary, a float4 body
//   and a scalar tail. The backward also writes dlogits; it uses float4 only when the dlogits row
//   has the same alignment as the logits row (always true for fresh, equally-offset tensors),
//   else the row is streamed with scalar accesses.
// - Deterministic: a fixed reduction tree, no atomics. Exponentials use expf (not __expf): the
//   kernels are memory bound and expf keeps the result within ~1 ulp of the reference.
// - -inf logits (masked columns) contribute 0; a NaN logit propagates to the row's results.
// - fused (forward + backward, the gradient over the logits, llm.c's layout): the forward's pass
//   then a second sweep of the row, which is still in L2 (50304 bf16 = 100 KB per row), writing
//   dlogits in place: 2 reads + 1 write per element like forward + backward, but no second
//   (rows x V) buffer and one launch; padded columns get 0.
// - mean weight (1 / counted rows): one block counts the targets that are not ignore_index (an
//   integer sum, so any order gives the same count) and one thread divides in double. Reads 4 B
//   per row (64 KB at GPT-2's 16384 rows: a few microseconds on one SM, launch-bound).
#include <cmath>
#include <cstdint>

#include <type_traits>

#include "kernels/common/bfloat16.h"
#include "kernels/cross_entropy.h"
#include "kernels/cuda/check.cuh"

namespace mp::kernels::cuda {

namespace {

constexpr int kThreads = 512;
constexpr int kWarps = kThreads / 32;
constexpr unsigned kFullMask = 0xffffffffu;
// Rows per grid: larger row counts are covered by a grid-stride loop over rows.
constexpr int64_t kMaxBlocks = 65535LL * 16;

// A partial softmax denominator: `sum` of exp(x - max) over the elements seen, `max` their maximum.
struct MaxSum {
    float max;
    float sum;
};

// The shift that keeps exponents finite: the max, or 0 while every element seen is -inf (then all
// exp(x - 0) are 0 and a NaN element still yields NaN).
__device__ __forceinline__ float safe_shift(float max) { return max == -INFINITY ? 0.0f : max; }

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
    float max = fmaxf(a.max, b.max);
    float shift = safe_shift(max);
    return {max, a.sum * expf(a.max - shift) + b.sum * expf(b.max - shift)};
}

__device__ __forceinline__ void absorb(MaxSum& state, float x) {
    float max = fmaxf(state.max, x);
    float shift = safe_shift(max);
    state.sum = state.sum * expf(state.max - shift) + expf(x - shift);
    state.max = max;
}

__device__ __forceinline__ void absorb4(MaxSum& state, float4 x) {
    float max = fmaxf(fmaxf(state.max, fmaxf(x.x, x.y)), fmaxf(x.z, x.w));
    float shift = safe_shift(max);
    state.sum = state.sum * expf(state.max - shift) +
                ((expf(x.x - shift) + expf(x.y - shift)) + (expf(x.z - shift) + expf(x.w - shift)));
    state.max = max;
}

// Merges every thread's MaxSum; the result is valid in thread 0. `warp_partials` is reused by the
// next call only after the caller's __syncthreads().
__device__ MaxSum block_reduce(MaxSum state, MaxSum* warp_partials) {
    for (int offset = 16; offset > 0; offset /= 2) {
        MaxSum other{__shfl_xor_sync(kFullMask, state.max, offset), __shfl_xor_sync(kFullMask, state.sum, offset)};
        state = merge(state, other);
    }
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    if (lane == 0) warp_partials[warp] = state;
    __syncthreads();
    if (warp == 0) {
        state = lane < kWarps ? warp_partials[lane] : MaxSum{-INFINITY, 0.0f};
        for (int offset = 16; offset > 0; offset /= 2) {
            MaxSum other{__shfl_xor_sync(kFullMask, state.max, offset),
                         __shfl_xor_sync(kFullMask, state.sum, offset)};
            state = merge(state, other);
        }
    }
    return state;
}

// A row split into a scalar head [0, head), a float4 body of `vecs` vectors starting at element
// head (16-byte aligned), and a scalar tail [head + 4 * vecs, vocab).
struct RowSplit {
    int64_t head;
    int64_t vecs;
};

__device__ __forceinline__ int64_t elements_to_alignment(const float* row) {
    int64_t misaligned_floats = static_cast<int64_t>((reinterpret_cast<uintptr_t>(row) % 16) / sizeof(float));
    return (4 - misaligned_floats) % 4;
}

__device__ __forceinline__ RowSplit split_row(int64_t head, int64_t vocab) {
    if (head > vocab) head = vocab;
    return {head, (vocab - head) / 4};
}

// Every thread's partial (max, sum) over the row's first `vocab` elements, merged into thread 0's:
// float rows take a float4 body when the row start allows; bfloat16 a scalar loop widened to float32.
template <typename T>
__device__ MaxSum row_max_sum(const T* row_logits, int64_t vocab, MaxSum* warp_partials) {
    MaxSum state{-INFINITY, 0.0f};
    if constexpr (std::is_same_v<T, float>) {
        const RowSplit split = split_row(elements_to_alignment(row_logits), vocab);
        const float4* body = reinterpret_cast<const float4*>(row_logits + split.head);
        const int64_t tail_start = split.head + 4 * split.vecs;
        for (int64_t j = threadIdx.x; j < split.head; j += kThreads) absorb(state, row_logits[j]);
        // Unrolled so that several independent float4 loads are in flight per thread.
#pragma unroll 4
        for (int64_t i = threadIdx.x; i < split.vecs; i += kThreads) absorb4(state, body[i]);
        for (int64_t j = tail_start + threadIdx.x; j < vocab; j += kThreads) absorb(state, row_logits[j]);
    } else {
        for (int64_t j = threadIdx.x; j < vocab; j += kThreads) absorb(state, static_cast<float>(row_logits[j]));
    }
    return block_reduce(state, warp_partials);
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ logits, const int32_t* __restrict__ targets, float* __restrict__ losses,
                   float* __restrict__ logsumexp, int64_t rows, int64_t vocab, int ignore_index) {
    __shared__ MaxSum warp_partials[kWarps];
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* row_logits = logits + row * vocab;
        const MaxSum state = row_max_sum(row_logits, vocab, warp_partials);

        if (threadIdx.x == 0) {
            const float lse = state.max + logf(state.sum);
            const int32_t target = targets[row];
            float loss;
            if (target == ignore_index) {
                loss = 0.0f;
            } else if (target >= 0 && target < vocab) {
                loss = lse - static_cast<float>(row_logits[target]);
            } else {
                loss = NAN;  // unchecked bad target: visible, never an out-of-bounds read
            }
            logsumexp[row] = lse;
            losses[row] = loss;
        }
        __syncthreads();  // warp_partials is rewritten by the next row
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ logits, const int32_t* __restrict__ targets,
                    const float* __restrict__ logsumexp, const float* __restrict__ dlosses,
                    T* __restrict__ dlogits, int64_t rows, int64_t vocab, int ignore_index) {
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        const T* row_logits = logits + row * vocab;
        T* row_grad = dlogits + row * vocab;
        const int32_t target = targets[row];
        const bool ignored = target == ignore_index;
        const bool valid = target >= 0 && target < vocab;
        const float lse = logsumexp[row];
        const float dloss = (ignored || valid) ? dlosses[row] : NAN;

        auto grad = [&](float x, int64_t j) {
            if (ignored) return 0.0f;
            const float probability = expf(x - lse);
            return dloss * (probability - (j == target ? 1.0f : 0.0f));
        };

        if constexpr (!std::is_same_v<T, float>) {  // bfloat16: scalar, each gradient rounded once
            for (int64_t j = threadIdx.x; j < vocab; j += kThreads)
                row_grad[j] = T(grad(static_cast<float>(row_logits[j]), j));
            continue;
        } else {
            // float4 only when the dlogits row is aligned like the logits row; else all scalar.
            int64_t head = elements_to_alignment(row_logits);
            if (elements_to_alignment(row_grad) != head) head = vocab;
            const RowSplit split = split_row(head, vocab);
            const float4* body_in = reinterpret_cast<const float4*>(row_logits + split.head);
            float4* body_out = reinterpret_cast<float4*>(row_grad + split.head);
            const int64_t tail_start = split.head + 4 * split.vecs;

            for (int64_t j = threadIdx.x; j < split.head; j += kThreads) row_grad[j] = grad(row_logits[j], j);
#pragma unroll 4
            for (int64_t i = threadIdx.x; i < split.vecs; i += kThreads) {
                const float4 x = body_in[i];
                const int64_t j = split.head + 4 * i;
                body_out[i] = make_float4(grad(x.x, j), grad(x.y, j + 1), grad(x.z, j + 2), grad(x.w, j + 3));
            }
            for (int64_t j = tail_start + threadIdx.x; j < vocab; j += kThreads) row_grad[j] = grad(row_logits[j], j);
        }
    }
}

// Forward and backward of one row per block, in place: the row's (max, sum) as in forward_kernel,
// then every thread rewrites its own
// elements j = tid, tid + kThreads, ... with the backward's formula (padding and ignored rows: 0).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    fused_kernel(T* logits, const int32_t* __restrict__ targets, float* __restrict__ losses, int64_t rows,
                 int64_t vocab, int64_t stride, int ignore_index, const float* __restrict__ dloss_in,
                 bool write_gradient) {
    __shared__ MaxSum warp_partials[kWarps];
    __shared__ float row_lse;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        T* row_logits = logits + row * stride;
        const MaxSum state = row_max_sum<T>(row_logits, vocab, warp_partials);
        const int32_t target = targets[row];
        const bool ignored = target == ignore_index;
        const bool valid = target >= 0 && target < vocab;
        if (threadIdx.x == 0) {
            const float lse = state.max + logf(state.sum);
            losses[row] = ignored ? 0.0f : valid ? lse - static_cast<float>(row_logits[target]) : NAN;
            row_lse = lse;
        }
        __syncthreads();  // row_lse is ready, and every read of the row's max/sum pass is done
        if (write_gradient) {
            const float lse = row_lse;
            const float dloss = (ignored || valid) ? dloss_in[0] : NAN;
            for (int64_t j = threadIdx.x; j < stride; j += kThreads) {
                float g = 0.0f;
                if (j < vocab && !ignored) {
                    const float probability = expf(static_cast<float>(row_logits[j]) - lse);
                    g = dloss * (probability - (j == target ? 1.0f : 0.0f));
                }
                row_logits[j] = T(g);
            }
        }
        __syncthreads();  // warp_partials and row_lse are rewritten by the next row
    }
}

unsigned row_blocks(int64_t rows) { return static_cast<unsigned>(rows < kMaxBlocks ? rows : kMaxBlocks); }

constexpr int kCountThreads = 1024;

__global__ void __launch_bounds__(kCountThreads)
    mean_weight_kernel(const int32_t* __restrict__ targets, int64_t rows, int ignore_index, float* out) {
    __shared__ unsigned long long warp_counts[kCountThreads / 32];
    unsigned long long count = 0;
    for (int64_t r = threadIdx.x; r < rows; r += kCountThreads) count += targets[r] != ignore_index;
    for (int offset = 16; offset > 0; offset /= 2) count += __shfl_down_sync(kFullMask, count, offset);
    if (threadIdx.x % 32 == 0) warp_counts[threadIdx.x / 32] = count;
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned long long total = 0;
        for (int w = 0; w < kCountThreads / 32; ++w) total += warp_counts[w];
        out[0] = total > 0 ? static_cast<float>(1.0 / static_cast<double>(total)) : 0.0f;
    }
}

}  // namespace

template <typename T>
void cross_entropy_forward(const T* logits, const int32_t* targets, float* losses, float* logsumexp, int64_t rows,
                           int64_t vocab, int ignore_index, cudaStream_t stream) {
    if (rows == 0 || vocab == 0) return;
    forward_kernel<T><<<row_blocks(rows), kThreads, 0, stream>>>(logits, targets, losses, logsumexp, rows, vocab,
                                                                 ignore_index);
    CUDA_CHECK_LAUNCH();
}

template <typename T>
void cross_entropy_backward(const T* logits, const int32_t* targets, const float* logsumexp, const float* dlosses,
                            T* dlogits, int64_t rows, int64_t vocab, int ignore_index, cudaStream_t stream) {
    if (rows == 0 || vocab == 0) return;
    backward_kernel<T><<<row_blocks(rows), kThreads, 0, stream>>>(logits, targets, logsumexp, dlosses, dlogits, rows,
                                                                  vocab, ignore_index);
    CUDA_CHECK_LAUNCH();
}

template void cross_entropy_forward<float>(const float*, const int32_t*, float*, float*, int64_t, int64_t, int,
                                           cudaStream_t);
template void cross_entropy_forward<bfloat16>(const bfloat16*, const int32_t*, float*, float*, int64_t, int64_t, int,
                                              cudaStream_t);
template void cross_entropy_backward<float>(const float*, const int32_t*, const float*, const float*, float*, int64_t,
                                            int64_t, int, cudaStream_t);
template void cross_entropy_backward<bfloat16>(const bfloat16*, const int32_t*, const float*, const float*, bfloat16*,
                                               int64_t, int64_t, int, cudaStream_t);

template <typename T>
void cross_entropy_fused(T* logits, const int32_t* targets, float* losses, int64_t rows, int64_t vocab, int64_t stride,
                         int ignore_index, const float* dloss, bool write_gradient, cudaStream_t stream) {
    if (rows == 0 || stride == 0) return;
    fused_kernel<T><<<row_blocks(rows), kThreads, 0, stream>>>(logits, targets, losses, rows, vocab, stride,
                                                               ignore_index, dloss, write_gradient);
    CUDA_CHECK_LAUNCH();
}

template void cross_entropy_fused<float>(float*, const int32_t*, float*, int64_t, int64_t, int64_t, int, const float*,
                                         bool, cudaStream_t);
template void cross_entropy_fused<bfloat16>(bfloat16*, const int32_t*, float*, int64_t, int64_t, int64_t, int,
                                            const float*, bool, cudaStream_t);

void cross_entropy_mean_weight(const int32_t* targets, int64_t rows, int ignore_index, float* out,
                               cudaStream_t stream) {
    mean_weight_kernel<<<1, kCountThreads, 0, stream>>>(targets, rows, ignore_index, out);
    CUDA_CHECK_LAUNCH();
}

}  // namespace mp::kernels::cuda
