// Attention layout ops (GPT-2 attention): split the fused qkv projection into per-head q, k, v and
// merge their gradients back; move heads to rows and back. Pure permutations, exact on every device.
#pragma once

#include <array>
#include <cstdint>

#include "tensor/tensor.h"

namespace mp::ops {

// qkv (B, T, 3*C) viewed as (B, T, 3, H, D) with C = H*D -> {q, k, v}, each (B, H, T, D) contiguous.
std::array<Tensor, 3> split_qkv_heads(const Tensor& qkv, int64_t heads);
// dq, dk, dv, each (B, H, T, D) -> dqkv (B, T, 3*H*D): the inverse of split_qkv_heads.
Tensor merge_qkv_heads(const Tensor& dq, const Tensor& dk, const Tensor& dv);
// y (B, H, T, D) -> (B, T, H*D).
Tensor merge_heads(const Tensor& y);
// x (B, T, C) -> (B, H, T, C / H): the inverse of merge_heads.
Tensor split_heads(const Tensor& x, int64_t heads);

}  // namespace mp::ops
