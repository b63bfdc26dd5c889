// Helpers every op file uses: argument checks whose messages name the op and the offending
// tensors, the stream of a CUDA tensor, and MP_ON_CUDA, which compiles a CUDA kernel call
// only in CUDA builds (a CPU-only build cannot hold a CUDA tensor, so the branch is unreachable).
#pragma once

#include <initializer_list>
#include <type_traits>

#include "base/error.h"
#include "tensor/device_context.h"
#include "tensor/dispatch.h"
#include "tensor/tensor.h"

#if MP_CUDA
#define MP_ON_CUDA(...) __VA_ARGS__
#else
#define MP_ON_CUDA(...) throw ::mp::RuntimeError("CUDA kernel called in a build without CUDA")
#endif

namespace mp::ops::detail {

inline void require_defined(const char* op, const Tensor& t, const char* name) {
    MP_REQUIRE(t.defined(), op, ": ", name, " is an undefined tensor");
}

// All tensors on one device.
inline void require_same_device(const char* op, std::initializer_list<const Tensor*> tensors) {
    const Tensor* first = *tensors.begin();
    for (const Tensor* t : tensors)
        MP_REQUIRE(t->device() == first->device(), op, ": tensors on different devices: ", first->describe(), " and ",
                   t->describe());
}

// All tensors of one dtype.
inline void require_same_dtype(const char* op, std::initializer_list<const Tensor*> tensors) {
    const Tensor* first = *tensors.begin();
    for (const Tensor* t : tensors)
        MP_REQUIRE(t->dtype() == first->dtype(), op, ": dtype mismatch: ", first->describe(), " and ", t->describe());
}

inline void require_same_shape(const char* op, const Tensor& a, const Tensor& b) {
    MP_REQUIRE(a.shape() == b.shape(), op, ": shape mismatch: ", shape_str(a.shape()), " vs ", shape_str(b.shape()));
}

// float32 on any device, or float64 on the CPU (gradient checks).
inline void require_float(const char* op, const Tensor& t) {
    bool ok = t.dtype() == DType::Float32 || (t.dtype() == DType::Float64 && t.device().is_cpu());
    MP_REQUIRE(ok, op, ": expects float32 (or float64 on cpu), got ", t.describe());
}

// The floating dtypes an op with a bfloat16 path takes on `device`: float32 and bfloat16
// everywhere, float64 on the CPU only (gradient checks).
inline DTypes floating_on(Device device) {
    return device.is_cpu() ? kFloatingDTypes : DTypes{DType::Float32, DType::BFloat16};
}
// Whether element type T has CUDA kernels (float64 never lives on a GPU): guards the CUDA branch
// of a dispatch body with `if constexpr`.
template <typename T>
inline constexpr bool kHasCudaKernels = std::is_same_v<T, float> || std::is_same_v<T, bfloat16>;

// The same for a family whose CUDA kernels are float32 only so far (bfloat16 on the CPU only).
inline DTypes floating_cpu_only_bf16(Device device) {
    return device.is_cpu() ? kFloatingDTypes : DTypes{DType::Float32};
}

// t's dtype is one `allowed` holds (by default floating_on(t's device)): "add: expects float32 |
// bfloat16 on cuda:0, got int32(4, 7) on cuda:0".
inline void require_floating(const char* op, const Tensor& t, DTypes allowed) {
    MP_REQUIRE(allowed.contains(t.dtype()), op, ": expects ", allowed.names(), " on ", t.device().str(), ", got ",
               t.describe());
}
inline void require_floating(const char* op, const Tensor& t) { require_floating(op, t, floating_on(t.device())); }

// A bfloat16 tensor on a GPU, for a family whose CUDA kernels are float32 only so far: such ops run
// the float32 kernels on widened inputs and round their outputs once (a correct fallback with the
// CPU reference's semantics, not the fast path: it moves about three times the bytes).
inline bool bf16_through_float32(const Tensor& t) { return t.device().is_cuda() && t.dtype() == DType::BFloat16; }

inline void require_dtype(const char* op, const Tensor& t, DType dtype, const char* name) {
    MP_REQUIRE(t.dtype() == dtype, op, ": ", name, " must be ", dtype_name(dtype), ", got ", t.describe());
}

inline void require_rank_at_least(const char* op, const Tensor& t, int64_t rank, const char* name) {
    MP_REQUIRE(t.dim() >= rank, op, ": ", name, " needs at least ", rank, " dimension(s), got ", shape_str(t.shape()));
}

inline cudaStream_t stream_of(const Tensor& t) { return compute_stream(t.device().index); }

// Rows and columns of a tensor viewed as a matrix over its last dimension.
inline int64_t last_dim(const Tensor& t) { return t.dim() == 0 ? 1 : t.shape().back(); }
inline int64_t rows_over_last_dim(const Tensor& t) {
    int64_t cols = last_dim(t);
    return cols == 0 ? 0 : t.numel() / cols;
}

}  // namespace mp::ops::detail
