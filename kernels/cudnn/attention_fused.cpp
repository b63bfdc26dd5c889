// Fused causal self-attention, forward and backward, as cuDNN SDPA graphs built with cudnn-frontend:
// O = softmax(mask(Q·Kᵀ/√D))·V per head with the logsumexp of each score row saved (stats), and
// dQ, dK, dV from (Q, K, V, O, dO, stats). Never materialises the (B, H, T, T) scores.
// Floor (H100/H200, bf16 tensor cores ~990 TFLOP/s dense): causal forward 4·B·H·T²·D/2 flops (QKᵀ and
// PV, half the scores masked); backward 10·B·H·T²·D/2 (QKᵀ again, dV, dP, dQ, dK). GPT-2 at
// B 8, H 12, T 1024, D 64: 12.9 GFLOP forward (13 µs at peak), 32 GFLOP backward (33 µs); the
// bytes (qkv read 38 MB, O written 13 MB: 15 µs at 3.35 TB/s) are of the same order.
// Design:
//  - Q, K, V are strided views of the (B, T, 3, H, D) qkv buffer and O is written (B, T, H, D), so
//    no split_qkv_heads / merge_heads copies; dQ, dK, dV are written straight into dqkv with the
//    layout of q, k, v (kernels/attention_fused.h: sdpa_layout).
//  - One cuDNN handle and one graph cache per (thread, device), as the cuBLAS handles of
//    kernels/cuda/gemm.cu: a graph pair is built once per SdpaKey and reused; the stream is set on
//    every call, so the caller's stream orders the work. Nothing is allocated or synchronised here.
//  - Backward is deterministic unless the key says otherwise (cuDNN's dP-workspace algorithm: a
//    bigger workspace, bitwise-reproducible dQ).
//  - A graph cuDNN does not support is not an error: prepare returns the reason and the caller
//    uses the composed attention. Any other failure throws mp::RuntimeError naming the call.
#include <cudnn_frontend.h>
#include <cuda_runtime.h>

#include <cmath>
#include <memory>
#include <unordered_map>
#include <vector>

#include "kernels/attention_fused.h"
#include "kernels/cuda/check.cuh"

