// Fused causal self-attention through cuDNN's SDPA graph (cudnn-frontend): what a built graph
// depends on (SdpaKey), the strided layouts that let cuDNN read q, k, v straight out of the
// (B, T, 3, H, D) qkv buffer and write O as (B, T, H, D) — merged heads, no split/merge copies —
// and the launchers (kernels/cudnn/attention_fused.cpp, built only when MP_CUDNN_FRONTEND is 1).
// defines: SdpaElement, SdpaKey, SdpaKeyHash, SdpaLayout, sdpa_layout, sdpa_unsupported_reason,
//          cudnn::sdpa_causal_prepare, cudnn::sdpa_causal_{forward,backward}{,_workspace_bytes}
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "base/error.h"
#include "kernels/common/bfloat16.h"
#include "kernels/common/stream.h"

namespace mp::kernels {

// The element types cuDNN's SDPA takes that minipipe has (fp16 would be the other; fp32 it lacks).
enum class SdpaElement : uint8_t { BFloat16 };
inline const char* sdpa_element_name(SdpaElement element) {
    switch (element) {
        case SdpaElement::BFloat16: return "bfloat16";
    }
    return "?";
}
template <typename S> struct SdpaElementOf;
template <> struct SdpaElementOf<bfloat16> {
    static constexpr SdpaElement value = SdpaElement::BFloat16;
};

// One attention problem: everything a built graph pair (forward and backward) depends on. The
// softmax scale is 1/√head_dim, so it is not a separate field. Graphs are built once per key.
struct SdpaKey {
    int64_t batch = 0, heads = 0, seq = 0, head_dim = 0;
    SdpaElement element = SdpaElement::BFloat16;
    bool deterministic = true;  // backward: bitwise-reproducible dQ (cuDNN's dP-workspace algorithm)

    bool operator==(const SdpaKey& other) const {
        return batch == other.batch && heads == other.heads && seq == other.seq && head_dim == other.head_dim &&
               element == other.element && deterministic == other.deterministic;
    }
    bool operator!=(const SdpaKey& other) const { return !(*this == other); }
    // "B=3 H=4 T=37 D=64 bfloat16 deterministic": for error messages.
    std::string str() const {
        return ::mp::str("B=", batch, " H=", heads, " T=", seq, " D=", head_dim, " ", sdpa_element_name(element),
                      deterministic ? " deterministic" : " nondeterministic");
    }
};

struct SdpaKeyHash {
    size_t operator()(const SdpaKey& key) const noexcept {
        size_t h = 0;
        auto mix = [&h](uint64_t value) {
            h ^= std::hash<uint64_t>{}(value) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
        };
        for (int64_t v : {key.batch, key.heads, key.seq, key.head_dim}) mix(static_cast<uint64_t>(v));
        mix(static_cast<uint64_t>(key.element));
        mix(key.deterministic ? 1u : 0u);
        return h;
    }
};

// A 4-D (B, H, T, D) operand as cuDNN sees it: dims, strides in elements, and where it starts
// (elements from the base pointer of its buffer).
struct SdpaOperand {
    std::array<int64_t, 4> dims{};
    std::array<int64_t, 4> strides{};
    int64_t offset = 0;
};

// The layouts of one problem, C = H·D:
//  q, k, v   views of qkv (B, T, 3, H, D): element (b, h, t, d) at b·3TC + t·3C + {0, C, 2C} + h·D + d.
//            dQ, dK, dV are written with the same layout into dqkv (B, T, 3C).
//  o         O and dO as (B, T, H, D) = merged heads (B, T, C): b·TC + t·C + h·D + d.
//  stats     float32 (B, H, T, 1), contiguous: the logsumexp of each row of scaled scores.
struct SdpaLayout {
    SdpaOperand q, k, v, o, stats;
};

inline SdpaLayout sdpa_layout(const SdpaKey& key) {
    const int64_t B = key.batch, H = key.heads, T = key.seq, D = key.head_dim, C = H * D;
    SdpaLayout layout;
    const std::array<int64_t, 4> dims{B, H, T, D};
    const std::array<int64_t, 4> qkv_strides{T * 3 * C, D, 3 * C, 1};
    layout.q = {dims, qkv_strides, 0};
    layout.k = {dims, qkv_strides, C};
    layout.v = {dims, qkv_strides, 2 * C};
    layout.o = {dims, {T * C, D, C, 1}, 0};
    layout.stats = {{B, H, T, 1}, {H * T, T, 1, 1}, 0};
    return layout;
}

// The largest head_dim taken (cuDNN's flash SDPA forward and backward in bf16 on sm_80 and later).
inline constexpr int64_t kSdpaMaxHeadDim = 128;

// "" when the fused path can take this problem by its shape; else why not, naming the values.
// cuDNN may still refuse it on a given GPU (sdpa_causal_prepare says so).
inline std::string sdpa_unsupported_reason(const SdpaKey& key) {
    if (key.batch < 1 || key.heads < 1 || key.seq < 1 || key.head_dim < 1)
        return ::mp::str("empty problem (", key.str(), ")");
    if (key.head_dim % 8 != 0)
        return ::mp::str("head_dim ", key.head_dim, " is not a multiple of 8 (16-byte rows for cuDNN)");
    if (key.head_dim > kSdpaMaxHeadDim)
        return ::mp::str("head_dim ", key.head_dim, " is above ", kSdpaMaxHeadDim);
    return "";
}

}  // namespace mp::kernels

// The launchers: in kernels/cudnn/attention_fused.cpp, which a build without cudnn-frontend (or
// without cuDNN) does not compile; callers guard their calls with `#if MP_CUDNN_FRONTEND`.
namespace mp::kernels::cudnn {

// Builds, once per (thread, device, key), the forward and backward graphs, and reports whether
// cuDNN supports them on the current GPU: "" when it does, else cuDNN's reason (with the key).
// Other failures (no GPU, a cuDNN error) throw mp::RuntimeError naming the call and the key.
std::string sdpa_causal_prepare(const SdpaKey& key);
// How many graph pairs this thread has built so far (on any device): the cache's hit check.
int64_t sdpa_graph_pairs_built();
// Workspace bytes the graphs need (prepare first; 0 is possible).
size_t sdpa_causal_forward_workspace_bytes(const SdpaKey& key);
size_t sdpa_causal_backward_workspace_bytes(const SdpaKey& key);

// out (B, T, H·D) = causal softmax(q·kᵀ/√D)·v for each head, and stats (B, H, T) float32, the
// logsumexp of each scaled score row, for the backward. qkv is (B, T, 3·H·D); all pointers
// 16-byte aligned; the workspace holds at least sdpa_causal_forward_workspace_bytes(key).
template <typename S>
void sdpa_causal_forward(const S* qkv, S* out, float* stats, const SdpaKey& key, void* workspace,
                         cudaStream_t stream);
// dqkv (B, T, 3·H·D) = the gradients of q, k, v (written, not accumulated), from the forward's
// qkv, out and stats and the gradient dout (B, T, H·D) of out.
template <typename S>
void sdpa_causal_backward(const S* qkv, const S* out, const S* dout, const float* stats, S* dqkv, const SdpaKey& key,
                          void* workspace, cudaStream_t stream);

}  // namespace mp::kernels::cudnn
