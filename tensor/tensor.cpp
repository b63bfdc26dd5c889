// Tensor handle, views, factories and copies. Host<->device copies go through the device's
// compute stream so they are ordered after the kernels that produced the data.
#include "tensor/tensor.h"

#include <atomic>
#include <cstring>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <type_traits>

#include "kernels/init.h"
#include "tensor/allocator.h"
#include "tensor/device_checks.h"
#include "tensor/device_context.h"
#include "tensor/dispatch.h"

#if MP_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#endif

namespace mp {

std::string shape_str(const Shape& shape) {
    std::ostringstream out;
    out << "(";
    for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
    out << ")";
    return out.str();
}

int64_t shape_numel(const Shape& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

Storage::Storage(size_t nbytes_, Device device_) : nbytes(nbytes_), device(device_) {
    data = allocator_for(device).allocate(nbytes);
}

Storage::~Storage() { allocator_for(device).deallocate(data, nbytes); }

namespace {

void check_shape(const Shape& shape, const char* op) {
    for (int64_t d : shape) MP_REQUIRE(d >= 0, op, ": negative dimension in shape ", shape_str(shape));
}

// Copies bytes between any two devices, ordered on the GPU's compute stream; returns once the
// destination holds the data (a host destination can be read right away).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
    if (nbytes == 0) return;
    if (dst_device.is_cpu() && src_device.is_cpu()) {
        std::memcpy(dst, src, nbytes);
        return;
    }
#if MP_CUDA
    if (dst_device.is_cuda() && src_device.is_cuda()) {
        MP_REQUIRE(dst_device == src_device, "copy: cross-GPU copies (", src_device.str(), " -> ", dst_device.str(),
                   ") are not supported; go through the CPU or the comm module");
        CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, compute_stream(dst_device.index)));
        return;
    }
    Device gpu = dst_device.is_cuda() ? dst_device : src_device;
    cudaStream_t stream = compute_stream(gpu.index);
    cudaMemcpyKind kind = dst_device.is_cuda() ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, kind, stream));
    // Host memory here is pageable and may be freed by the caller right after we return.
    count_host_wait();
    CUDA_CHECK(cudaStreamSynchronize(stream));
    // A value read back from the GPU may have been computed from a bad id: report it first.
    if (dst_device.is_cpu()) raise_device_errors(gpu);
#else
    throw RuntimeError("copy: a CUDA tensor exists in a build without CUDA");
#endif
}

template <typename T>
void fill_typed(const Tensor& t, double value) {
    if (t.device().is_cpu()) {
        kernels::cpu::fill<T>(t.data<T>(), t.numel(), value);
    } else {
#if MP_CUDA
        if constexpr (!std::is_same_v<T, double>)  // float64 tensors never live on a GPU
            kernels::cuda::fill<T>(t.data<T>(), t.numel(), value, compute_stream(t.device().index));
#endif
    }
}

}  // namespace

uint64_t Tensor::next_id() {
    static std::atomic<uint64_t> counter{0};
    return ++counter;
}

Tensor Tensor::derived_view() const {
    Tensor view = *this;
    view.id_ = next_id();
    view.autograd_meta_.reset();
    return view;
}

int64_t Tensor::size(int64_t d) const {
    int64_t rank = dim();
    MP_REQUIRE(d >= -rank && d < rank, "size: dim ", d, " out of range for shape ", shape_str(shape_));
    return shape_[d < 0 ? d + rank : d];
}

Device Tensor::device() const { return storage_ ? storage_->device : Device::cpu(); }

std::string Tensor::describe() const {
    if (!defined()) return "undefined tensor";
    return str(dtype_name(dtype_), shape_str(shape_), " on ", device().str());
}

void* Tensor::raw_data() const {
    MP_REQUIRE(defined(), "data: the tensor is undefined");
    return static_cast<char*>(storage_->data) + offset_bytes_;
}

template <typename T>
T* Tensor::data() const {
    MP_REQUIRE(dtype_ == dtype_of<T>(), "data<", dtype_name(dtype_of<T>()), ">: tensor is ", describe());
    return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int32_t* Tensor::data<int32_t>() const;
template bfloat16* Tensor::data<bfloat16>() const;

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
    check_shape(shape, "empty");
    MP_REQUIRE(!(device.is_cuda() && dtype == DType::Float64), "empty: float64 is CPU-only (gradient checks); got ",
               device.str());
    if (device.is_cuda())
        MP_REQUIRE(device.index >= 0 && device.index < cuda_device_count(), "empty: ", device.str(),
                   " requested but ", cuda_device_count(), " GPU(s) are visible");
    Tensor t;
    // Even an empty tensor gets a storage object, so defined() is true.
    t.storage_ = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
    t.shape_ = shape;
    t.dtype_ = dtype;
    t.id_ = next_id();
    return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
    Tensor t = empty(shape, dtype, device);
    t.fill_(value);
    return t;
}

