// CPU allocator and the size-class caching allocator (the CUDA instance lives in
// cuda_allocator.cpp so this file builds without the CUDA toolkit).
#include "tensor/allocator.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "base/error.h"

namespace mp {

namespace {

// Host memory with a cache of freed blocks by exact (64-byte rounded) size: a training step frees
// and allocates the same tensors every step, and memory fresh from the system costs a page fault
// per 4 KiB on first touch (glibc returns large blocks to the system on free) — 4% of a small
// model's CPU step. Counters stay exact: current_bytes counts the bytes asked for, as before.
// Freed blocks beyond kCpuMaxCachedBytes go back to the system; empty_cache() returns them all.
// The system is called outside the mutex (a large aligned_alloc or free may take a while).
class CpuAllocator : public Allocator {
  public:
    // No cache under AddressSanitizer: a freed block must go back to it for a later use to be caught.
    static constexpr bool kCaches = !MP_ADDRESS_SANITIZER;
    // DEBUG=1: reused blocks filled with 0xFF bytes (a NaN in every float and double).
    static constexpr bool kPoisonReused = MP_DEBUG != 0;

    void* allocate(size_t bytes) override {
        if (bytes == 0) return nullptr;
        MP_REQUIRE(bytes <= SIZE_MAX - 63, "cpu_allocator: ", bytes, " bytes requested");
        const size_t rounded = (bytes + 63) / 64 * 64;
        if (void* reused = take_cached(bytes, rounded)) {
            if (kPoisonReused) std::memset(reused, 0xFF, rounded);
            return reused;
        }
        void* ptr = std::aligned_alloc(64, rounded);
        size_t released = 0;
        if (ptr == nullptr) {  // out of memory: give every cached block back and try once more
            released = empty_cache_and_count();
            ptr = std::aligned_alloc(64, rounded);
        }
        std::lock_guard<std::mutex> lock(mutex_);
        if (ptr == nullptr)
            throw RuntimeError(str("cpu_allocator: out of memory allocating ", bytes, " bytes (", rounded,
                                   " rounded); ", stats_.current_bytes, " bytes in use, peak ", stats_.peak_bytes,
                                   ", ", released, " cached bytes released before the retry"));
        stats_.reserved_bytes += rounded;
        stats_.system_allocs += 1;
        count_in_use(bytes);
        return ptr;
    }
    // Never throws (it runs in destructors): a block the free list has no room for goes back to the system.
    void deallocate(void* ptr, size_t bytes) override {
        if (ptr == nullptr) return;
        const size_t rounded = (bytes + 63) / 64 * 64;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stats_.current_bytes -= bytes;
            if (kCaches && stats_.cached_bytes + rounded <= kCpuMaxCachedBytes) {
                try {
                    free_lists_[rounded].push_back(ptr);
                    stats_.cached_bytes += rounded;
                    return;
                } catch (const std::bad_alloc&) {  // no memory for the list's entry: free the block below
                }
            }
            stats_.reserved_bytes -= rounded;
        }
        std::free(ptr);
    }
    MemoryStats stats() const override {
        std::lock_guard<std::mutex> lock(mutex_);
        return stats_;
    }
    void reset_peak() override {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.peak_bytes = stats_.current_bytes;
    }
    void empty_cache() override { empty_cache_and_count(); }

  private:
    // A cached block of `rounded` bytes, counted as in use, or nullptr.
    void* take_cached(size_t bytes, size_t rounded) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = free_lists_.find(rounded);
        if (it == free_lists_.end() || it->second.empty()) return nullptr;
        void* ptr = it->second.back();
        it->second.pop_back();
        stats_.cached_bytes -= rounded;
        stats_.cache_hits += 1;
        count_in_use(bytes);
        return ptr;
    }
    void count_in_use(size_t bytes) {  // under the mutex
        stats_.current_bytes += bytes;
        stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
    }
    // Returns every cached block to the system (outside the mutex); the bytes released.
    size_t empty_cache_and_count() {
        std::map<size_t, std::vector<void*>> blocks;
        size_t released = 0;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            blocks.swap(free_lists_);
            released = stats_.cached_bytes;
            stats_.reserved_bytes -= released;
            stats_.cached_bytes = 0;
        }
        for (auto& [size, list] : blocks)
            for (void* block : list) std::free(block);
        return released;
    }

    mutable std::mutex mutex_;
    std::map<size_t, std::vector<void*>> free_lists_;  // rounded size -> cached blocks
    MemoryStats stats_;
};

}  // namespace

