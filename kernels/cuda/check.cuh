// Checks for every CUDA and cuBLAS call, and for every kernel launch: a failure throws
// mp::RuntimeError carrying the call, the error string and file:line (as llm.c's cudaCheck,
// but throwing instead of exiting, so tests can catch it and trainers can report it).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "base/error.h"

namespace mp::cuda_detail {

[[noreturn]] inline void throw_cuda(cudaError_t err, const char* call, const char* file, int line) {
    throw ::mp::RuntimeError(::mp::str("CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
                                       ") in ", call, " at ", file, ":", line));
}

[[noreturn]] inline void throw_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
    throw ::mp::RuntimeError(::mp::str("cuBLAS error ", cublasGetStatusName(status), " (",
                                       cublasGetStatusString(status), ") in ", call, " at ", file, ":", line));
}

}  // namespace mp::cuda_detail

#define CUDA_CHECK(call)                                                                       \
    do {                                                                                       \
        cudaError_t mp_err_ = (call);                                                          \
        if (mp_err_ != cudaSuccess) ::mp::cuda_detail::throw_cuda(mp_err_, #call, __FILE__, __LINE__); \
    } while (0)

#define CUBLAS_CHECK(call)                                                                             \
    do {                                                                                               \
        cublasStatus_t mp_status_ = (call);                                                            \
        if (mp_status_ != CUBLAS_STATUS_SUCCESS)                                                       \
            ::mp::cuda_detail::throw_cublas(mp_status_, #call, __FILE__, __LINE__);                    \
    } while (0)

// After every kernel launch: catches bad launch configurations at the launch site.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

namespace mp::cuda_detail {
// Grid size for a 1-D elementwise launch, capped; kernels use grid-stride loops.
inline unsigned grid_for(long long n, int block) {
    long long blocks = (n + block - 1) / block;
    if (blocks < 1) blocks = 1;
    if (blocks > 65535LL * 16) blocks = 65535LL * 16;
    return static_cast<unsigned>(blocks);
}
}  // namespace mp::cuda_detail
