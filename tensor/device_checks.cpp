// The queue of GPU input checks: one slot (a 64-bit "first bad position" word) per queued check
// in a small device buffer, read back in one copy when the device is next synchronised anyway.
#include "tensor/device_checks.h"

#include <mutex>
#include <vector>

#include "kernels/common/error.h"
#include "tensor/device_context.h"

#if MP_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#endif

namespace mp {

namespace {

// Checks per device between two reads; a full queue is read (one synchronisation) before the
// next check is queued. A pipeline step queues about four per micro-batch.
constexpr size_t kSlots = 1024;
constexpr unsigned long long kNoBadPosition = ~0ULL;

struct PendingCheck {
    IndexErrorMessage message;
    Tensor values;  // kept alive until the verdict is read (the kernel reads it)
};

struct CheckQueue {
    std::mutex mutex;
    Tensor slots;  // kSlots words of 64 bits (as int32 pairs), all ones when unused
    std::vector<PendingCheck> pending;
};

#if MP_CUDA
CheckQueue& queue_of(int device_index) {
    // Never destroyed: tensors must not outlive the device allocator at exit.
    static std::vector<CheckQueue>* queues = new std::vector<CheckQueue>(static_cast<size_t>(cuda_device_count()));
    MP_REQUIRE(device_index >= 0 && device_index < static_cast<int>(queues->size()), "device checks: cuda:",
               device_index, " but ", queues->size(), " GPU(s) are visible");
    return (*queues)[static_cast<size_t>(device_index)];
}
#endif

}  // namespace

void check_index_range(const Tensor& values, int64_t low, int64_t high, int64_t exempt,
                       const IndexErrorMessage& message) {
    MP_REQUIRE(values.defined() && values.dtype() == DType::Int32, "check_index_range: needs an int32 tensor, got ",
               values.defined() ? values.describe() : std::string("an undefined tensor"));
    const int64_t n = values.numel();
    if (n == 0) return;
    if (values.device().is_cpu()) {
        const int32_t* data = values.data<int32_t>();
        const int64_t position = kernels::cpu::first_out_of_range(data, n, low, high, exempt);
        if (position >= 0) throw std::invalid_argument(message(position, data[position]));
        return;
    }
#if MP_CUDA
    const Device device = values.device();
    if (pending_device_checks(device) >= kSlots) raise_device_errors(device);
    CheckQueue& queue = queue_of(device.index);
    std::lock_guard<std::mutex> lock(queue.mutex);
    cudaStream_t stream = compute_stream(device.index);
    if (!queue.slots.defined()) {
        queue.slots = Tensor::empty({2 * static_cast<int64_t>(kSlots)}, DType::Int32, device);
        CUDA_CHECK(cudaMemsetAsync(queue.slots.raw_data(), 0xFF, queue.slots.nbytes(), stream));
    }
    auto* slot = static_cast<unsigned long long*>(queue.slots.raw_data()) + queue.pending.size();
    kernels::cuda::first_out_of_range(values.data<int32_t>(), n, low, high, exempt, slot, stream);
    queue.pending.push_back(PendingCheck{message, values});
#else
    throw RuntimeError("check_index_range: a CUDA tensor in a build without CUDA");
#endif
}

size_t pending_device_checks(Device device) {
    if (device.is_cpu()) return 0;
#if MP_CUDA
    CheckQueue& queue = queue_of(device.index);
    std::lock_guard<std::mutex> lock(queue.mutex);
    return queue.pending.size();
#else
    return 0;
#endif
}

void raise_device_errors(Device device) {
    if (device.is_cpu()) return;
#if MP_CUDA
    CheckQueue& queue = queue_of(device.index);
    std::vector<PendingCheck> checks;
    std::vector<unsigned long long> verdicts;
    {
        std::lock_guard<std::mutex> lock(queue.mutex);
        if (queue.pending.empty()) return;
        checks.swap(queue.pending);
        verdicts.resize(checks.size());
        const size_t bytes = verdicts.size() * sizeof(unsigned long long);
        cudaStream_t stream = compute_stream(device.index);
        CUDA_CHECK(cudaMemcpyAsync(verdicts.data(), queue.slots.raw_data(), bytes, cudaMemcpyDeviceToHost, stream));
        CUDA_CHECK(cudaMemsetAsync(queue.slots.raw_data(), 0xFF, bytes, stream));  // ready for the next checks
        count_host_wait();
        CUDA_CHECK(cudaStreamSynchronize(stream));
    }
    for (size_t i = 0; i < checks.size(); ++i) {
        if (verdicts[i] == kNoBadPosition) continue;
        const int64_t position = static_cast<int64_t>(verdicts[i]);
        const Tensor& values = checks[i].values;
        // Only the error path reads the bad value itself (4 bytes).
        const int32_t value = values.reshape({values.numel()}).slice(position, position + 1).to_vector<int32_t>()[0];
        throw std::invalid_argument(checks[i].message(position, value));
    }
#else
    throw RuntimeError("raise_device_errors: a CUDA device in a build without CUDA");
#endif
}

}  // namespace mp
