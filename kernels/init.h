// Initialisation kernels: fill with a constant, arange, and the seeded uniform / normal draws
// (counter-based, see kernels/common/counter_rng.h). Element i of a draw uses counter offset + i.
// defines: fill, arange, fill_uniform, fill_normal (cpu:: for float, double, int32; cuda:: for float,
// int32; fill also for bfloat16, rounded to nearest even)
#pragma once

#include <cstdint>

#include "kernels/common/stream.h"

namespace mp::kernels::cpu {
template <typename T> void fill(T* out, int64_t n, double value);
template <typename T> void arange(T* out, int64_t n);
template <typename T> void fill_uniform(T* out, int64_t n, uint64_t seed, uint64_t offset, double low, double high);
template <typename T> void fill_normal(T* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
template <typename T> void fill(T* out, int64_t n, double value, cudaStream_t stream);
template <typename T> void arange(T* out, int64_t n, cudaStream_t stream);
void fill_uniform(float* out, int64_t n, uint64_t seed, uint64_t offset, double low, double high, cudaStream_t stream);
void fill_normal(float* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double std, cudaStream_t stream);
}  // namespace mp::kernels::cuda
