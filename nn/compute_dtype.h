// Mixed precision for the layers: the compute dtype a thread's layers use (ComputeDTypeScope), a
// parameter as a layer computes with it (for_compute: its bf16 compute copy, gradients landing in the
// float32 master), and the per-step cache that makes each copy once (ComputeCopyCache).
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>

#include "tensor/tensor.h"

namespace mp::nn {

// Mixed precision: while a ComputeDTypeScope with a dtype is alive on this thread, every layer
// with parameters computes with compute copies of them in that dtype (autograd::compute_copy:
// their gradients land in the float32 masters), so activations, and the transfers between
// pipeline stages, are in that dtype. Without one, layers use their parameters as they are.
class ComputeDTypeScope {
  public:
    explicit ComputeDTypeScope(std::optional<DType> dtype);
    ~ComputeDTypeScope();
    ComputeDTypeScope(const ComputeDTypeScope&) = delete;
    ComputeDTypeScope& operator=(const ComputeDTypeScope&) = delete;

  private:
    std::optional<DType> previous_;
};
std::optional<DType> compute_dtype();
// `parameter` as a layer computes with it: its compute copy under a ComputeDTypeScope, else itself
// (an undefined tensor, such as a missing bias, stays undefined).
Tensor for_compute(const Tensor& parameter);

// While alive on this thread, for_compute makes each parameter's compute copy once and hands the
// same copy to every later use — every micro-batch and re-materialized forward of a training step
// converts each weight once, not once per use. A pipeline step holds one until its optimizer step
// (after which the copies would be stale). Nests: an inner cache hides the outer one.
class ComputeCopyCache {
  public:
    ComputeCopyCache();
    ~ComputeCopyCache();
    ComputeCopyCache(const ComputeCopyCache&) = delete;
    ComputeCopyCache& operator=(const ComputeCopyCache&) = delete;
    // Drops the copies (their memory goes once no tape holds them); the cache stays active.
    void clear() { copies_.clear(); }
    size_t size() const { return copies_.size(); }

  private:
    friend Tensor for_compute(const Tensor& parameter);
    std::unordered_map<uint64_t, Tensor> copies_;  // by the master's identity
    ComputeCopyCache* previous_;
};

}  // namespace mp::nn
