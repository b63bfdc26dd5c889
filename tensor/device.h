// Where a tensor lives: the CPU, or CUDA device n. Plus the queries every layer needs
// (is CUDA compiled in? how many GPUs are visible?) that must also work in CPU-only builds.
#pragma once

#include <string>

namespace mp {

struct Device {
    enum class Kind { CPU, CUDA };
    Kind kind = Kind::CPU;
    int index = 0;

    static Device cpu() { return Device{Kind::CPU, 0}; }
    static Device cuda(int index = 0) { return Device{Kind::CUDA, index}; }

    bool is_cpu() const { return kind == Kind::CPU; }
    bool is_cuda() const { return kind == Kind::CUDA; }
    std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }

    bool operator==(const Device& other) const { return kind == other.kind && index == other.index; }
    bool operator!=(const Device& other) const { return !(*this == other); }
};

// True when this build compiled the CUDA backend (nvcc was found and CUDA=0 was not given).
bool cuda_compiled();
// Number of usable GPUs: 0 in a CPU-only build, with no driver, or with no device.
int cuda_device_count();
inline bool cuda_available() { return cuda_device_count() > 0; }

}  // namespace mp
