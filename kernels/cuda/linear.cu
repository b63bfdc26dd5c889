// A linear layer's forward as one cuBLASLt matmul with its epilogue (bias; bias + GELU, keeping
// the pre-activation for the backward), and the bias gradient as deterministic column sums that
// accumulate in place into the master's gradient.
// Floor (H100): the forward is its GEMM, 2·rows·in·out flops (~990 TFLOP/s dense bf16) — the
// epilogue removes a read and a write of the output (rows·out elements each) per fused op, e.g.
// for GPT-2 124M's c_fc at B 8, T 1024 (8192 x 3072 outputs, bf16): 2 passes of 50 MB saved ≈ 35 us.
// The bias gradient reads dy once: rows·cols elements (8192 x 3072 bf16: 50 MB ≈ 17 us).
// Design:
//  - Row-major through column-major cuBLASLt, as in gemm.cu: the row-major y (rows x out) is the
//    column-major D (out x rows) = op(A)·B with A = W read as (in x out) and transposed, B = x
//    read as (in x rows); the bias runs along D's rows (out), as the BIAS epilogue wants.
//  - One cuBLASLt handle and one 32 MiB workspace per (thread, device), created on first use.
//    Descriptors are built per call (a few microseconds; cached plans are future work).
//  - When cuBLASLt offers no algorithm (alignment, odd leading dimensions), linear_forward
//    returns false and the caller composes GEMM + bias + GELU: never a wrong answer.
//  - bias_grad: pass 1 gives each (column, chunk of rows) a float32 partial, the chunking a
//    function of the shape only; pass 2 sums the chunks in order and adds to the gradient.
#include <cublasLt.h>

#include <type_traits>
#include <unordered_map>
#include <utility>

#include "kernels/common/bfloat16.h"
#include "kernels/cuda/check.cuh"
#include "kernels/linear.h"

