// CUDA GEMM through cuBLAS: C = alpha * op(A) * op(B) + beta * C for row-major float32
// matrices, single and strided-batched, exact fp32 or TF32 tensor cores; and bfloat16 matrices
// (CUDA_R_16BF in and out, float32 accumulation on bf16 tensor cores, ~990 TFLOP/s dense on H100);
// and bfloat16 operands into a float32 C (mixed-precision weight gradients, beta = 1 in place).
// Floor (H100): 2*m*n*k flops; ~51 TFLOP/s in fp32 (CUDA cores), ~388 TFLOP/s measured with
// TF32 tensor cores. The GPT-2-small MLP product (16384 x 768 x 3072) is 77 GFLOP: ~1.5 ms in
// fp32, ~0.2 ms in TF32.
// Design:
//  - Row-major through a column-major library: a row-major m x n matrix with row stride ld is
//    the column-major n x m matrix (its transpose) with leading dimension ld. So we ask cuBLAS
//    for C^T = op(B)^T * op(A)^T: swap the operands (B first) and swap m and n; the transpose
//    flags and leading dimensions pass through unchanged.
//  - One cuBLAS handle per (thread, device), created on first use; the stream is set on every
//    call, so the caller's stream decides the ordering. Handles are destroyed at thread exit.
//  - Compute type CUBLAS_COMPUTE_32F (true fp32, matches the CPU reference to rounding) or
//    CUBLAS_COMPUTE_32F_FAST_TF32 when allow_tf32 (~7x faster, ~1e-3 relative error).
//  - k == 0 (an empty sum) is C = beta * C: a small scaling kernel, since cuBLAS rejects the
//    zero leading dimension of an empty operand.
#include <climits>
#include <type_traits>
#include <unordered_map>

#include "kernels/common/bfloat16.h"
#include "kernels/cuda/check.cuh"
#include "kernels/gemm.h"

namespace mp::kernels::cuda {

namespace {

// Handles of the calling thread, one per device. cublasDestroy's status is ignored: a destructor
// must not throw, and at thread exit nothing could act on the failure.
class ThreadHandles {
  public:
    ThreadHandles() = default;
    ThreadHandles(const ThreadHandles&) = delete;
    ThreadHandles& operator=(const ThreadHandles&) = delete;
    ~ThreadHandles() {
        for (auto& entry : handles_) cublasDestroy(entry.second);
    }

    // The handle of the current device, bound to `stream`.
    cublasHandle_t for_stream(cudaStream_t stream) {
        int device = 0;
        CUDA_CHECK(cudaGetDevice(&device));
        auto found = handles_.find(device);
        if (found == handles_.end()) {
            cublasHandle_t handle = nullptr;
            CUBLAS_CHECK(cublasCreate(&handle));  // binds the handle to the current device
            // bfloat16 products accumulate in float32 all the way: no reduced-precision split-K
            // reductions (TF32 is still chosen per call, by the compute type).
            const auto math = static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                                        CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION);
            CUBLAS_CHECK(cublasSetMathMode(handle, math));
            found = handles_.emplace(device, handle).first;
        }
        CUBLAS_CHECK(cublasSetStream(found->second, stream));
        return found->second;
    }

  private:
    std::unordered_map<int, cublasHandle_t> handles_;
};

cublasHandle_t handle_for(cudaStream_t stream) {
    thread_local ThreadHandles handles;
    return handles.for_stream(stream);
}

// cuBLAS takes sizes, leading dimensions and the batch count as int.
int cublas_int(int64_t value, const char* name) {
    MP_REQUIRE(value >= 0 && value <= INT_MAX, "gemm (cuda): ", name, "=", value,
               " is outside the int range cuBLAS accepts");
    return static_cast<int>(value);
}

cublasOperation_t cublas_op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

cublasComputeType_t compute_type(bool allow_tf32) {
    return allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

template <typename S> constexpr cudaDataType_t kCudaType = CUDA_R_32F;
template <> constexpr cudaDataType_t kCudaType<bfloat16> = CUDA_R_16BF;

// C = beta * C over `batch` m x n matrices (the k == 0 product); beta == 0 writes zeros, so
// NaN in C does not survive. S is float or bfloat16 (scaled in float32, rounded once).
template <typename S>
__global__ void scale_c_kernel(S* c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c, int64_t batch,
                               float beta) {
    const int64_t total = batch * m * n;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int64_t matrix = idx / (m * n);
        const int64_t row = (idx / n) % m;
        const int64_t col = idx % n;
        S& value = c[matrix * stride_c + row * ldc + col];
        value = S(beta == 0.0f ? 0.0f : __fmul_rn(beta, static_cast<float>(value)));
    }
}

template <typename S>
void scale_c(S* c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c, int64_t batch, float beta,
             cudaStream_t stream) {
    constexpr int kBlock = 256;
    scale_c_kernel<<<cuda_detail::grid_for(batch * m * n, kBlock), kBlock, 0, stream>>>(c, m, n, ldc, stride_c,
                                                                                      batch, beta);
    CUDA_CHECK_LAUNCH();
}

}  // namespace