namespace mp::kernels::cudnn {

namespace {

namespace fe = cudnn_frontend;
using Uid = fe::graph::Tensor_attributes::uid_t;

[[noreturn]] void throw_cudnn(cudnnStatus_t status, const char* call, const char* file, int line) {
    throw RuntimeError(str("cuDNN error ", cudnnGetErrorString(status), " (", static_cast<int>(status), ") in ", call,
                           " at ", file, ":", line));
}
#define CUDNN_CHECK(call)                                                                                  \
    do {                                                                                                   \
        cudnnStatus_t mp_status_ = (call);                                                                 \
        if (mp_status_ != CUDNN_STATUS_SUCCESS) throw_cudnn(mp_status_, #call, __FILE__, __LINE__);        \
    } while (0)

// A failed frontend call: the call, the problem, the frontend's code and message, file:line.
std::string frontend_failure(fe::error_t& status, const char* call, const SdpaKey& key) {
    return str(call, " failed for ", key.str(), ": ", status.get_message(), " (cudnn-frontend error code ",
               static_cast<int>(status.get_code()), ")");
}
#define FRONTEND_CHECK(call, key)                                                                          \
    do {                                                                                                   \
        fe::error_t mp_fe_status_ = (call);                                                                \
        if (!mp_fe_status_.is_good())                                                                      \
            throw RuntimeError(str("cudnn-frontend: ", frontend_failure(mp_fe_status_, #call, key), " at ", \
                                   __FILE__, ":", __LINE__));                                              \
    } while (0)

// Tensor uids in the variant packs.
enum : Uid { kQ = 1, kK, kV, kO, kStats, kDO, kDQ, kDK, kDV };

fe::DataType_t frontend_type(SdpaElement element) {
    switch (element) {
        case SdpaElement::BFloat16: return fe::DataType_t::BFLOAT16;
    }
    throw std::logic_error("sdpa: unknown element type");
}

std::vector<int64_t> as_vector(const std::array<int64_t, 4>& values) { return {values.begin(), values.end()}; }

std::shared_ptr<fe::graph::Graph> new_graph(const SdpaKey& key) {
    auto graph = std::make_shared<fe::graph::Graph>();
    graph->set_io_data_type(frontend_type(key.element))
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    return graph;
}

std::shared_ptr<fe::graph::Tensor_attributes> input(fe::graph::Graph& graph, const char* name, Uid uid,
                                                    const SdpaOperand& operand) {
    return graph.tensor(fe::graph::Tensor_attributes()
                            .set_name(name)
                            .set_uid(uid)
                            .set_dim(as_vector(operand.dims))
                            .set_stride(as_vector(operand.strides)));
}

void set_output(fe::graph::Tensor_attributes& tensor, Uid uid, const SdpaOperand& operand) {
    tensor.set_output(true).set_uid(uid).set_dim(as_vector(operand.dims)).set_stride(as_vector(operand.strides));
}

float softmax_scale(const SdpaKey& key) {
    return static_cast<float>(1.0 / std::sqrt(static_cast<double>(key.head_dim)));
}

// Causal: a query attends to keys at positions <= its own (the diagonal band's right bound is 0,
// aligned top-left: query t, key s kept when s <= t).
std::shared_ptr<fe::graph::Graph> forward_graph(const SdpaKey& key) {
    const SdpaLayout layout = sdpa_layout(key);
    auto graph = new_graph(key);
    auto q = input(*graph, "Q", kQ, layout.q);
    auto k = input(*graph, "K", kK, layout.k);
    auto v = input(*graph, "V", kV, layout.v);
    auto options = fe::graph::SDPA_attributes()
                       .set_name("causal_attention_forward")
                       .set_generate_stats(true)
                       .set_attn_scale(softmax_scale(key))
                       .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                       .set_diagonal_band_right_bound(0);
    auto [o, stats] = graph->sdpa(q, k, v, options);
    set_output(*o, kO, layout.o);
    set_output(*stats, kStats, layout.stats);
    stats->set_data_type(fe::DataType_t::FLOAT);
    return graph;
}

std::shared_ptr<fe::graph::Graph> backward_graph(const SdpaKey& key) {
    const SdpaLayout layout = sdpa_layout(key);
    auto graph = new_graph(key);
    auto q = input(*graph, "Q", kQ, layout.q);
    auto k = input(*graph, "K", kK, layout.k);
    auto v = input(*graph, "V", kV, layout.v);
    auto o = input(*graph, "O", kO, layout.o);
    auto d_o = input(*graph, "dO", kDO, layout.o);
    auto stats = input(*graph, "Stats", kStats, layout.stats);
    stats->set_data_type(fe::DataType_t::FLOAT);
    auto options = fe::graph::SDPA_backward_attributes()
                       .set_name("causal_attention_backward")
                       .set_attn_scale(softmax_scale(key))
                       .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                       .set_diagonal_band_right_bound(0)
                       .set_deterministic_algorithm(key.deterministic);
    auto [dq, dk, dv] = graph->sdpa_backward(q, k, v, o, d_o, stats, options);
    set_output(*dq, kDQ, layout.q);
    set_output(*dk, kDK, layout.k);
    set_output(*dv, kDV, layout.v);
    return graph;
}

// Validates, lowers, picks plans (heuristics A) and builds them. "" on success, else which step
// cuDNN refused and why: every step's refusal means "not supported here", not a bug to throw for.
std::string build(fe::graph::Graph& graph, cudnnHandle_t handle, const SdpaKey& key, const char* which) {
    auto step = [&](fe::error_t status, const char* call) -> std::string {
        return status.is_good() ? "" : str(which, ": ", frontend_failure(status, call, key));
    };
    std::string failure = step(graph.validate(), "validate");
    if (failure.empty()) failure = step(graph.build_operation_graph(handle), "build_operation_graph");
    if (failure.empty()) failure = step(graph.create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans");
    if (failure.empty()) failure = step(graph.check_support(handle), "check_support");
    if (failure.empty()) failure = step(graph.build_plans(handle), "build_plans");
    return failure;
}

// Makes and builds one graph. The frontend throws from graph construction when no SDPA
// implementation suits the attributes on this cuDNN ("No suitable implementation"): that too is
// "not supported here", returned as the reason.
std::string construct(std::shared_ptr<fe::graph::Graph>& graph,
                      std::shared_ptr<fe::graph::Graph> (*make)(const SdpaKey&), cudnnHandle_t handle,
                      const SdpaKey& key, const char* which) {
    try {
        graph = make(key);
    } catch (const std::runtime_error& e) {
        return str(which, ": graph construction failed for ", key.str(), ": ", e.what());
    }
    return build(*graph, handle, key, which);
}

struct GraphPair {
    std::shared_ptr<fe::graph::Graph> forward, backward;
    std::string unsupported;  // "" when both built
    int64_t forward_workspace = 0, backward_workspace = 0;
};

// The calling thread's handles and graphs, per device. cudnnDestroy's status is ignored: a
// destructor must not throw, and at thread exit nothing could act on the failure.
class ThreadState {
  public:
    ThreadState() = default;
    ThreadState(const ThreadState&) = delete;
    ThreadState& operator=(const ThreadState&) = delete;
    ~ThreadState() {
        graphs_.clear();  // the plans before the handles they were built with
        for (auto& entry : handles_) cudnnDestroy(entry.second);
    }

    cudnnHandle_t handle(int device) {
        auto found = handles_.find(device);
        if (found == handles_.end()) {
            cudnnHandle_t handle = nullptr;
            CUDNN_CHECK(cudnnCreate(&handle));  // binds the handle to the current device
            found = handles_.emplace(device, handle).first;
        }
        return found->second;
    }

    // The graph pair of `key` on the current device, built on first use.
    GraphPair& graphs(const SdpaKey& key) {
        int device = 0;
        CUDA_CHECK(cudaGetDevice(&device));
        auto& per_device = graphs_[device];
        auto found = per_device.find(key);
        if (found != per_device.end()) return found->second;

        cudnnHandle_t h = handle(device);
        ++pairs_built_;
        GraphPair pair;
        pair.unsupported = sdpa_unsupported_reason(key);
        if (pair.unsupported.empty()) pair.unsupported = construct(pair.forward, forward_graph, h, key, "forward");
        if (pair.unsupported.empty()) pair.unsupported = construct(pair.backward, backward_graph, h, key, "backward");
        if (pair.unsupported.empty()) {
            FRONTEND_CHECK(pair.forward->get_workspace_size(pair.forward_workspace), key);
            FRONTEND_CHECK(pair.backward->get_workspace_size(pair.backward_workspace), key);
        } else {
            pair.forward.reset();
            pair.backward.reset();
        }
        return per_device.emplace(key, std::move(pair)).first->second;
    }

    // The built pair of `key`, with the handle bound to `stream`; throws if cuDNN refused it.
    GraphPair& ready(const SdpaKey& key, cudaStream_t stream, const char* op, cudnnHandle_t* handle_out) {
        GraphPair& pair = graphs(key);
        if (!pair.unsupported.empty())
            throw RuntimeError(str(op, ": cuDNN does not support this attention (", pair.unsupported,
                                   "); the caller should have used the composed path"));
        int device = 0;
        CUDA_CHECK(cudaGetDevice(&device));
        *handle_out = handle(device);
        CUDNN_CHECK(cudnnSetStream(*handle_out, stream));
        return pair;
    }

    int64_t pairs_built() const { return pairs_built_; }

  private:
    int64_t pairs_built_ = 0;
    std::unordered_map<int, cudnnHandle_t> handles_;
    std::unordered_map<int, std::unordered_map<SdpaKey, GraphPair, SdpaKeyHash>> graphs_;
};

ThreadState& thread_state() {
    thread_local ThreadState state;
    return state;
}

template <typename S> void* ptr(const S* p) { return const_cast<void*>(static_cast<const void*>(p)); }

void execute(fe::graph::Graph& graph, cudnnHandle_t handle, std::unordered_map<Uid, void*>& pack, void* workspace,
             const SdpaKey& key, const char* op) {
    fe::error_t status = graph.execute(handle, pack, workspace);
    if (!status.is_good())
        throw RuntimeError(str("cudnn-frontend: ", op, ": ", frontend_failure(status, "execute", key)));
}

// Runs fn, turning the frontend's own exceptions (it throws from a few places) into mp::RuntimeError.
template <typename F>
auto guarded(const char* op, const SdpaKey& key, F&& fn) -> decltype(fn()) {
    try {
        return fn();
    } catch (const RuntimeError&) {
        throw;
    } catch (const std::invalid_argument&) {
        throw;
    } catch (const std::exception& e) {
        throw RuntimeError(str(op, " for ", key.str(), ": cudnn-frontend threw: ", e.what()));
    }
}

}  // namespace

std::string sdpa_causal_prepare(const SdpaKey& key) {
    return guarded("sdpa_causal_prepare", key, [&] { return thread_state().graphs(key).unsupported; });
}

int64_t sdpa_graph_pairs_built() { return thread_state().pairs_built(); }

size_t sdpa_causal_forward_workspace_bytes(const SdpaKey& key) {
    return guarded("sdpa_causal_forward_workspace_bytes", key,
                   [&] { return static_cast<size_t>(thread_state().graphs(key).forward_workspace); });
}

size_t sdpa_causal_backward_workspace_bytes(const SdpaKey& key) {
    return guarded("sdpa_causal_backward_workspace_bytes", key,
                   [&] { return static_cast<size_t>(thread_state().graphs(key).backward_workspace); });
}

template <typename S>
void sdpa_causal_forward(const S* qkv, S* out, float* stats, const SdpaKey& key, void* workspace,
                         cudaStream_t stream) {
    static_assert(sizeof(S) == 2, "cuDNN SDPA takes 16-bit elements");
    MP_REQUIRE(key.element == SdpaElementOf<S>::value, "sdpa_causal_forward: key ", key.str(),
               " does not match the element type of the pointers");
    const SdpaLayout layout = sdpa_layout(key);
    guarded("sdpa_causal_forward", key, [&] {
        cudnnHandle_t handle = nullptr;
        GraphPair& pair = thread_state().ready(key, stream, "sdpa_causal_forward", &handle);
        std::unordered_map<Uid, void*> pack = {{kQ, ptr(qkv + layout.q.offset)},
                                               {kK, ptr(qkv + layout.k.offset)},
                                               {kV, ptr(qkv + layout.v.offset)},
                                               {kO, ptr(out)},
                                               {kStats, ptr(stats)}};
        execute(*pair.forward, handle, pack, workspace, key, "sdpa_causal_forward");
    });
}

template <typename S>
void sdpa_causal_backward(const S* qkv, const S* out, const S* dout, const float* stats, S* dqkv, const SdpaKey& key,
                          void* workspace, cudaStream_t stream) {
    static_assert(sizeof(S) == 2, "cuDNN SDPA takes 16-bit elements");
    MP_REQUIRE(key.element == SdpaElementOf<S>::value, "sdpa_causal_backward: key ", key.str(),
               " does not match the element type of the pointers");
    const SdpaLayout layout = sdpa_layout(key);
    guarded("sdpa_causal_backward", key, [&] {
        cudnnHandle_t handle = nullptr;
        GraphPair& pair = thread_state().ready(key, stream, "sdpa_causal_backward", &handle);
        std::unordered_map<Uid, void*> pack = {{kQ, ptr(qkv + layout.q.offset)},
                                               {kK, ptr(qkv + layout.k.offset)},
                                               {kV, ptr(qkv + layout.v.offset)},
                                               {kO, ptr(out)},
                                               {kDO, ptr(dout)},
                                               {kStats, ptr(stats)},
                                               {kDQ, ptr(dqkv + layout.q.offset)},
                                               {kDK, ptr(dqkv + layout.k.offset)},
                                               {kDV, ptr(dqkv + layout.v.offset)}};
        execute(*pair.backward, handle, pack, workspace, key, "sdpa_causal_backward");
    });
}

template void sdpa_causal_forward<bfloat16>(const bfloat16*, bfloat16*, float*, const SdpaKey&, void*, cudaStream_t);
template void sdpa_causal_backward<bfloat16>(const bfloat16*, const bfloat16*, const bfloat16*, const float*,
                                             bfloat16*, const SdpaKey&, void*, cudaStream_t);

}  // namespace mp::kernels::cudnn
