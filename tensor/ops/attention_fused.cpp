// Fused causal attention ops: the path switch (MINIPIPE_ATTENTION), the support decision with its
// reasons, argument checks, output and workspace allocation, and the calls into kernels/cudnn/ —
// compiled only when the build has cudnn-frontend (MP_CUDNN_FRONTEND), refused with a reason otherwise.
#include "tensor/ops/attention_fused.h"

#include <atomic>
#include <cstdlib>

#include "kernels/attention_fused.h"
#include "tensor/ops/common.h"

namespace mp::ops {

namespace {

// The path: unset until first read or set (then the environment is not read at all).
constexpr int kPathUnset = -1;
std::atomic<int> g_path{kPathUnset};
std::atomic<bool> g_deterministic{true};

AttentionPath path_from_environment() {
    const char* text = std::getenv("MINIPIPE_ATTENTION");
    if (text == nullptr || *text == '\0') return AttentionPath::Auto;
    return parse_attention_path(text, "MINIPIPE_ATTENTION");
}

// The (B, T, 3C) shape of qkv with `heads` heads as a key, or why it is not one.
std::string key_of(const Tensor& qkv, int64_t heads, kernels::SdpaKey* key) {
    if (!qkv.defined()) return "qkv is an undefined tensor";
    if (qkv.dim() != 3) return str("qkv must be (B, T, 3*C), got shape ", shape_str(qkv.shape()));
    if (heads < 1) return str("heads must be at least 1, got ", heads);
    const int64_t width = qkv.size(2);
    if (width % 3 != 0)
        return str("qkv ", shape_str(qkv.shape()), " has last dimension ", width, ", not divisible by 3");
    const int64_t channels = width / 3;
    if (channels % heads != 0)
        return str("C = ", channels, " (qkv ", shape_str(qkv.shape()), ") is not divisible by heads = ", heads);
    key->batch = qkv.size(0);
    key->seq = qkv.size(1);
    key->heads = heads;
    key->head_dim = channels / heads;
    key->element = kernels::SdpaElement::BFloat16;
    key->deterministic = fused_attention_deterministic();
    return "";
}

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0; }

#if MP_CUDNN_FRONTEND
// The workspace: int32 elements covering `bytes` (none for 0 bytes).
Tensor workspace_for(size_t bytes, Device device) {
    if (bytes == 0) return Tensor();
    return Tensor::empty({static_cast<int64_t>((bytes + 3) / 4)}, DType::Int32, device);
}
#endif

// The key of a qkv the fused ops are given: any reason not to take it is an argument error.
kernels::SdpaKey checked_key(const char* op, const Tensor& qkv, int64_t heads) {
    FusedAttentionSupport support = fused_attention_support(qkv, heads, true);
    MP_REQUIRE(support.supported, op, ": cannot take qkv ", qkv.defined() ? qkv.describe() : "(undefined)",
               " with heads = ", heads, ": ", support.reason);
    kernels::SdpaKey key;
    key_of(qkv, heads, &key);
    return key;
}

}  // namespace

const char* attention_path_name(AttentionPath path) {
    switch (path) {
        case AttentionPath::Auto: return "auto";
        case AttentionPath::Fused: return "fused";
        case AttentionPath::Composed: return "composed";
    }
    return "?";
}

AttentionPath parse_attention_path(const std::string& text, const char* what) {
    for (AttentionPath path : {AttentionPath::Auto, AttentionPath::Fused, AttentionPath::Composed})
        if (text == attention_path_name(path)) return path;
    throw std::invalid_argument(str(what, " '", text, "' is not one of auto, fused, composed"));
}

AttentionPath attention_path() {
    int path = g_path.load();
    if (path == kPathUnset) {
        // Several first readers may race: each parses the same environment and stores the same value.
        int from_env = static_cast<int>(path_from_environment());
        g_path.compare_exchange_strong(path, from_env);
        path = g_path.load();
    }
    return static_cast<AttentionPath>(path);
}

void set_attention_path(AttentionPath path) { g_path.store(static_cast<int>(path)); }

AttentionPathScope::AttentionPathScope(AttentionPath path) : previous_(attention_path()) { set_attention_path(path); }
AttentionPathScope::~AttentionPathScope() { set_attention_path(previous_); }

bool fused_attention_deterministic() { return g_deterministic.load(); }
void set_fused_attention_deterministic(bool deterministic) { g_deterministic.store(deterministic); }

bool fused_attention_compiled() { return MP_CUDNN_FRONTEND != 0; }