void Tensor::fill_(double value) {
    dispatch_dtype("fill_", dtype_, kAllDTypes, [&](auto tag) { fill_typed<typename decltype(tag)::type>(*this, value); });
}

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
    MP_REQUIRE(n >= 0, "arange: n must be >= 0, got ", n);
    Tensor t = empty({n}, dtype, device);
    if (device.is_cpu()) {
        switch (dtype) {
            case DType::Float32: kernels::cpu::arange(t.data<float>(), n); break;
            case DType::Float64: kernels::cpu::arange(t.data<double>(), n); break;
            case DType::Int32: kernels::cpu::arange(t.data<int32_t>(), n); break;
            default: MP_REQUIRE(false, "arange: unsupported dtype ", dtype_name(dtype));
        }
    } else {
#if MP_CUDA
        cudaStream_t stream = compute_stream(device.index);
        if (dtype == DType::Float32) kernels::cuda::arange(t.data<float>(), n, stream);
        else kernels::cuda::arange(t.data<int32_t>(), n, stream);
#endif
    }
    return t;
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, double mean, double std, DType dtype, Device device) {
    MP_REQUIRE(dtype == DType::Float32 || dtype == DType::Float64, "randn: dtype must be floating, got ",
               dtype_name(dtype));
    Tensor t = empty(shape, dtype, device);
    uint64_t offset = gen.advance(static_cast<uint64_t>(t.numel()));
    if (device.is_cpu()) {
        if (dtype == DType::Float32) kernels::cpu::fill_normal(t.data<float>(), t.numel(), gen.seed(), offset, mean, std);
        else kernels::cpu::fill_normal(t.data<double>(), t.numel(), gen.seed(), offset, mean, std);
    } else {
#if MP_CUDA
        kernels::cuda::fill_normal(t.data<float>(), t.numel(), gen.seed(), offset, mean, std,
                                   compute_stream(device.index));
#endif
    }
    return t;
}

Tensor Tensor::uniform(const Shape& shape, Generator& gen, double low, double high, DType dtype, Device device) {
    MP_REQUIRE(dtype == DType::Float32 || dtype == DType::Float64, "uniform: dtype must be floating, got ",
               dtype_name(dtype));
    MP_REQUIRE(low <= high, "uniform: low (", low, ") must not exceed high (", high, ")");
    Tensor t = empty(shape, dtype, device);
    uint64_t offset = gen.advance(static_cast<uint64_t>(t.numel()));
    if (device.is_cpu()) {
        if (dtype == DType::Float32) kernels::cpu::fill_uniform(t.data<float>(), t.numel(), gen.seed(), offset, low, high);
        else kernels::cpu::fill_uniform(t.data<double>(), t.numel(), gen.seed(), offset, low, high);
    } else {
#if MP_CUDA
        kernels::cuda::fill_uniform(t.data<float>(), t.numel(), gen.seed(), offset, low, high,
                                    compute_stream(device.index));
#endif
    }
    return t;
}

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
    check_shape(shape, "from_vector");
    MP_REQUIRE(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
               " values for shape ", shape_str(shape), " (", shape_numel(shape), " elements)");
    Tensor t = empty(shape, dtype_of<T>(), device);
    copy_bytes(t.raw_data(), device, values.data(), Device::cpu(), t.nbytes());
    return t;
}
template Tensor Tensor::from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor Tensor::from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor Tensor::from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, Device);
template Tensor Tensor::from_vector<bfloat16>(const std::vector<bfloat16>&, const Shape&, Device);