#define CUBLASLT_CHECK(call)                                                                           \
    do {                                                                                               \
        cublasStatus_t mp_lt_status_ = (call);                                                         \
        if (mp_lt_status_ != CUBLAS_STATUS_SUCCESS)                                                    \
            ::mp::cuda_detail::throw_cublas(mp_lt_status_, #call, __FILE__, __LINE__);                 \
    } while (0)

namespace mp::kernels::cuda {

namespace {

constexpr size_t kWorkspaceBytes = 32u << 20;  // cuBLASLt's recommendation for Hopper
constexpr int kBlock = 256;

// The calling thread's cuBLASLt handle and workspace on each device. Destruction ignores errors:
// a destructor must not throw, and at thread exit nothing could act on them.
class ThreadLt {
  public:
    struct PerDevice {
        cublasLtHandle_t handle = nullptr;
        void* workspace = nullptr;
    };
    ThreadLt() = default;
    ThreadLt(const ThreadLt&) = delete;
    ThreadLt& operator=(const ThreadLt&) = delete;
    ~ThreadLt() {
        for (auto& entry : devices_) {
            cudaFree(entry.second.workspace);
            cublasLtDestroy(entry.second.handle);
        }
    }
    const PerDevice& current() {
        int device = 0;
        CUDA_CHECK(cudaGetDevice(&device));
        auto found = devices_.find(device);
        if (found == devices_.end()) {
            PerDevice created;
            CUBLASLT_CHECK(cublasLtCreate(&created.handle));
            const cudaError_t allocated = cudaMalloc(&created.workspace, kWorkspaceBytes);
            if (allocated != cudaSuccess) {
                cublasLtDestroy(created.handle);  // not leaked when the workspace cannot be had
                CUDA_CHECK(allocated);
            }
            found = devices_.emplace(device, created).first;
        }
        return found->second;
    }

  private:
    std::unordered_map<int, PerDevice> devices_;
};

const ThreadLt::PerDevice& lt_for_current_device() {
    thread_local ThreadLt lt;
    return lt.current();
}

// Owners of cuBLASLt descriptors (destroyed on every path, errors ignored as above).
struct MatmulDesc {
    cublasLtMatmulDesc_t desc = nullptr;
    ~MatmulDesc() { if (desc) cublasLtMatmulDescDestroy(desc); }
};
struct Layout {
    cublasLtMatrixLayout_t layout = nullptr;
    ~Layout() { if (layout) cublasLtMatrixLayoutDestroy(layout); }
};
struct Preference {
    cublasLtMatmulPreference_t preference = nullptr;
    ~Preference() { if (preference) cublasLtMatmulPreferenceDestroy(preference); }
};

template <typename T> constexpr cudaDataType_t kCudaType = CUDA_R_32F;
template <> constexpr cudaDataType_t kCudaType<bfloat16> = CUDA_R_16BF;

template <typename Attr, typename V>
void set_attribute(cublasLtMatmulDesc_t desc, Attr attribute, const V& value) {
    CUBLASLT_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
}

// Pass 1: workspace[chunk * cols + col] = Σ over the chunk's rows of dy[row][col], in float32.
template <typename T>
__global__ void column_chunk_sums_kernel(const T* dy, float* workspace, int64_t rows, int64_t cols,
                                         int64_t rows_per_chunk) {
    const int64_t col = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (col >= cols) return;
    const int64_t begin = blockIdx.y * rows_per_chunk;
    const int64_t end = begin + rows_per_chunk < rows ? begin + rows_per_chunk : rows;
    float acc = 0.0f;
    for (int64_t r = begin; r < end; ++r) acc += static_cast<float>(dy[r * cols + col]);
    workspace[blockIdx.y * cols + col] = acc;
}

// Pass 2: the chunks in order, then added to (or written over) the gradient, rounded once to G.
template <typename G>
__global__ void add_chunk_sums_kernel(const float* workspace, G* grad, int64_t cols, int64_t chunks, bool accumulate) {
    const int64_t col = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (col >= cols) return;
    float sum = 0.0f;
    for (int64_t c = 0; c < chunks; ++c) sum += workspace[c * cols + col];
    grad[col] = G(accumulate ? static_cast<float>(grad[col]) + sum : sum);
}

// The largest power of two up to 256 that divides the address.
uint32_t alignment_of(const void* pointer) {
    uint32_t alignment = 256;
    while (alignment > 1 && reinterpret_cast<uintptr_t>(pointer) % alignment != 0) alignment /= 2;
    return alignment;
}

int64_t column_blocks(int64_t cols) { return (cols + kBlock - 1) / kBlock; }

// Rows per chunk: about 1024 blocks in pass 1, at least 32 rows each. Depends on the shape only.
int64_t rows_per_chunk(int64_t rows, int64_t cols) {
    const int64_t wanted_chunks = (1024 + column_blocks(cols) - 1) / column_blocks(cols);
    int64_t per_chunk = (rows + wanted_chunks - 1) / wanted_chunks;
    if (per_chunk < 32) per_chunk = 32;
    return per_chunk;
}

int64_t chunk_count(int64_t rows, int64_t cols) {
    if (rows == 0 || cols == 0) return 0;
    const int64_t per_chunk = rows_per_chunk(rows, cols);
    return (rows + per_chunk - 1) / per_chunk;
}

}  // namespace

template <typename T>
bool linear_forward(const T* x, const T* w, const T* b, T* y, T* pre, int64_t rows, int64_t in, int64_t out,
                    LinearEpilogue epilogue, bool allow_tf32, cudaStream_t stream) {
    if (rows == 0 || out == 0 || in == 0) return false;  // the composed path handles empty products
    if (epilogue == LinearEpilogue::BiasGelu && out % 8 != 0) return false;  // GELU_AUX's leading dim: 8k
    const ThreadLt::PerDevice& lt = lt_for_current_device();
    const bool tf32 = allow_tf32 && std::is_same_v<T, float>;
    MatmulDesc op;
    CUBLASLT_CHECK(cublasLtMatmulDescCreate(&op.desc, tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F,
                                            CUDA_R_32F));
    set_attribute(op.desc, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T);
    set_attribute(op.desc, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
    cublasLtEpilogue_t kind = CUBLASLT_EPILOGUE_DEFAULT;
    if (epilogue == LinearEpilogue::Bias) kind = CUBLASLT_EPILOGUE_BIAS;
    if (epilogue == LinearEpilogue::BiasGelu) kind = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    set_attribute(op.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, kind);
    if (epilogue != LinearEpilogue::None) {
        set_attribute(op.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, b);
        set_attribute(op.desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, kCudaType<T>);
    }
    if (epilogue == LinearEpilogue::BiasGelu) {
        set_attribute(op.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, static_cast<void*>(pre));
        set_attribute(op.desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, out);
    }
    Layout a, bl, d;
    CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&a.layout, kCudaType<T>, in, out, in));    // W as (in x out)
    CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&bl.layout, kCudaType<T>, in, rows, in));  // x as (in x rows)
    CUBLASLT_CHECK(cublasLtMatrixLayoutCreate(&d.layout, kCudaType<T>, out, rows, out)); // y as (out x rows)
    Preference preference;
    CUBLASLT_CHECK(cublasLtMatmulPreferenceCreate(&preference.preference));
    const uint64_t workspace_bytes = kWorkspaceBytes;
    CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference.preference,
                                                        CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
                                                        sizeof(workspace_bytes)));
    // The pointers' real alignment (the default assumes 256 bytes, which a micro-batch slice of an
    // odd-width tensor does not have), so that only algorithms that can read them are offered.
    const uint32_t align_a = alignment_of(w), align_b = alignment_of(x), align_cd = alignment_of(y);
    for (auto [attribute, value] : {std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
                                    std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
                                    std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_cd},
                                    std::pair{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_cd}})
        CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference.preference, attribute, &value, sizeof(value)));
    // Split-K partial sums in float32 only, never in the output type (bfloat16): one rounding, as
    // gemm.cu's CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION.
    const uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    CUBLASLT_CHECK(cublasLtMatmulPreferenceSetAttribute(preference.preference,
                                                        CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes,
                                                        sizeof(schemes)));
    cublasLtMatmulHeuristicResult_t heuristic{};
    int found = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(lt.handle, op.desc, a.layout, bl.layout, d.layout,
                                                                 d.layout, preference.preference, 1, &heuristic,
                                                                 &found);
    if (status == CUBLAS_STATUS_NOT_SUPPORTED || (status == CUBLAS_STATUS_SUCCESS && found == 0)) return false;
    CUBLASLT_CHECK(status);
    const float alpha = 1.0f, beta = 0.0f;
    CUBLASLT_CHECK(cublasLtMatmul(lt.handle, op.desc, &alpha, w, a.layout, x, bl.layout, &beta, y, d.layout, y,
                                  d.layout, &heuristic.algo, lt.workspace, kWorkspaceBytes, stream));
    return true;
}

