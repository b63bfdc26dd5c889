// CUDA attention layout permutations, float32 and bfloat16: qkv (B, T, 3, H, D) <-> q, k, v (B, H, T, D), and
// rows (B, T, H, D) <-> heads (B, H, T, D). Pure copies, bitwise equal to the CPU reference.
//
// Floor (H100, ~3 TB/s): every element is read once and written once, 8 B per element
// (GPT-2 small, B=8 T=1024 C=768: qkv is 18.9M floats, 151 MB moved, ~50 us).
//
// Design: two kernels, each one thread per output element with a grid-stride loop, so writes are
// coalesced and reads are contiguous runs of D elements. `rows_to_heads` does split_qkv_heads
// (3 parts) and split_heads (1 part); `heads_to_rows` does merge_qkv_heads and merge_heads. The
// "element" is a float4 (4 floats, or 8 bfloat16s) when D is a multiple of that and every pointer
// is 16-byte aligned (then all row and head offsets are whole float4s), else one value. Indices are
// int64 (B*T*3*C can pass 2^31).
#include <cstdint>

#include "kernels/attention_layout.h"
#include "kernels/common/bfloat16.h"
#include "kernels/cuda/check.cuh"

namespace mp::kernels::cuda {

namespace {

constexpr int kBlock = 256;

// The up-to-three head tensors of a permutation (q, k, v; or one tensor and two unused slots).
template <typename P>
struct HeadParts {
    P part0;
    P part1;
    P part2;
};

template <typename P>
__device__ __forceinline__ P select_part(const HeadParts<P>& parts, int64_t part) {
    return part == 0 ? parts.part0 : (part == 1 ? parts.part1 : parts.part2);
}

// rows (B, T, parts, H, Dv) -> part p's heads (B, H, T, Dv), for p < parts. Element type E is float
// or float4; head_elems = D / (floats per E).
template <typename E>
__global__ void rows_to_heads_kernel(const E* __restrict__ rows, HeadParts<E*> heads_out, int64_t parts,
                                     int64_t batch, int64_t seq, int64_t heads, int64_t head_elems) {
    const int64_t per_part = batch * heads * seq * head_elems;
    const int64_t total = per_part * parts;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t part = i / per_part;
        const int64_t out_offset = i - part * per_part;  // (b, h, t, d) in the part's output
        const int64_t d = out_offset % head_elems;
        int64_t rest = out_offset / head_elems;
        const int64_t t = rest % seq;
        rest /= seq;
        const int64_t h = rest % heads;
        const int64_t b = rest / heads;
        select_part(heads_out, part)[out_offset] = rows[(((b * seq + t) * parts + part) * heads + h) * head_elems + d];
    }
}

// Part p's heads (B, H, T, Dv), p < parts -> rows (B, T, parts, H, Dv).
template <typename E>
__global__ void heads_to_rows_kernel(HeadParts<const E*> heads_in, E* __restrict__ rows, int64_t parts,
                                     int64_t batch, int64_t seq, int64_t heads, int64_t head_elems) {
    const int64_t total = batch * seq * parts * heads * head_elems;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t d = i % head_elems;
        int64_t rest = i / head_elems;
        const int64_t h = rest % heads;
        rest /= heads;
        const int64_t part = rest % parts;
        rest /= parts;
        const int64_t t = rest % seq;
        const int64_t b = rest / seq;
        rows[i] = select_part(heads_in, part)[((b * heads + h) * seq + t) * head_elems + d];
    }
}

bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

// How many elements of storage type S make one float4 (16 bytes): 4 floats, 8 bfloat16s.
template <typename S>
constexpr int64_t kPerVector = 16 / static_cast<int64_t>(sizeof(S));

