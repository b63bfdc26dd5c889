// Multi-tensor launches (the idea of PyTorch's multi_tensor_apply): one kernel over a list of
// tensors — an optimizer step or a gradient norm over every parameter — instead of one per tensor.
// The list travels in the kernel's parameter space (__grid_constant__, up to 32 KB with CUDA 12.1+
// on sm_70+), so nothing is copied to the device first and the host never waits. Each block owns
// one kChunk-element chunk of one tensor; which one is found by binary search over the blocks'
// starting indices. The grid depends only on the tensors' sizes (deterministic).
#pragma once

#include <cstdint>

#include "kernels/cuda/check.cuh"

namespace mp::kernels::cuda::multi_tensor {

constexpr int kMaxTensors = 192;       // per launch; longer lists take several launches
constexpr int64_t kChunk = 64 * 1024;  // elements per block, a multiple of 4 (float4 chunks stay aligned)

// Lists buffers per tensor (e.g. AdamW: param, grad, exp_avg, exp_avg_sq).
template <int Lists>
struct Table {
    float* pointers[Lists][kMaxTensors];
    int64_t sizes[kMaxTensors];
    int block_start[kMaxTensors + 1];  // tensor i owns blocks [block_start[i], block_start[i + 1])
    bool aligned[kMaxTensors];         // every pointer of tensor i is 16-byte aligned: float4 loads
    int count;
};

// An AdamW table (4 lists) is 8.6 KB of kernel parameters: CUDA 12.1+ allows up to 32764 bytes.
static_assert(sizeof(Table<4>) + 256 <= 32764, "a multi-tensor table must fit the kernel parameter space");
#if defined(CUDART_VERSION) && CUDART_VERSION < 12010
#error "kernels/cuda/multi_tensor.cuh needs CUDA 12.1 or newer (kernel parameters over 4 KB)"
#endif

// The tensor that `block` works on (count >= 1; block < block_start[count]).
template <int Lists>
__device__ inline int tensor_of_block(const Table<Lists>& table, int block) {
    int low = 0, high = table.count - 1;
    while (low < high) {
        const int mid = (low + high + 1) / 2;
        if (table.block_start[mid] <= block) low = mid;
        else high = mid - 1;
    }
    return low;
}

// The chunk a block owns: tensor t, elements [begin, end).
struct Chunk {
    int t;
    int64_t begin, end;
};

template <int Lists>
__device__ inline Chunk chunk_of_block(const Table<Lists>& table, int block) {
    const int t = tensor_of_block(table, block);
    const int64_t begin = (block - table.block_start[t]) * kChunk;
    const int64_t end = begin + kChunk < table.sizes[t] ? begin + kChunk : table.sizes[t];
    return {t, begin, end};
}

inline bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

inline int chunks_of(int64_t n) { return static_cast<int>((n + kChunk - 1) / kChunk); }

// Builds tables from `count` tensors (pointers(i, list), sizes[i]; empty tensors skipped) and calls
// launch(table, blocks, first_block) once per table, first_block counting the blocks of the
// earlier tables (where a reduction's partials continue).
template <int Lists, typename Pointers, typename Launch>
void for_each_table(int64_t count, const int64_t* sizes, Pointers pointers, Launch launch) {
    Table<Lists> table{};
    int blocks = 0, first_block = 0;
    auto flush = [&] {
        if (table.count == 0) return;
        table.block_start[table.count] = blocks;
        launch(table, blocks, first_block);
        first_block += blocks;
        table = Table<Lists>{};
        blocks = 0;
    };
    for (int64_t i = 0; i < count; ++i) {
        if (sizes[i] == 0) continue;
        if (table.count == kMaxTensors) flush();
        const int t = table.count++;
        bool aligned = true;
        for (int list = 0; list < Lists; ++list) {
            table.pointers[list][t] = pointers(i, list);
            aligned = aligned && aligned16(table.pointers[list][t]);
        }
        table.sizes[t] = sizes[i];
        table.aligned[t] = aligned;
        table.block_start[t] = blocks;
        blocks += chunks_of(sizes[i]);
    }
    flush();
}

}  // namespace mp::kernels::cuda::multi_tensor
