// Checks for every MPI and NCCL call made by comm/: a failure throws mp::RuntimeError carrying
// the call, the library's error string and file:line (the MPI/NCCL twins of CUDA_CHECK).
// MPI errors only come back as codes because comm/ sets MPI_ERRORS_RETURN on its communicators.
#pragma once

#include <mpi.h>

#include "base/error.h"

#if MP_NCCL && MP_CUDA
#include <nccl.h>
#endif

namespace mp::comm_detail {

[[noreturn]] inline void throw_mpi(int code, const char* call, const char* file, int line) {
    char text[MPI_MAX_ERROR_STRING] = {0};
    int length = 0;
    if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) text[0] = '\0';
    throw ::mp::RuntimeError(::mp::str("MPI error ", code, " (", text, ") in ", call, " at ", file, ":", line));
}

#if MP_NCCL && MP_CUDA
[[noreturn]] inline void throw_nccl(ncclResult_t result, const char* call, const char* file, int line) {
    throw ::mp::RuntimeError(::mp::str("NCCL error ", static_cast<int>(result), " (", ncclGetErrorString(result),
                                       ") in ", call, " at ", file, ":", line));
}
#endif

}  // namespace mp::comm_detail

#define MPI_CHECK(call)                                                                            \
    do {                                                                                           \
        int mp_mpi_code_ = (call);                                                                 \
        if (mp_mpi_code_ != MPI_SUCCESS) ::mp::comm_detail::throw_mpi(mp_mpi_code_, #call, __FILE__, __LINE__); \
    } while (0)

// For blocking NCCL communicators. Non-blocking ones (ncclInProgress) go through
// NcclCommunicator's own wait, which polls ncclCommGetAsyncError against the deadline.
#define NCCL_CHECK(call)                                                                           \
    do {                                                                                           \
        ncclResult_t mp_nccl_result_ = (call);                                                     \
        if (mp_nccl_result_ != ncclSuccess)                                                        \
            ::mp::comm_detail::throw_nccl(mp_nccl_result_, #call, __FILE__, __LINE__);             \
    } while (0)
