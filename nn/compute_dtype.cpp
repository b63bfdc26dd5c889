// The compute dtype and the compute-copy cache: thread-local, so each rank's (and each test
// thread's) layers follow only their own scopes.
#include "nn/compute_dtype.h"

#include "autograd/tape.h"

namespace mp::nn {

namespace {
thread_local std::optional<DType> g_compute_dtype;
thread_local ComputeCopyCache* g_compute_copy_cache = nullptr;
}  // namespace

ComputeDTypeScope::ComputeDTypeScope(std::optional<DType> dtype) : previous_(g_compute_dtype) {
    g_compute_dtype = dtype;
}
ComputeDTypeScope::~ComputeDTypeScope() { g_compute_dtype = previous_; }

std::optional<DType> compute_dtype() { return g_compute_dtype; }

Tensor for_compute(const Tensor& parameter) {
    if (!g_compute_dtype || !parameter.defined() || parameter.dtype() == *g_compute_dtype) return parameter;
    if (g_compute_copy_cache == nullptr) return autograd::compute_copy(parameter, *g_compute_dtype);
    Tensor& copy = g_compute_copy_cache->copies_[parameter.id()];
    if (!copy.defined() || copy.dtype() != *g_compute_dtype) copy = autograd::compute_copy(parameter, *g_compute_dtype);
    return copy;
}

ComputeCopyCache::ComputeCopyCache() : previous_(g_compute_copy_cache) { g_compute_copy_cache = this; }
ComputeCopyCache::~ComputeCopyCache() { g_compute_copy_cache = previous_; }

}  // namespace mp::nn
