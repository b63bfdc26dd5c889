// Time marks on a device's own timeline, for timing work without making the host wait: on CUDA a
// mark is an event recorded on the compute stream (the GPU stamps it when it gets there), on the
// CPU a reading of the host clock. The pipeline engine marks each action's start and end and reads
// the marks once, after the step's single synchronisation.
#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

#include "tensor/device.h"

namespace mp {

class DeviceTimeline {
  public:
    explicit DeviceTimeline(Device device) : device_(device) {}
    ~DeviceTimeline();
    DeviceTimeline(const DeviceTimeline&) = delete;
    DeviceTimeline& operator=(const DeviceTimeline&) = delete;

    // Forgets the marks (their CUDA events are kept for reuse, so a steady state creates none).
    void clear() { marks_ = 0; }
    // Records "now" on the device's timeline; returns the mark's index. Never waits.
    size_t mark();
    // Microseconds from mark `from` to mark `to`. On CUDA, only once the device has passed both
    // (after synchronize(device)); asking earlier throws naming the marks.
    double microseconds(size_t from, size_t to) const;
    size_t marks() const { return marks_; }
    Device device() const { return device_; }

  private:
    Device device_;
    size_t marks_ = 0;
    std::vector<std::chrono::steady_clock::time_point> host_marks_;  // CPU
    std::vector<void*> events_;                                      // CUDA: cudaEvent_t, created on first use
};

}  // namespace mp
