// Allocators: the CPU counters follow tensor lifetimes; the caching allocator reuses blocks by
// size class, never returns them to the system in the steady state, and tracks current and peak
// bytes. The caching logic is tested over malloc/free here and over cudaMalloc on a GPU.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "tensor/allocator.h"
#include "tests/support/test_util.h"

using namespace mp;

namespace {
int g_raw_allocs = 0;
int g_raw_frees = 0;
CachingAllocator make_counting_allocator() {
    return CachingAllocator([](size_t bytes) { ++g_raw_allocs; return std::malloc(bytes); },
                            [](void* ptr) { ++g_raw_frees; std::free(ptr); }, "test_allocator");
}
}  // namespace

TEST(CpuAllocator, CountersFollowTensorLifetimes) {
    MemoryStats before = cpu_allocator().stats();
    cpu_allocator().reset_peak();
    {
        Tensor a = Tensor::zeros({1000});  // 4000 bytes
        Tensor b = Tensor::zeros({250}, DType::Float64);  // 2000 bytes
        MemoryStats during = cpu_allocator().stats();
        EXPECT_EQ(during.current_bytes, before.current_bytes + 6000);
        Tensor view = a.slice(10, 20);  // a view allocates nothing
        EXPECT_EQ(cpu_allocator().stats().current_bytes, during.current_bytes);
    }
    MemoryStats after = cpu_allocator().stats();
    EXPECT_EQ(after.current_bytes, before.current_bytes);
    EXPECT_GE(after.peak_bytes, before.current_bytes + 6000);
}

// A freed CPU block is handed out again for the same size (no new system allocation: no fresh
// pages to fault in); other sizes get their own; empty_cache gives the cached ones back. In a
// DEBUG=1 build the reused block comes back filled with 0xFF bytes; under AddressSanitizer
// nothing is cached (a use after free must reach it).
TEST(CpuAllocator, ReusesFreedBlocksOfTheSameSize) {
    Allocator& cpu = cpu_allocator();
    cpu.empty_cache();  // whatever earlier tests left: this test's blocks are the only ones cached
    unsigned char* first = static_cast<unsigned char*>(cpu.allocate(100000));
    std::memset(first, 0x5A, 100000);
    cpu.deallocate(first, 100000);
    const MemoryStats before = cpu.stats();
    if (MP_ADDRESS_SANITIZER) {
        EXPECT_EQ(before.cached_bytes, 0u) << "no cache under AddressSanitizer";
        return;
    }
    EXPECT_EQ(before.cached_bytes, 100032u);
    unsigned char* again = static_cast<unsigned char*>(cpu.allocate(99999));  // the same 64-byte rounded size
    EXPECT_EQ(again, first);
    EXPECT_EQ(cpu.stats().system_allocs, before.system_allocs);
    EXPECT_EQ(cpu.stats().cache_hits, before.cache_hits + 1);
    EXPECT_EQ(cpu.stats().current_bytes, before.current_bytes + 99999);
    EXPECT_EQ(cpu.stats().cached_bytes, 0u);
    const unsigned char expected_byte = MP_DEBUG ? 0xFF : 0x5A;  // DEBUG: poisoned; else what was left there
    size_t differing = 0;
    for (size_t i = 0; i < 99999; ++i) differing += again[i] != expected_byte;
    EXPECT_EQ(differing, 0u) << "reused block's bytes (MP_DEBUG=" << MP_DEBUG << ")";
    void* other = cpu.allocate(200000);
    EXPECT_EQ(cpu.stats().system_allocs, before.system_allocs + 1);
    cpu.deallocate(again, 99999);
    cpu.deallocate(other, 200000);
    EXPECT_EQ(cpu.stats().current_bytes, before.current_bytes);
    const size_t reserved = cpu.stats().reserved_bytes, cached = cpu.stats().cached_bytes;
    EXPECT_EQ(cached, size_t(100032 + 200000));
    cpu.empty_cache();
    EXPECT_EQ(cpu.stats().cached_bytes, 0u);
    EXPECT_EQ(cpu.stats().reserved_bytes, reserved - cached);
}

