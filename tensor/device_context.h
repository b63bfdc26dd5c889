// The per-GPU device context: one compute stream per device (every kernel of that device runs
// on it, in order), device selection and synchronisation, and the process-wide GEMM precision.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/common/stream.h"
#include "tensor/device.h"

namespace mp {

// The compute stream of GPU `index`, created on first use. Throws in a CPU-only build.
cudaStream_t compute_stream(int index);
// Makes GPU `index` current for this thread (cudaSetDevice), checked.
void set_current_device(int index);
// Waits for all work queued on the device's compute stream; a no-op for the CPU. Then reports a
// failed queued input check (tensor/device_checks.h), if any.
void synchronize(Device device);

// How many times this process's host has waited for a GPU in tensor/ (synchronize, copies between
// host and device, reading queued checks). Tests use it to show that a hot path never waits.
uint64_t host_wait_count();
void count_host_wait();  // called by each of those places

// The memory of a device in bytes: the host's physical memory for the CPU, the GPU's total
// memory for CUDA. For refusing, with numbers, a model that cannot fit before building it.
size_t device_memory_bytes(Device device);

// Threads the CPU kernels may use in this process: OpenMP's pool, which also runs the GEMMs
// (OpenBLAS itself is kept single-threaded, see kernels/cpu/gemm.cpp). Several ranks on one
// machine should split its cores between them instead of each taking all of them.
void set_cpu_threads(int threads);
int cpu_threads();

// GEMM precision for float32 matmuls on CUDA: Exact (true fp32, the default, so results match
// the CPU reference) or TF32 (tensor cores, ~10 mantissa bits in the products). CPU is always exact.
enum class MatmulPrecision { Exact, TF32 };
void set_matmul_precision(MatmulPrecision precision);
MatmulPrecision matmul_precision();

}  // namespace mp