size_t bias_grad_workspace_floats(int64_t rows, int64_t cols) {
    return static_cast<size_t>(chunk_count(rows, cols) * cols);
}

template <typename T, typename G>
void bias_grad(const T* dy, G* grad, int64_t rows, int64_t cols, bool accumulate, float* workspace,
               cudaStream_t stream) {
    if (cols == 0) return;
    const int64_t chunks = chunk_count(rows, cols);
    const dim3 pass1(static_cast<unsigned>(column_blocks(cols)), static_cast<unsigned>(chunks));
    if (chunks > 0) {
        column_chunk_sums_kernel<<<pass1, kBlock, 0, stream>>>(dy, workspace, rows, cols, rows_per_chunk(rows, cols));
        CUDA_CHECK_LAUNCH();
    }
    add_chunk_sums_kernel<<<static_cast<unsigned>(column_blocks(cols)), kBlock, 0, stream>>>(workspace, grad, cols,
                                                                                           chunks, accumulate);
    CUDA_CHECK_LAUNCH();
}

template bool linear_forward<float>(const float*, const float*, const float*, float*, float*, int64_t, int64_t,
                                    int64_t, LinearEpilogue, bool, cudaStream_t);
template bool linear_forward<bfloat16>(const bfloat16*, const bfloat16*, const bfloat16*, bfloat16*, bfloat16*,
                                       int64_t, int64_t, int64_t, LinearEpilogue, bool, cudaStream_t);
template void bias_grad<float, float>(const float*, float*, int64_t, int64_t, bool, float*, cudaStream_t);
template void bias_grad<bfloat16, float>(const bfloat16*, float*, int64_t, int64_t, bool, float*, cudaStream_t);
template void bias_grad<bfloat16, bfloat16>(const bfloat16*, bfloat16*, int64_t, int64_t, bool, float*,
                                            cudaStream_t);

}  // namespace mp::kernels::cuda