template <typename T>
std::vector<T> Tensor::to_vector() const {
    MP_REQUIRE(defined(), "to_vector: the tensor is undefined");
    MP_REQUIRE(dtype_ == dtype_of<T>(), "to_vector<", dtype_name(dtype_of<T>()), ">: tensor is ", describe());
    std::vector<T> values(static_cast<size_t>(numel()));
    copy_bytes(values.data(), Device::cpu(), raw_data(), device(), nbytes());
    return values;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<bfloat16> Tensor::to_vector<bfloat16>() const;

Tensor Tensor::reshape(const Shape& shape) const {
    MP_REQUIRE(defined(), "reshape: the tensor is undefined");
    Shape resolved = shape;
    int64_t known = 1;
    int inferred = -1;
    for (size_t i = 0; i < resolved.size(); ++i) {
        if (resolved[i] == -1) {
            MP_REQUIRE(inferred < 0, "reshape: more than one -1 in ", shape_str(shape));
            inferred = static_cast<int>(i);
        } else {
            MP_REQUIRE(resolved[i] >= 0, "reshape: negative dimension in ", shape_str(shape));
            known *= resolved[i];
        }
    }
    if (inferred >= 0) {
        MP_REQUIRE(known != 0 && numel() % known == 0, "reshape: cannot infer -1 in ", shape_str(shape), " for ",
                   numel(), " elements of shape ", shape_str(shape_));
        resolved[inferred] = numel() / known;
    }
    MP_REQUIRE(shape_numel(resolved) == numel(), "reshape: shape ", shape_str(shape_), " (", numel(),
               " elements) cannot become ", shape_str(shape), " (", shape_numel(resolved), " elements)");
    Tensor view = derived_view();
    view.shape_ = resolved;
    return view;
}

Tensor Tensor::slice(int64_t start, int64_t end) const {
    MP_REQUIRE(defined(), "slice: the tensor is undefined");
    MP_REQUIRE(dim() >= 1, "slice: needs at least one dimension, got shape ", shape_str(shape_));
    MP_REQUIRE(0 <= start && start <= end && end <= shape_[0], "slice: rows [", start, ", ", end,
               ") out of range for shape ", shape_str(shape_));
    int64_t row_elements = shape_[0] == 0 ? 0 : numel() / shape_[0];
    Tensor view = derived_view();
    view.offset_bytes_ += static_cast<size_t>(start * row_elements) * dtype_size(dtype_);
    view.shape_[0] = end - start;
    return view;
}

Tensor Tensor::to(Device device) const {
    MP_REQUIRE(defined(), "to: the tensor is undefined");
    Tensor out = empty(shape_, dtype_, device);
    copy_bytes(out.raw_data(), device, raw_data(), this->device(), nbytes());
    return out;
}

Tensor Tensor::to(DType dtype) const {
    MP_REQUIRE(defined(), "to: the tensor is undefined");
    MP_REQUIRE(device().is_cpu(), "to(", dtype_name(dtype), "): dtype conversion is CPU-only; tensor is ",
               describe());
    Tensor out = empty(shape_, dtype, Device::cpu());
    // Through double, which holds every float32, float64 and int32 value exactly; a bfloat16
    // target goes through float32 and is rounded to nearest even (as PyTorch converts).
    dispatch_dtype("to", dtype_, kAllDTypes, [&](auto source_tag) {
        using S = typename decltype(source_tag)::type;
        dispatch_dtype("to", dtype, kAllDTypes, [&](auto target_tag) {
            using D = typename decltype(target_tag)::type;
            const S* source = data<S>();
            D* target = out.data<D>();
            for (int64_t i = 0; i < numel(); ++i) target[i] = element_from_double<D>(element_to_double(source[i]));
        });
    });
    return out;
}

Tensor Tensor::clone() const { return to(device()); }

void Tensor::copy_from(const Tensor& source) {
    MP_REQUIRE(defined() && source.defined(), "copy_from: undefined tensor");
    MP_REQUIRE(shape_ == source.shape_ && dtype_ == source.dtype_, "copy_from: destination ", describe(),
               " vs source ", source.describe());
    copy_bytes(raw_data(), device(), source.raw_data(), source.device(), nbytes());
}

double Tensor::item() const {
    MP_REQUIRE(defined() && numel() == 1, "item: needs a one-element tensor, got ", describe());
    return dispatch_dtype("item", dtype_, kAllDTypes, [&](auto tag) {
        return element_to_double(to_vector<typename decltype(tag)::type>()[0]);
    });
}

namespace {
// Prints a CPU tensor's values nested by dimension, eliding the middle of long rows.
template <typename T>
void print_values(std::ostream& out, const T* values, const Shape& shape, size_t dim, int64_t& index) {
    constexpr int64_t kEdge = 3;
    if (dim == shape.size()) {
        out << element_to_double(values[index++]);
        return;
    }
    int64_t n = shape[dim];
    int64_t inner = 1;
    for (size_t d = dim + 1; d < shape.size(); ++d) inner *= shape[d];
    out << "[";
    for (int64_t i = 0; i < n; ++i) {
        if (i > 0) out << (dim + 1 == shape.size() ? ", " : ",\n" + std::string(dim + 1, ' '));
        if (n > 2 * kEdge && i == kEdge) {
            out << "...";
            index += (n - 2 * kEdge) * inner;
            i = n - kEdge - 1;
            continue;
        }
        print_values(out, values, shape, dim + 1, index);
    }
    out << "]";
}
}  // namespace

std::ostream& operator<<(std::ostream& out, const Tensor& tensor) {
    if (!tensor.defined()) return out << "Tensor(undefined)";
    Tensor host = tensor.device().is_cpu() ? tensor : tensor.to(Device::cpu());
    out << "Tensor(";
    int64_t index = 0;
    std::ios_base::fmtflags flags = out.flags();
    out << std::setprecision(6);
    dispatch_dtype("operator<<", tensor.dtype(), kAllDTypes, [&](auto tag) {
        print_values(out, host.data<typename decltype(tag)::type>(), tensor.shape(), 0, index);
    });
    out.flags(flags);
    return out << ", " << tensor.describe() << ")";
}

}  // namespace mp