template <typename S>
void launch_rows_to_heads(const S* rows, HeadParts<S*> heads_out, int64_t parts, int64_t batch, int64_t seq,
                          int64_t heads, int64_t head_dim, cudaStream_t stream) {
    const int64_t total = parts * batch * seq * heads * head_dim;
    if (total == 0) return;
    constexpr int64_t per = kPerVector<S>;
    const bool vectorised = head_dim % per == 0 && aligned16(rows) && aligned16(heads_out.part0) &&
                            aligned16(heads_out.part1) && aligned16(heads_out.part2);
    if (vectorised) {
        HeadParts<float4*> out4{reinterpret_cast<float4*>(heads_out.part0), reinterpret_cast<float4*>(heads_out.part1),
                                reinterpret_cast<float4*>(heads_out.part2)};
        rows_to_heads_kernel<float4><<<cuda_detail::grid_for(total / per, kBlock), kBlock, 0, stream>>>(
            reinterpret_cast<const float4*>(rows), out4, parts, batch, seq, heads, head_dim / per);
    } else {
        rows_to_heads_kernel<S><<<cuda_detail::grid_for(total, kBlock), kBlock, 0, stream>>>(
            rows, heads_out, parts, batch, seq, heads, head_dim);
    }
    CUDA_CHECK_LAUNCH();
}

template <typename S>
void launch_heads_to_rows(HeadParts<const S*> heads_in, S* rows, int64_t parts, int64_t batch, int64_t seq,
                          int64_t heads, int64_t head_dim, cudaStream_t stream) {
    const int64_t total = parts * batch * seq * heads * head_dim;
    if (total == 0) return;
    constexpr int64_t per = kPerVector<S>;
    const bool vectorised = head_dim % per == 0 && aligned16(rows) && aligned16(heads_in.part0) &&
                            aligned16(heads_in.part1) && aligned16(heads_in.part2);
    if (vectorised) {
        HeadParts<const float4*> in4{reinterpret_cast<const float4*>(heads_in.part0),
                                     reinterpret_cast<const float4*>(heads_in.part1),
                                     reinterpret_cast<const float4*>(heads_in.part2)};
        heads_to_rows_kernel<float4><<<cuda_detail::grid_for(total / per, kBlock), kBlock, 0, stream>>>(
            in4, reinterpret_cast<float4*>(rows), parts, batch, seq, heads, head_dim / per);
    } else {
        heads_to_rows_kernel<S><<<cuda_detail::grid_for(total, kBlock), kBlock, 0, stream>>>(
            heads_in, rows, parts, batch, seq, heads, head_dim);
    }
    CUDA_CHECK_LAUNCH();
}

}  // namespace

template <typename S>
void split_qkv_heads(const S* qkv, S* q, S* k, S* v, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                     cudaStream_t stream) {
    launch_rows_to_heads(qkv, HeadParts<S*>{q, k, v}, 3, batch, seq, heads, head_dim, stream);
}

template <typename S>
void merge_qkv_heads(const S* dq, const S* dk, const S* dv, S* dqkv, int64_t batch, int64_t seq, int64_t heads,
                     int64_t head_dim, cudaStream_t stream) {
    launch_heads_to_rows(HeadParts<const S*>{dq, dk, dv}, dqkv, 3, batch, seq, heads, head_dim, stream);
}

template <typename S>
void merge_heads(const S* y, S* out, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                 cudaStream_t stream) {
    launch_heads_to_rows(HeadParts<const S*>{y, nullptr, nullptr}, out, 1, batch, seq, heads, head_dim, stream);
}

template <typename S>
void split_heads(const S* x, S* out, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                 cudaStream_t stream) {
    launch_rows_to_heads(x, HeadParts<S*>{out, nullptr, nullptr}, 1, batch, seq, heads, head_dim, stream);
}

template void split_qkv_heads<float>(const float*, float*, float*, float*, int64_t, int64_t, int64_t,
                                       int64_t, cudaStream_t);
template void merge_qkv_heads<float>(const float*, const float*, const float*, float*, int64_t, int64_t,
                                       int64_t, int64_t, cudaStream_t);
template void merge_heads<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, cudaStream_t);
template void split_heads<float>(const float*, float*, int64_t, int64_t, int64_t, int64_t, cudaStream_t);
template void split_qkv_heads<bfloat16>(const bfloat16*, bfloat16*, bfloat16*, bfloat16*, int64_t, int64_t, int64_t,
                                       int64_t, cudaStream_t);
template void merge_qkv_heads<bfloat16>(const bfloat16*, const bfloat16*, const bfloat16*, bfloat16*, int64_t, int64_t,
                                       int64_t, int64_t, cudaStream_t);
template void merge_heads<bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t, int64_t, int64_t, cudaStream_t);
template void split_heads<bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t, int64_t, int64_t, cudaStream_t);

}  // namespace mp::kernels::cuda
