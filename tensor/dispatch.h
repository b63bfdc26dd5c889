// The one dtype dispatch: from a runtime DType to the C++ element type, for the dtypes an
// operation supports. Every switch on a tensor's dtype goes through it, so that supporting a
// dtype in an op is adding it to the op's set, and an unsupported one is refused with the op's
// name, the dtype and the ones it takes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "base/error.h"
#include "tensor/dtype.h"

namespace mp {

template <typename T> struct TypeTag {
    using type = T;
};

// A set of dtypes: DTypes{DType::Float32, DType::BFloat16}.
class DTypes {
  public:
    constexpr DTypes(std::initializer_list<DType> dtypes) {
        for (DType d : dtypes) mask_ |= bit(d);
    }
    constexpr bool contains(DType d) const { return (mask_ & bit(d)) != 0; }
    std::string names() const {  // "float32 | bfloat16"
        std::string out;
        for (DType d : {DType::Float32, DType::Float64, DType::Int32, DType::BFloat16})
            if (contains(d)) out += (out.empty() ? "" : " | ") + std::string(dtype_name(d));
        return out;
    }

  private:
    static constexpr uint32_t bit(DType d) { return 1u << static_cast<uint32_t>(d); }
    uint32_t mask_ = 0;
};

inline constexpr DTypes kFloatingDTypes{DType::Float32, DType::Float64, DType::BFloat16};
inline constexpr DTypes kAllDTypes{DType::Float32, DType::Float64, DType::Int32, DType::BFloat16};

// Calls f(TypeTag<T>{}) where T is `dtype`'s element type; throws std::invalid_argument
// "<op>: <dtype> is not supported (expected <allowed>)" when `allowed` lacks it.
template <typename F>
decltype(auto) dispatch_dtype(const char* op, DType dtype, DTypes allowed, F&& f) {
    MP_REQUIRE(allowed.contains(dtype), op, ": ", dtype_name(dtype), " is not supported (expected ", allowed.names(),
               ")");
    switch (dtype) {
        case DType::Float32: return std::forward<F>(f)(TypeTag<float>{});
        case DType::Float64: return std::forward<F>(f)(TypeTag<double>{});
        case DType::Int32: return std::forward<F>(f)(TypeTag<int32_t>{});
        case DType::BFloat16: return std::forward<F>(f)(TypeTag<bfloat16>{});
    }
    throw std::logic_error("dispatch_dtype: unknown dtype");
}

// The same over the floating dtypes only (f is instantiated for float, double and bfloat16, not
// int32): for ops whose kernels exist only for floating types. `allowed` must not hold int32.
template <typename F>
decltype(auto) dispatch_floating(const char* op, DType dtype, DTypes allowed, F&& f) {
    MP_REQUIRE(allowed.contains(dtype) && dtype != DType::Int32, op, ": ", dtype_name(dtype),
               " is not supported (expected ", allowed.names(), ")");
    switch (dtype) {
        case DType::Float32: return std::forward<F>(f)(TypeTag<float>{});
        case DType::Float64: return std::forward<F>(f)(TypeTag<double>{});
        case DType::BFloat16: return std::forward<F>(f)(TypeTag<bfloat16>{});
        case DType::Int32: break;
    }
    throw std::logic_error("dispatch_floating: int32");
}

}  // namespace mp