// The column-major call both element types share: C^T (n x m) = op(B)^T (n x k) * op(A)^T (k x m),
// accumulated in float32 (or TF32 for float inputs when allowed).
template <typename S>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const S* a, int64_t lda,
          const S* b, int64_t ldb, float beta, S* c, int64_t ldc, bool allow_tf32, cudaStream_t stream) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        scale_c(c, m, n, ldc, 0, 1, beta, stream);
        return;
    }
    CUBLAS_CHECK(cublasGemmEx(handle_for(stream), cublas_op(trans_b), cublas_op(trans_a), cublas_int(n, "n"),
                              cublas_int(m, "m"), cublas_int(k, "k"), &alpha, b, kCudaType<S>, cublas_int(ldb, "ldb"),
                              a, kCudaType<S>, cublas_int(lda, "lda"), &beta, c, kCudaType<S>, cublas_int(ldc, "ldc"),
                              compute_type(allow_tf32 && std::is_same_v<S, float>), CUBLAS_GEMM_DEFAULT));
}

template <typename S>
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const S* a,
                          int64_t lda, int64_t stride_a, const S* b, int64_t ldb, int64_t stride_b, float beta, S* c,
                          int64_t ldc, int64_t stride_c, int64_t batch, bool allow_tf32, cudaStream_t stream) {
    if (m == 0 || n == 0 || batch == 0) return;
    if (k == 0) {
        scale_c(c, m, n, ldc, stride_c, batch, beta, stream);
        return;
    }
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        handle_for(stream), cublas_op(trans_b), cublas_op(trans_a), cublas_int(n, "n"), cublas_int(m, "m"),
        cublas_int(k, "k"), &alpha, b, kCudaType<S>, cublas_int(ldb, "ldb"), stride_b, a, kCudaType<S>,
        cublas_int(lda, "lda"), stride_a, &beta, c, kCudaType<S>, cublas_int(ldc, "ldc"), stride_c,
        cublas_int(batch, "batch"), compute_type(allow_tf32 && std::is_same_v<S, float>), CUBLAS_GEMM_DEFAULT));
}

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const bfloat16* a, int64_t lda,
          const bfloat16* b, int64_t ldb, float beta, float* c, int64_t ldc, bool /*allow_tf32*/, cudaStream_t stream) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        scale_c(c, m, n, ldc, 0, 1, beta, stream);
        return;
    }
    CUBLAS_CHECK(cublasGemmEx(handle_for(stream), cublas_op(trans_b), cublas_op(trans_a), cublas_int(n, "n"),
                              cublas_int(m, "m"), cublas_int(k, "k"), &alpha, b, CUDA_R_16BF, cublas_int(ldb, "ldb"),
                              a, CUDA_R_16BF, cublas_int(lda, "lda"), &beta, c, CUDA_R_32F, cublas_int(ldc, "ldc"),
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

template void gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                             int64_t, float, float*, int64_t, bool, cudaStream_t);
template void gemm_strided_batched<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t,
                                             int64_t, const float*, int64_t, int64_t, float, float*, int64_t, int64_t,
                                             int64_t, bool, cudaStream_t);
template void gemm<bfloat16>(bool, bool, int64_t, int64_t, int64_t, float, const bfloat16*, int64_t, const bfloat16*,
                             int64_t, float, bfloat16*, int64_t, bool, cudaStream_t);
template void gemm_strided_batched<bfloat16>(bool, bool, int64_t, int64_t, int64_t, float, const bfloat16*, int64_t,
                                             int64_t, const bfloat16*, int64_t, int64_t, float, bfloat16*, int64_t,
                                             int64_t, int64_t, bool, cudaStream_t);

}  // namespace mp::kernels::cuda
