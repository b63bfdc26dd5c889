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

// Which column of the table `math` reads: 0 fp32, 1 tf32, 2 bf16.
int peak_column(GemmMath math) {
    if (math.dtype == DType::BFloat16) return 2;
    MP_REQUIRE(math.dtype == DType::Float32, "peak FLOP/s: no figure for GEMMs in ", dtype_name(math.dtype),
               " (only float32 and bfloat16)");
    switch (math.float32_precision) {
        case MatmulPrecision::Exact: return 0;
        case MatmulPrecision::TF32: return 1;
    }
    throw std::invalid_argument(str("peak FLOP/s: matmul precision ", static_cast<int>(math.float32_precision),
                                    " is neither Exact nor TF32"));
}

}  // namespace

double PeakEntry::for_math(GemmMath math) const {
    const double peaks[] = {fp32, tf32, bf16};
    return peaks[peak_column(math)];
}

const char* PeakEntry::math_label(GemmMath math) {
    const char* labels[] = {"FP32", "TF32 dense", "BF16 dense"};
    return labels[peak_column(math)];
}

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
