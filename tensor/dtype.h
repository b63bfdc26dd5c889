// Element types a Tensor can hold. float32 is the working type everywhere; float64 exists on
// CPU for finite-difference gradient checks; int32 holds token ids and targets; bfloat16 is the
// storage type of mixed precision (kernels/common/bfloat16.h; ops compute in float32).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/common/bfloat16.h"

namespace mp {

enum class DType { Float32, Float64, Int32, BFloat16 };

inline size_t dtype_size(DType dtype) {
    switch (dtype) {
        case DType::Float32: return 4;
        case DType::Float64: return 8;
        case DType::Int32: return 4;
        case DType::BFloat16: return 2;
    }
    return 0;
}

inline const char* dtype_name(DType dtype) {
    switch (dtype) {
        case DType::Float32: return "float32";
        case DType::Float64: return "float64";
        case DType::Int32: return "int32";
        case DType::BFloat16: return "bfloat16";
    }
    return "?";
}

inline bool is_floating(DType dtype) { return dtype != DType::Int32; }

// The DType of a C++ element type: dtype_of<float>() == DType::Float32.
template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::Float32; }
template <> constexpr DType dtype_of<double>() { return DType::Float64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::Int32; }
template <> constexpr DType dtype_of<bfloat16>() { return DType::BFloat16; }

}  // namespace mp
