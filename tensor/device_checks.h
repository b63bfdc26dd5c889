// Input checks that the GPU runs for ops whose kernels cannot throw (embedding ids, cross-entropy
// targets). The check is a kernel queued on the compute stream; its verdict is read at the
// device's next synchronisation point, so the training hot path never waits for the GPU to tell
// the host that the ids were fine. A bad value is still reported as std::invalid_argument naming
// the op, the value and its position: by raise_device_errors; by the pipeline engine before every
// optimizer step, where all stages agree to stop (nothing is trained on a bad batch); and by every
// synchronising read of that device (Tensor::to_vector / item / to(cpu), synchronize), so no
// result computed from a bad id can be read without the error.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "kernels/index_check.h"
#include "tensor/tensor.h"

namespace mp {

// Builds the error message for the first bad value: (position in the flattened tensor, value).
using IndexErrorMessage = std::function<std::string(int64_t position, int32_t value)>;

// Checks that every value of `values` (int32) lies in [low, high) or equals `exempt`
// (kernels::kNoExemptValue: none). On the CPU it throws std::invalid_argument(message(...)) at
// once; on CUDA the check is queued and the same error is thrown later (see above).
void check_index_range(const Tensor& values, int64_t low, int64_t high, int64_t exempt,
                       const IndexErrorMessage& message);

// Reads the verdicts of every check queued on `device` (waiting for the device) and throws the
// error of the earliest-queued check that failed; the queue is empty afterwards either way.
// A no-op for the CPU and when nothing is queued.
void raise_device_errors(Device device);
// The same, returning that error's message instead of throwing it ("" when every check passed):
// for callers that must first tell other ranks (the pipeline engine).
std::string take_device_error(Device device);

// Checks queued on `device` and not yet read (for tests and the engine's accounting).
size_t pending_device_checks(Device device);

}  // namespace mp