Allocator& cpu_allocator() {
    static CpuAllocator* allocator = new CpuAllocator();  // never destroyed: tensors may outlive statics
    return *allocator;
}

Allocator& allocator_for(Device device) {
    return device.is_cpu() ? cpu_allocator() : cuda_allocator(device.index);
}

size_t cuda_size_class(size_t bytes) {
    constexpr size_t kGranule = 512;
    constexpr size_t kSmallLimit = size_t(1) << 20;
    if (bytes == 0) return 0;
    if (bytes <= kSmallLimit) return (bytes + kGranule - 1) / kGranule * kGranule;
    // Four classes per power of two: round up to a multiple of (highest power of two) / 4.
    size_t power = size_t(1) << (63 - __builtin_clzll(static_cast<unsigned long long>(bytes)));
    size_t step = power / 4;
    return (bytes + step - 1) / step * step;
}

CachingAllocator::CachingAllocator(RawAlloc raw_alloc, RawFree raw_free, const char* name)
    : raw_alloc_(raw_alloc), raw_free_(raw_free), name_(name) {}

CachingAllocator::~CachingAllocator() { empty_cache(); }

void* CachingAllocator::allocate(size_t bytes) {
    if (bytes == 0) return nullptr;
    size_t size_class = cuda_size_class(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    void* ptr = nullptr;
    auto it = free_lists_.find(size_class);
    if (it != free_lists_.end() && !it->second.empty()) {
        ptr = it->second.back();
        it->second.pop_back();
        stats_.cached_bytes -= size_class;
        stats_.cache_hits += 1;
    } else {
        ptr = raw_alloc_(size_class);
        if (ptr == nullptr) {
            // Out of memory: give every cached block back and try once more.
            for (auto& [cls, blocks] : free_lists_)
                for (void* block : blocks) raw_free_(block);
            stats_.reserved_bytes -= stats_.cached_bytes;
            stats_.cached_bytes = 0;
            free_lists_.clear();
            ptr = raw_alloc_(size_class);
        }
        if (ptr == nullptr)
            throw RuntimeError(str(name_, ": out of memory allocating ", bytes, " bytes (size class ", size_class,
                                   "); ", stats_.current_bytes, " bytes in use, peak ", stats_.peak_bytes));
        stats_.reserved_bytes += size_class;
        stats_.system_allocs += 1;
    }
    stats_.current_bytes += size_class;
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.current_bytes);
    return ptr;
}

void CachingAllocator::deallocate(void* ptr, size_t bytes) {
    if (ptr == nullptr) return;
    size_t size_class = cuda_size_class(bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.current_bytes -= size_class;
    try {  // deallocate runs in destructors: it must not throw
        free_lists_[size_class].push_back(ptr);
        stats_.cached_bytes += size_class;
        return;
    } catch (const std::bad_alloc&) {  // no memory for the list's entry: the block goes back to the system
    }
    stats_.reserved_bytes -= size_class;
    raw_free_(ptr);
}

MemoryStats CachingAllocator::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
}

void CachingAllocator::reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_bytes = stats_.current_bytes;
}

void CachingAllocator::empty_cache() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size_class, blocks] : free_lists_)
        for (void* block : blocks) raw_free_(block);
    stats_.reserved_bytes -= stats_.cached_bytes;
    stats_.cached_bytes = 0;
    free_lists_.clear();
}

}  // namespace mp
