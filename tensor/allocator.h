// Memory allocators with the counters the pipeline's memory report reads.
// CPU: aligned host memory, freed blocks reused by exact size. CUDA: a caching allocator that keeps freed blocks in
// per-size-class free lists, so a training loop's steady state never calls cudaMalloc or
// cudaFree (which would synchronise the device). Blocks are reused in stream order on the
// device's single compute stream, so reuse needs no synchronisation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include "tensor/device.h"

// 1 when this translation unit is compiled with AddressSanitizer (GCC's macro, or clang's feature).
#if defined(__SANITIZE_ADDRESS__)
#define MP_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MP_ADDRESS_SANITIZER 1
#endif
#endif
#ifndef MP_ADDRESS_SANITIZER
#define MP_ADDRESS_SANITIZER 0
#endif
// 1 in a DEBUG=1 build (the Makefile defines it), else 0.
#ifndef MP_DEBUG
#define MP_DEBUG 0
#endif

namespace mp {

struct MemoryStats {
    size_t current_bytes = 0;    // bytes held by live tensors (size-class rounded)
    size_t peak_bytes = 0;       // maximum of current_bytes since the last reset_peak()
    size_t reserved_bytes = 0;   // bytes obtained from the system: live + cached
    size_t cached_bytes = 0;     // bytes in the free lists, ready for reuse
    uint64_t system_allocs = 0;  // calls to malloc / cudaMalloc
    uint64_t cache_hits = 0;     // allocations served from a free list
};

class Allocator {
  public:
    virtual ~Allocator() = default;
    virtual void* allocate(size_t bytes) = 0;
    virtual void deallocate(void* ptr, size_t bytes) = 0;
    virtual MemoryStats stats() const = 0;
    virtual void reset_peak() = 0;
    // Returns cached blocks to the system (CUDA); a no-op where nothing is cached.
    virtual void empty_cache() {}
};

// Host memory, 64-byte aligned (cache lines, and AVX-512 loads in OpenBLAS). Freed blocks are
// kept (up to kCpuMaxCachedBytes) and reused for the same size, so a training loop's steady state
// asks the system for nothing; current_bytes and peak_bytes count the bytes tensors asked for.
// Out of memory empties the cache and retries once, then throws RuntimeError with the numbers.
// Built with DEBUG=1 (MP_DEBUG) a reused block is handed out filled with 0xFF bytes (NaN as float
// or double), so a kernel that reads an output before writing it shows; under AddressSanitizer
// nothing is cached (MP_ADDRESS_SANITIZER), so that a use after free is still reported.
Allocator& cpu_allocator();
constexpr size_t kCpuMaxCachedBytes = size_t(1) << 30;
// The caching allocator of GPU `index`; throws in a CPU-only build or for a bad index.
Allocator& cuda_allocator(int index);
// The allocator for a device.
Allocator& allocator_for(Device device);

// Size classes of the caching allocator: 512-byte granules up to 1 MiB, then four classes
// per power of two (at most 25% rounding waste). Exposed for tests.
size_t cuda_size_class(size_t bytes);

// A caching allocator over any pair of raw allocate/free functions. The CUDA allocator is one
// of these over cudaMalloc/cudaFree; tests instantiate it over malloc/free to check the
// caching logic on machines with no GPU.
class CachingAllocator : public Allocator {
  public:
    using RawAlloc = std::function<void*(size_t bytes)>;  // returns nullptr when out of memory
    using RawFree = std::function<void(void* ptr)>;
    CachingAllocator(RawAlloc raw_alloc, RawFree raw_free, const char* name);
    ~CachingAllocator() override;

    void* allocate(size_t bytes) override;
    void deallocate(void* ptr, size_t bytes) override;
    MemoryStats stats() const override;
    void reset_peak() override;
    void empty_cache() override;

  private:
    RawAlloc raw_alloc_;
    RawFree raw_free_;
    const char* name_;
    mutable std::mutex mutex_;
    std::map<size_t, std::vector<void*>> free_lists_;  // size class -> cached blocks
    MemoryStats stats_;
};

}  // namespace mp