// At most kCpuMaxCachedBytes stay cached: a freed block that would take the cache past it goes back
// to the system (reserved drops, cached does not move), one that fits is kept. The blocks are
// address space only: no page of them is touched.
TEST(CpuAllocator, CachesAtMostItsCapAndGivesTheRestBack) {
    Allocator& cpu = cpu_allocator();
    cpu.empty_cache();
    const MemoryStats start = cpu.stats();
    void* huge = cpu.allocate(kCpuMaxCachedBytes + 64);
    EXPECT_EQ(cpu.stats().reserved_bytes, start.reserved_bytes + kCpuMaxCachedBytes + 64);
    cpu.deallocate(huge, kCpuMaxCachedBytes + 64);
    EXPECT_EQ(cpu.stats().reserved_bytes, start.reserved_bytes);
    EXPECT_EQ(cpu.stats().cached_bytes, 0u);
    if (MP_ADDRESS_SANITIZER) return;  // nothing is cached there at all

    void* small = cpu.allocate(4096);
    cpu.deallocate(small, 4096);
    EXPECT_EQ(cpu.stats().cached_bytes, 4096u);
    const size_t room = kCpuMaxCachedBytes - 4096;
    void* too_big = cpu.allocate(room + 64);  // 4096 + room + 64 bytes would pass the cap by 64
    void* fits = cpu.allocate(room);          // exactly up to the cap
    const MemoryStats held = cpu.stats();
    cpu.deallocate(too_big, room + 64);
    EXPECT_EQ(cpu.stats().reserved_bytes, held.reserved_bytes - (room + 64));
    EXPECT_EQ(cpu.stats().cached_bytes, 4096u);
    cpu.deallocate(fits, room);
    EXPECT_EQ(cpu.stats().reserved_bytes, held.reserved_bytes - (room + 64));
    EXPECT_EQ(cpu.stats().cached_bytes, kCpuMaxCachedBytes);
    cpu.empty_cache();
    EXPECT_EQ(cpu.stats().cached_bytes, 0u);
    EXPECT_EQ(cpu.stats().reserved_bytes, start.reserved_bytes);
}

// A request the system cannot meet: the cache is given back first, then a RuntimeError names the
// request and the counters (as CachingAllocator's does), and the counters are as before.
TEST(CpuAllocator, OutOfMemoryReleasesTheCacheThenThrowsWithNumbers) {
    if (MP_ADDRESS_SANITIZER) GTEST_SKIP() << "AddressSanitizer reports a huge allocation instead of failing it";
    Allocator& cpu = cpu_allocator();
    cpu.empty_cache();
    cpu.deallocate(cpu.allocate(100000), 100000);
    ASSERT_EQ(cpu.stats().cached_bytes, 100032u);
    const MemoryStats before = cpu.stats();
    const size_t impossible = size_t(1) << 60;  // 1 EiB: more address space than x86-64 gives a process
    try {
        cpu.allocate(impossible);
        ADD_FAILURE() << "expected an out-of-memory error";
    } catch (const RuntimeError& e) {
        const std::string message = e.what();
        for (const std::string& part :
             {"cpu_allocator: out of memory allocating " + std::to_string(impossible) + " bytes",
              std::to_string(before.current_bytes) + " bytes in use", "peak " + std::to_string(before.peak_bytes),
              std::string("100032 cached bytes released before the retry")})
            EXPECT_NE(message.find(part), std::string::npos) << "missing '" << part << "' in: " << message;
    }
    EXPECT_EQ(cpu.stats().cached_bytes, 0u);
    EXPECT_EQ(cpu.stats().reserved_bytes, before.reserved_bytes - 100032);
    EXPECT_EQ(cpu.stats().current_bytes, before.current_bytes);
    EXPECT_EQ(cpu.stats().system_allocs, before.system_allocs);
}

TEST(CachingAllocator, SizeClassesRoundUpWithBoundedWaste) {
    EXPECT_EQ(cuda_size_class(0), 0u);
    EXPECT_EQ(cuda_size_class(1), 512u);
    EXPECT_EQ(cuda_size_class(512), 512u);
    EXPECT_EQ(cuda_size_class(513), 1024u);
    EXPECT_EQ(cuda_size_class(1 << 20), size_t(1) << 20);
    // Above 1 MiB: four classes per power of two, so waste is below 25%.
    EXPECT_EQ(cuda_size_class((1 << 20) + 1), (size_t(1) << 20) + (size_t(1) << 18));
    for (size_t bytes : {size_t(3000001), size_t(123456789), size_t(1) << 31}) {
        size_t cls = cuda_size_class(bytes);
        EXPECT_GE(cls, bytes);
        EXPECT_LT(static_cast<double>(cls - bytes), 0.25 * bytes);
    }
}

