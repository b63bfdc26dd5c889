// DeviceTimeline: CUDA events recorded on the compute stream (reused from step to step), or host
// clock readings for the CPU.
#include "tensor/device_timeline.h"

#include "base/error.h"
#include "tensor/device_context.h"

#if MP_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#endif

namespace mp {

DeviceTimeline::~DeviceTimeline() {
#if MP_CUDA
    for (void* event : events_) cudaEventDestroy(static_cast<cudaEvent_t>(event));  // nothing to report to here
#endif
}

size_t DeviceTimeline::mark() {
    const size_t index = marks_++;
    if (device_.is_cpu()) {
        if (host_marks_.size() <= index) host_marks_.resize(index + 1);
        host_marks_[index] = std::chrono::steady_clock::now();
        return index;
    }
#if MP_CUDA
    if (events_.size() <= index) {
        set_current_device(device_.index);
        cudaEvent_t event = nullptr;
        CUDA_CHECK(cudaEventCreate(&event));
        events_.push_back(event);
    }
    CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(events_[index]), compute_stream(device_.index)));
    return index;
#else
    throw RuntimeError("DeviceTimeline: a CUDA device in a build without CUDA");
#endif
}

double DeviceTimeline::microseconds(size_t from, size_t to) const {
    MP_REQUIRE(from < marks_ && to < marks_, "DeviceTimeline: marks ", from, " and ", to, " asked of ", marks_,
               " marks");
    if (device_.is_cpu())
        return std::chrono::duration<double, std::micro>(host_marks_[to] - host_marks_[from]).count();
#if MP_CUDA
    float ms = 0;
    cudaError_t status = cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(events_[from]),
                                              static_cast<cudaEvent_t>(events_[to]));
    MP_REQUIRE(status != cudaErrorNotReady, "DeviceTimeline: marks ", from, " and ", to,
               " read before the device reached them (synchronize first)");
    CUDA_CHECK(status);
    return 1000.0 * static_cast<double>(ms);
#else
    throw RuntimeError("DeviceTimeline: a CUDA device in a build without CUDA");
#endif
}

}  // namespace mp