FusedAttentionSupport fused_attention_support(const Tensor& qkv, int64_t heads, bool ask_cudnn) {
    kernels::SdpaKey key;
    std::string reason = key_of(qkv, heads, &key);
    if (reason.empty() && !qkv.device().is_cuda())
        reason = str("qkv is on the ", qkv.device().str(), " (the fused attention is cuDNN's, on a GPU)");
    if (reason.empty() && qkv.dtype() != DType::BFloat16)
        reason = str("qkv is ", dtype_name(qkv.dtype()), "; cuDNN's fused attention takes bfloat16");
    if (reason.empty()) reason = kernels::sdpa_unsupported_reason(key);
    if (reason.empty() && !aligned16(qkv))
        reason = "qkv's data does not start on a 16-byte boundary (a view into another buffer)";
    if (reason.empty() && !fused_attention_compiled())
        reason = "this build has no cudnn-frontend (`make deps` fetches it; it needs CUDA and cuDNN)";
#if MP_CUDNN_FRONTEND
    if (reason.empty() && ask_cudnn) reason = kernels::cudnn::sdpa_causal_prepare(key);
#else
    (void)ask_cudnn;
#endif
    return {reason.empty(), reason};
}

FusedAttentionOutput causal_attention_fused(const Tensor& qkv, int64_t heads) {
    const char* op = "causal_attention_fused";
    const kernels::SdpaKey key = checked_key(op, qkv, heads);
    const int64_t channels = key.heads * key.head_dim;
    FusedAttentionOutput result;
    result.out = Tensor::empty({key.batch, key.seq, channels}, qkv.dtype(), qkv.device());
    result.stats = Tensor::empty({key.batch, key.heads, key.seq}, DType::Float32, qkv.device());
#if MP_CUDNN_FRONTEND
    Tensor workspace = workspace_for(kernels::cudnn::sdpa_causal_forward_workspace_bytes(key), qkv.device());
    kernels::cudnn::sdpa_causal_forward(qkv.data<bfloat16>(), result.out.data<bfloat16>(),
                                        result.stats.data<float>(), key,
                                        workspace.defined() ? workspace.raw_data() : nullptr, detail::stream_of(qkv));
#endif
    return result;
}

Tensor causal_attention_fused_backward(const Tensor& qkv, const Tensor& out, const Tensor& stats, const Tensor& dout,
                                       int64_t heads) {
    const char* op = "causal_attention_fused_backward";
    detail::require_defined(op, out, "out");
    detail::require_defined(op, stats, "stats");
    detail::require_defined(op, dout, "dout");
    const kernels::SdpaKey key = checked_key(op, qkv, heads);
    detail::require_same_device(op, {&qkv, &out, &stats, &dout});
    detail::require_same_dtype(op, {&qkv, &out, &dout});
    detail::require_dtype(op, stats, DType::Float32, "stats");
    const Shape out_shape{key.batch, key.seq, key.heads * key.head_dim};
    MP_REQUIRE(out.shape() == out_shape, op, ": out must be ", shape_str(out_shape), " for qkv ",
               shape_str(qkv.shape()), ", got ", shape_str(out.shape()));
    MP_REQUIRE(dout.shape() == out_shape, op, ": dout must be ", shape_str(out_shape), " for qkv ",
               shape_str(qkv.shape()), ", got ", shape_str(dout.shape()));
    const Shape stats_shape{key.batch, key.heads, key.seq};
    MP_REQUIRE(stats.shape() == stats_shape, op, ": stats must be ", shape_str(stats_shape), ", got ",
               shape_str(stats.shape()));
    for (const Tensor* t : {&out, &stats, &dout})
        MP_REQUIRE(aligned16(*t), op, ": ", t->describe(), " does not start on a 16-byte boundary");

    Tensor dqkv = Tensor::empty(qkv.shape(), qkv.dtype(), qkv.device());
#if MP_CUDNN_FRONTEND
    Tensor workspace = workspace_for(kernels::cudnn::sdpa_causal_backward_workspace_bytes(key), qkv.device());
    kernels::cudnn::sdpa_causal_backward(qkv.data<bfloat16>(), out.data<bfloat16>(), dout.data<bfloat16>(),
                                         stats.data<float>(), dqkv.data<bfloat16>(), key,
                                         workspace.defined() ? workspace.raw_data() : nullptr,
                                         detail::stream_of(qkv));
#endif
    return dqkv;
}

}  // namespace mp::ops
