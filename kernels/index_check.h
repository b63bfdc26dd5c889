// The range check of integer inputs that index memory (token ids, class targets). A CUDA kernel
// cannot throw, so on the GPU the check is a kernel of its own that records the first bad position
// in device memory, read back later (tensor/device_checks.h); the CPU reference answers at once.
// defines: kNoExemptValue, cpu::first_out_of_range, cuda::first_out_of_range
#pragma once

#include <cstdint>
#include <limits>

#include "kernels/common/stream.h"

namespace mp::kernels {
// `exempt` below: one value accepted although it lies outside [low, high) (cross-entropy's
// ignore_index), or kNoExemptValue, which no int32 equals.
constexpr int64_t kNoExemptValue = std::numeric_limits<int64_t>::min();
}  // namespace mp::kernels

namespace mp::kernels::cpu {
// The smallest p with values[p] outside [low, high) and != exempt, or -1 when there is none.
int64_t first_out_of_range(const int32_t* values, int64_t n, int64_t low, int64_t high, int64_t exempt);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
// The same position, folded into *first_position by atomicMin: the caller sets that device word
// to all ones (UINT64_MAX, "none") beforehand, and reads it after the stream has run the kernel.
// Several checks may share one word; it then holds the smallest bad position of them all.
void first_out_of_range(const int32_t* values, int64_t n, int64_t low, int64_t high, int64_t exempt,
                        unsigned long long* first_position, cudaStream_t stream);
}  // namespace mp::kernels::cuda
