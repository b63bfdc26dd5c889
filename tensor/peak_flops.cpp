// The peak table and the device-name lookup behind MFU (tensor/peak_flops.h), shared by
// bench/bench_gpt.cpp and the trainer's step log.
#include "tensor/peak_flops.h"

#include "base/error.h"

#if MP_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#endif

namespace mp {

namespace {
const PeakEntry kPeakTable[] = {
    {"H100 SXM (datasheet)", "H100", 67e12, 495e12, 990e12},
    {"H200 SXM (datasheet)", "H200", 67e12, 495e12, 990e12},
};
}  // namespace

const PeakEntry* find_peak(const std::string& device_name) {
    for (const char* other_form : {"PCIe", "NVL", "GH200"})
        if (device_name.find(other_form) != std::string::npos) return nullptr;
    for (const PeakEntry& entry : kPeakTable)
        if (device_name.find(entry.name_contains) != std::string::npos) return &entry;
    return nullptr;
}

std::string device_name(Device device) {
    if (!device.is_cuda()) return "cpu";
#if MP_CUDA
    cudaDeviceProp properties;
    CUDA_CHECK(cudaGetDeviceProperties(&properties, device.index));
    return properties.name;
#else
    throw std::invalid_argument(str("device_name: ", device.str(), " in a build without CUDA"));
#endif
}

double gpt_flops_per_token(int64_t matmul_parameters, int64_t layers, int64_t channels, int64_t context) {
    return 6.0 * static_cast<double>(matmul_parameters) +
           6.0 * static_cast<double>(layers) * static_cast<double>(channels) * static_cast<double>(context);
}

}  // namespace mp
