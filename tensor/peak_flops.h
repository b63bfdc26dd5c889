// Datasheet peak FLOP/s of the GPUs minipipe reports MFU against, one table for the bench and the
// trainer's step log (bench/torch_gpt.py holds the same numbers for PyTorch: keep them in step),
// and the GPT flops-per-token formula MFU multiplies by tokens/s.
#pragma once

#include <cstdint>
#include <string>

#include "tensor/device.h"
#include "tensor/device_context.h"
#include "tensor/dtype.h"

namespace mp {

// What a GEMM peak depends on: the dtype the GEMMs compute in (Float32 or BFloat16) and, for
// float32, the matmul precision (Exact: FP32 CUDA cores; TF32: TF32 Tensor Cores).
struct GemmMath {
    DType dtype = DType::Float32;
    MatmulPrecision float32_precision = MatmulPrecision::Exact;
};

// Datasheet peaks (NVIDIA H100 and H200 Tensor Core GPU datasheets, SXM form factor, dense, i.e.
// without structured sparsity), chosen by the name cudaGetDeviceProperties reports. PCIe and NVL
// parts have lower clocks and power and are not listed: their MFU is unknown. bf16 is the dense
// BF16 Tensor Core figure (the datasheet's 1979 TFLOP/s is with sparsity).
struct PeakEntry {
    const char* label;  // what the figure is for, printed beside it
    const char* name_contains;
    double fp32, tf32, bf16;  // FLOP/s

    // The peak MFU is measured against for GEMMs computing as `math`, and how it is named ("BF16
    // dense", "TF32 dense", "FP32"). A dtype without a figure (float64, int32) or a matmul precision
    // outside the enum throws std::invalid_argument: never a silent fp32.
    double for_math(GemmMath math) const;
    static const char* math_label(GemmMath math);
};

// The table's row for `device_name`, or nullptr when unknown (PCIe/NVL/Grace parts included).
const PeakEntry* find_peak(const std::string& device_name);

// The name the driver reports for `device` ("NVIDIA H200"); "cpu" for the CPU.
std::string device_name(Device device);

// Training flops per token of a GPT: 6·N + 6·L·C·T, where N = parameters outside the token and
// position embedding tables (lookups, not matmuls; an untied head is counted), L layers,
// C channels, T context; 6·L·C·T is the attention score and weighted-sum matmuls (forward and
// backward) over the causal lower triangle only (half of the full 12·L·C·T).
double gpt_flops_per_token(int64_t matmul_parameters, int64_t layers, int64_t channels, int64_t context);

}  // namespace mp
