// Attention layout permutations (GPT-2 attention): the fused qkv projection (B, T, 3*C), viewed as
// (B, T, 3, H, D) with C = H*D, to per-head q, k, v (B, H, T, D) and back; heads (B, H, T, D) to
// rows (B, T, H*D) and back. Pure copies: CPU and CUDA results are bitwise equal.
// defines: split_qkv_heads, merge_qkv_heads, merge_heads, split_heads
//          (cpu:: for float, double, bfloat16; cuda:: for float, bfloat16)
#pragma once

#include <cstdint>

#include "kernels/common/bfloat16.h"
#include "kernels/common/stream.h"

namespace mp::kernels::cpu {
// qkv (B, T, 3, H, D) -> q, k, v, each (B, H, T, D).
template <typename T>
void split_qkv_heads(const T* qkv, T* q, T* k, T* v, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim);
// dq, dk, dv, each (B, H, T, D) -> dqkv (B, T, 3, H, D): the inverse of split_qkv_heads.
template <typename T>
void merge_qkv_heads(const T* dq, const T* dk, const T* dv, T* dqkv, int64_t batch, int64_t seq, int64_t heads,
                     int64_t head_dim);
// y (B, H, T, D) -> out (B, T, H, D).
template <typename T>
void merge_heads(const T* y, T* out, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim);
// x (B, T, H, D) -> out (B, H, T, D): the inverse of merge_heads.
template <typename T>
void split_heads(const T* x, T* out, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
// S is float or bfloat16.
template <typename S>
void split_qkv_heads(const S* qkv, S* q, S* k, S* v, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                     cudaStream_t stream);
template <typename S>
void merge_qkv_heads(const S* dq, const S* dk, const S* dv, S* dqkv, int64_t batch, int64_t seq, int64_t heads,
                     int64_t head_dim, cudaStream_t stream);
template <typename S>
void merge_heads(const S* y, S* out, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, cudaStream_t stream);
template <typename S>
void split_heads(const S* x, S* out, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim, cudaStream_t stream);
}  // namespace mp::kernels::cuda
