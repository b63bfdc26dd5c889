// Device queries, compute streams and the CUDA caching allocators. Compiled by g++ in every
// build; the CUDA parts are behind MP_CUDA so a CPU-only build needs no toolkit.
#include "tensor/device_context.h"

#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "base/error.h"
#include "tensor/allocator.h"
#include "tensor/device_checks.h"

#if MP_OPENBLAS
#include <cblas.h>
#endif

#if MP_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#endif

namespace mp {

namespace {
std::atomic<MatmulPrecision> g_matmul_precision{MatmulPrecision::Exact};
std::atomic<uint64_t> g_host_waits{0};

[[noreturn]] void throw_no_cuda(const char* what) {
    throw RuntimeError(str(what, ": this build of minipipe has no CUDA backend (built with CUDA=0 or without nvcc)"));
}
}  // namespace

void set_cpu_threads(int threads) {
    MP_REQUIRE(threads >= 1, "set_cpu_threads: threads must be >= 1, got ", threads);
#if MP_OPENBLAS
    // One pool: kernels::cpu::gemm spreads products over OpenMP's threads and calls OpenBLAS in each,
    // single-threaded. First: an OpenMP build of OpenBLAS sets OpenMP's thread count here too (to 1),
    // and the next line must have the last word. (Why OpenBLAS then stays on the calling thread:
    // kernels/cpu/gemm.cpp, openblas_configured.)
    openblas_set_num_threads(1);
#endif
    omp_set_num_threads(threads);
}

int cpu_threads() { return omp_get_max_threads(); }

size_t device_memory_bytes(Device device) {
    if (device.is_cpu()) {
        const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
        MP_REQUIRE(pages > 0 && page_size > 0, "device_memory_bytes: the host's memory size is unknown");
        return static_cast<size_t>(pages) * static_cast<size_t>(page_size);
    }
#if MP_CUDA
    int previous = 0;
    CUDA_CHECK(cudaGetDevice(&previous));
    CUDA_CHECK(cudaSetDevice(device.index));
    size_t free_bytes = 0, total_bytes = 0;
    cudaError_t status = cudaMemGetInfo(&free_bytes, &total_bytes);
    CUDA_CHECK(cudaSetDevice(previous));
    CUDA_CHECK(status);
    return total_bytes;
#else
    throw RuntimeError("device_memory_bytes: a CUDA device in a build without CUDA");
#endif
}

void set_matmul_precision(MatmulPrecision precision) { g_matmul_precision = precision; }
MatmulPrecision matmul_precision() { return g_matmul_precision; }

bool cuda_compiled() { return MP_CUDA != 0; }

uint64_t host_wait_count() { return g_host_waits.load(); }
void count_host_wait() { ++g_host_waits; }

#if MP_CUDA

int cuda_device_count() {
    static const int count = [] {
        int n = 0;
        // No driver or no device is not an error here: it means "no GPU", and GPU tests skip.
        if (cudaGetDeviceCount(&n) != cudaSuccess) {
            cudaGetLastError();  // clear the sticky error
            return 0;
        }
        return n;
    }();
    return count;
}

namespace {
void check_index(int index, const char* what) {
    int count = cuda_device_count();
    MP_REQUIRE(index >= 0 && index < count, what, ": cuda:", index, " requested but ", count, " GPU(s) are visible");
}

struct DeviceState {
    std::once_flag stream_once;
    cudaStream_t stream = nullptr;
    std::unique_ptr<CachingAllocator> allocator;
    std::once_flag allocator_once;
};

DeviceState& state(int index) {
    static std::vector<DeviceState>* states = new std::vector<DeviceState>(cuda_device_count());
    return (*states)[index];
}
}  // namespace

cudaStream_t compute_stream(int index) {
    check_index(index, "compute_stream");
    DeviceState& s = state(index);
    std::call_once(s.stream_once, [&] {
        int previous = 0;
        CUDA_CHECK(cudaGetDevice(&previous));
        CUDA_CHECK(cudaSetDevice(index));
        CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
        CUDA_CHECK(cudaSetDevice(previous));
    });
    return s.stream;
}

void set_current_device(int index) {
    check_index(index, "set_current_device");
    CUDA_CHECK(cudaSetDevice(index));
}

void synchronize(Device device) {
    if (device.is_cpu()) return;
    count_host_wait();
    CUDA_CHECK(cudaStreamSynchronize(compute_stream(device.index)));
    raise_device_errors(device);  // the queued input checks are free to read now
}

Allocator& cuda_allocator(int index) {
    check_index(index, "cuda_allocator");
    DeviceState& s = state(index);
    std::call_once(s.allocator_once, [&] {
        auto raw_alloc = [index](size_t bytes) -> void* {
            int previous = 0;
            CUDA_CHECK(cudaGetDevice(&previous));
            CUDA_CHECK(cudaSetDevice(index));
            void* ptr = nullptr;
            cudaError_t err = cudaMalloc(&ptr, bytes);
            CUDA_CHECK(cudaSetDevice(previous));
            if (err == cudaErrorMemoryAllocation) {
                cudaGetLastError();
                return nullptr;
            }
            CUDA_CHECK(err);
            return ptr;
        };
        // Blocks are freed only by empty_cache() or on out-of-memory; wait for queued work first.
        auto raw_free = [index](void* ptr) {
            CUDA_CHECK(cudaSetDevice(index));
            CUDA_CHECK(cudaDeviceSynchronize());
            CUDA_CHECK(cudaFree(ptr));
        };
        s.allocator = std::make_unique<CachingAllocator>(raw_alloc, raw_free, "cuda_allocator");
    });
    return *s.allocator;
}

#else  // CPU-only build

int cuda_device_count() { return 0; }
cudaStream_t compute_stream(int) { throw_no_cuda("compute_stream"); }
void set_current_device(int) { throw_no_cuda("set_current_device"); }
void synchronize(Device device) {
    if (device.is_cuda()) throw_no_cuda("synchronize");
}
Allocator& cuda_allocator(int) { throw_no_cuda("cuda_allocator"); }

#endif

}  // namespace mp
