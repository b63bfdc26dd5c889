// MP_HOST_DEVICE: a small function compiled for the host and, under nvcc, for the device too
// (inline either way), so CPU references and CUDA kernels can share it.
#pragma once

#if defined(__CUDACC__)
#define MP_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MP_HOST_DEVICE inline
#endif
