// Tensor: a cheap handle (shared storage + byte offset + shape + dtype + device).
// Always contiguous row-major. The only views are reshape and a slice along dim 0 — exactly
// what micro-batching needs — so every kernel can assume dense, contiguous memory.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "tensor/device.h"
#include "tensor/dtype.h"

namespace mp {

struct AutogradMeta;  // defined by autograd/: the gradient slot of a parameter

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);  // "(4, 7, 33)"
int64_t shape_numel(const Shape& shape);

// Owns one allocation from the device's allocator; freed when the last Tensor drops it.
struct Storage {
    void* data = nullptr;
    size_t nbytes = 0;
    Device device;
    Storage(size_t nbytes, Device device);
    ~Storage();
    Storage(const Storage&) = delete;
    Storage& operator=(const Storage&) = delete;
};

// A seeded stream of counter-based random numbers: each draw of n values takes counters
// [offset, offset + n) and advances the offset, so successive draws differ and the same seed
// replays the same sequence on CPU and CUDA.
class Generator {
  public:
    explicit Generator(uint64_t seed) : seed_(seed) {}
    uint64_t seed() const { return seed_; }
    uint64_t offset() const { return offset_; }
    // Reserves n counters and returns the first.
    uint64_t advance(uint64_t n) {
        uint64_t first = offset_;
        offset_ += n;
        return first;
    }

  private:
    uint64_t seed_;
    uint64_t offset_ = 0;
};

class Tensor {
  public:
    Tensor() = default;  // undefined tensor: defined() == false

    // ---- factories
    static Tensor empty(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
    static Tensor zeros(const Shape& shape, DType dtype = DType::Float32, Device device = Device::cpu());
    static Tensor full(const Shape& shape, double value, DType dtype = DType::Float32, Device device = Device::cpu());
    static Tensor arange(int64_t n, DType dtype = DType::Float32, Device device = Device::cpu());
    // Normal(mean, std) and Uniform[low, high) from the counter-based generator: the values are
    // a function of (seed, counter) only, identical on CPU and CUDA.
    static Tensor randn(const Shape& shape, Generator& gen, double mean = 0.0, double std = 1.0,
                        DType dtype = DType::Float32, Device device = Device::cpu());
    static Tensor uniform(const Shape& shape, Generator& gen, double low = 0.0, double high = 1.0,
                          DType dtype = DType::Float32, Device device = Device::cpu());
    // Copies host values in; values.size() must equal the shape's element count.
    template <typename T>
    static Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device = Device::cpu());

    // ---- metadata
    bool defined() const { return storage_ != nullptr; }
    const Shape& shape() const { return shape_; }
    int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
    int64_t size(int64_t d) const;  // negative d counts from the end
    int64_t numel() const { return shape_numel(shape_); }
    DType dtype() const { return dtype_; }
    Device device() const;
    size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
    std::string describe() const;  // "float32(4, 7) on cuda:0"

    // ---- raw data (typed access checks the dtype)
    void* raw_data() const;
    template <typename T>
    T* data() const;

    // ---- views (share storage, no copy)
    Tensor reshape(const Shape& shape) const;                 // one dim may be -1
    Tensor slice(int64_t start, int64_t end) const;           // rows [start, end) of dim 0
    bool shares_storage_with(const Tensor& other) const { return storage_ && storage_ == other.storage_; }

    // ---- identity, for autograd: copies of a handle share an id; every new tensor or view
    // (factories, reshape, slice, copies) gets a fresh one.
    uint64_t id() const { return id_; }
    // The autograd slot (a parameter's accumulated gradient), shared by copies of the handle
    // and not inherited by views. Null for ordinary tensors.
    const std::shared_ptr<AutogradMeta>& autograd_meta() const { return autograd_meta_; }
    void set_autograd_meta(std::shared_ptr<AutogradMeta> meta) { autograd_meta_ = std::move(meta); }

    // ---- copies
    Tensor to(Device device) const;  // a copy on `device` (a copy even when already there)
    Tensor to(DType dtype) const;    // a converted copy (CPU only: float32 <-> float64 <-> int32)
    Tensor clone() const;
    void copy_from(const Tensor& source);  // same shape and dtype; any devices
    template <typename T>
    std::vector<T> to_vector() const;  // copies to host; T must match dtype
    double item() const;               // the value of a one-element tensor
    void fill_(double value);

  private:
    static uint64_t next_id();
    Tensor derived_view() const;  // a copy of this handle with a fresh id and no autograd slot

    std::shared_ptr<Storage> storage_;
    std::shared_ptr<AutogradMeta> autograd_meta_;
    uint64_t id_ = 0;
    size_t offset_bytes_ = 0;
    Shape shape_;
    DType dtype_ = DType::Float32;
};

std::ostream& operator<<(std::ostream& out, const Tensor& tensor);

}  // namespace mp