TEST(CachingAllocator, ReusesFreedBlocksWithoutSystemCalls) {
    g_raw_allocs = g_raw_frees = 0;
    CachingAllocator allocator = make_counting_allocator();
    void* first = allocator.allocate(1000);
    allocator.deallocate(first, 1000);
    // A same-class request (1000 and 1024 both round to 1024) reuses the block.
    void* second = allocator.allocate(1024);
    EXPECT_EQ(second, first);
    EXPECT_EQ(g_raw_allocs, 1);
    EXPECT_EQ(allocator.stats().cache_hits, 1u);
    // A steady-state loop of allocate/free performs no further system calls.
    allocator.deallocate(second, 1024);
    for (int step = 0; step < 100; ++step) {
        void* a = allocator.allocate(4096);
        void* b = allocator.allocate(700);
        allocator.deallocate(a, 4096);
        allocator.deallocate(b, 700);
    }
    EXPECT_EQ(g_raw_allocs, 2);  // the 1024 block served 700; one 4096 block was added
    EXPECT_EQ(g_raw_frees, 0);
}

TEST(CachingAllocator, CountersAndPeak) {
    CachingAllocator allocator = make_counting_allocator();
    void* a = allocator.allocate(3 << 20);  // 3 MiB is its own class
    void* b = allocator.allocate(100);      // 512-byte class
    MemoryStats s = allocator.stats();
    EXPECT_EQ(s.current_bytes, (size_t(3) << 20) + 512);
    EXPECT_EQ(s.peak_bytes, s.current_bytes);
    allocator.deallocate(a, 3 << 20);
    s = allocator.stats();
    EXPECT_EQ(s.current_bytes, 512u);
    EXPECT_EQ(s.peak_bytes, (size_t(3) << 20) + 512);
    EXPECT_EQ(s.cached_bytes, size_t(3) << 20);
    EXPECT_EQ(s.reserved_bytes, (size_t(3) << 20) + 512);
    allocator.reset_peak();
    EXPECT_EQ(allocator.stats().peak_bytes, 512u);
    allocator.deallocate(b, 100);
    EXPECT_EQ(allocator.stats().current_bytes, 0u);
    g_raw_frees = 0;
    allocator.empty_cache();
    EXPECT_EQ(g_raw_frees, 2);
    EXPECT_EQ(allocator.stats().reserved_bytes, 0u);
    EXPECT_EQ(allocator.stats().cached_bytes, 0u);
}

TEST(CachingAllocator, OutOfMemoryReleasesCacheThenThrowsWithNumbers) {
    // A raw allocator with a budget of 8 KiB: the cached 4 KiB block must be released to make
    // room for a 6 KiB request, and a request beyond the budget throws naming the sizes.
    static size_t in_use = 0;
    in_use = 0;
    CachingAllocator allocator(
        [](size_t bytes) -> void* {
            if (in_use + bytes > 8192) return nullptr;
            in_use += bytes;
            return std::malloc(bytes);
        },
        [](void* ptr) { std::free(ptr); in_use -= 4096; },  // only 4 KiB blocks are ever freed here
        "budget_allocator");
    void* a = allocator.allocate(4096);
    allocator.deallocate(a, 4096);       // cached, still counted against the budget
    void* b = allocator.allocate(6144);  // fits only after the cache is emptied
    EXPECT_NE(b, nullptr);
    EXPECT_EQ(allocator.stats().cached_bytes, 0u);
    try {
        allocator.allocate(8192);
        ADD_FAILURE() << "expected an out-of-memory error";
    } catch (const RuntimeError& e) {
        std::string message = e.what();
        EXPECT_NE(message.find("budget_allocator: out of memory allocating 8192 bytes"), std::string::npos) << message;
        EXPECT_NE(message.find("6144 bytes in use"), std::string::npos) << message;
    }
    allocator.deallocate(b, 6144);
}

TEST(CudaAllocator, SteadyStateNeedsNoCudaMalloc) {
    MP_REQUIRE_GPU();
    Allocator& allocator = cuda_allocator(0);
    MemoryStats before = allocator.stats();
    for (int step = 0; step < 3; ++step) {
        Tensor a = Tensor::zeros({257, 33}, DType::Float32, Device::cuda(0));
        Tensor b = Tensor::zeros({1 << 20}, DType::Float32, Device::cuda(0));
    }
    MemoryStats after_warmup = allocator.stats();
    EXPECT_EQ(after_warmup.current_bytes, before.current_bytes);
    for (int step = 0; step < 50; ++step) {
        Tensor a = Tensor::zeros({257, 33}, DType::Float32, Device::cuda(0));
        Tensor b = Tensor::zeros({1 << 20}, DType::Float32, Device::cuda(0));
    }
    MemoryStats after = allocator.stats();
    EXPECT_EQ(after.system_allocs, after_warmup.system_allocs);
    EXPECT_EQ(after.current_bytes, before.current_bytes);
    EXPECT_GE(after.peak_bytes, before.current_bytes + (size_t(4) << 20));
}
