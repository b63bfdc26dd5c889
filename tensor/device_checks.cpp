// The queue of GPU input checks: one slot (a 64-bit "first bad position" word) per queued check
// in a small device buffer, read back in one copy when the device is next synchronised anyway.
#include "tensor/device_checks.h"

#include <mutex>
#include <utility>
#include <vector>

#include "base/error.h"
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

// Makes `index` the current device for a scope (launches and memsets go to the current device),
// then restores the caller's.
class CurrentDevice {
  public:
    explicit CurrentDevice(int index) {
        CUDA_CHECK(cudaGetDevice(&previous_));
        if (previous_ != index) CUDA_CHECK(cudaSetDevice(index));
    }
    ~CurrentDevice() { cudaSetDevice(previous_); }  // restoring the caller's device cannot fail usefully here
    CurrentDevice(const CurrentDevice&) = delete;
    CurrentDevice& operator=(const CurrentDevice&) = delete;

  private:
    int previous_ = 0;
};

// The checks taken off a queue with their verdicts (the first bad position, or all ones).
struct Drained {
    std::vector<PendingCheck> checks;
    std::vector<unsigned long long> verdicts;
};

// Takes every queued check and its verdict off the queue; the caller holds the queue's lock.
// Waits for the device (the verdicts are written by kernels queued on its compute stream).
Drained drain_locked(CheckQueue& queue, int device_index) {
    Drained drained;
    if (queue.pending.empty()) return drained;
    drained.checks.swap(queue.pending);
    queue.pending.reserve(kSlots);
    drained.verdicts.resize(drained.checks.size());
    const size_t bytes = drained.verdicts.size() * sizeof(unsigned long long);
    CurrentDevice current(device_index);
    cudaStream_t stream = compute_stream(device_index);
    CUDA_CHECK(cudaMemcpyAsync(drained.verdicts.data(), queue.slots.raw_data(), bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaMemsetAsync(queue.slots.raw_data(), 0xFF, bytes, stream));  // ready for the next checks
    count_host_wait();
    CUDA_CHECK(cudaStreamSynchronize(stream));
    return drained;
}

// The message of the earliest-queued failed check, or "" when every check passed. Reads the
// bad value itself (4 bytes) on that error path only; the caller must not hold the lock.
std::string first_error(const Drained& drained) {
    for (size_t i = 0; i < drained.checks.size(); ++i) {
        if (drained.verdicts[i] == kNoBadPosition) continue;
        const int64_t position = static_cast<int64_t>(drained.verdicts[i]);
        const Tensor& values = drained.checks[i].values;
        const int32_t value = values.reshape({values.numel()}).slice(position, position + 1).to_vector<int32_t>()[0];
        return drained.checks[i].message(position, value);
    }
    return "";
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
    const int index = values.device().index;
    CheckQueue& queue = queue_of(index);
    PendingCheck check{message, values};  // copied before the launch, so nothing can fail after it
    std::unique_lock<std::mutex> lock(queue.mutex);
    while (queue.pending.size() >= kSlots) {  // full: read the verdicts so far (one wait)
        Drained drained = drain_locked(queue, index);
        lock.unlock();
        std::string error = first_error(drained);
        if (!error.empty()) throw std::invalid_argument(error);
        lock.lock();
    }
    CurrentDevice current(index);
    cudaStream_t stream = compute_stream(index);
    if (!queue.slots.defined()) {
        queue.slots = Tensor::empty({2 * static_cast<int64_t>(kSlots)}, DType::Int32, values.device());
        CUDA_CHECK(cudaMemsetAsync(queue.slots.raw_data(), 0xFF, queue.slots.nbytes(), stream));
        queue.pending.reserve(kSlots);
    }
    auto* slot = static_cast<unsigned long long*>(queue.slots.raw_data()) + queue.pending.size();
    kernels::cuda::first_out_of_range(values.data<int32_t>(), n, low, high, exempt, slot, stream);
    queue.pending.push_back(std::move(check));  // capacity reserved: no reallocation here
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

std::string take_device_error(Device device) {
    if (device.is_cpu()) return "";
#if MP_CUDA
    CheckQueue& queue = queue_of(device.index);
    Drained drained;
    {
        std::lock_guard<std::mutex> lock(queue.mutex);
        drained = drain_locked(queue, device.index);
    }
    return first_error(drained);
#else
    throw RuntimeError("take_device_error: a CUDA device in a build without CUDA");
#endif
}

void raise_device_errors(Device device) {
    std::string error = take_device_error(device);
    if (!error.empty()) throw std::invalid_argument(error);
}

}  // namespace mp
