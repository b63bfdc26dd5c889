// CUDA embedding lookup (float32 and bfloat16): the forward gather and a deterministic backward
// scatter-add, written or accumulated in place into a gradient of the master's dtype (bfloat16
// dout summed in float32 into a float32 master: never rounded to bfloat16 on the way).
//
// Floor (H100, ~3 TB/s): the forward reads a weight row and writes an output row per id, 8 B per
// output element (GPT-2: 8192 ids x 768 = 50 MB, ~17 us). The backward reads dout once (4 B per
// element, 25 MB) and writes all of dweight, since ids that never occur get 0 (50257 x 768 =
// 154 MB, ~52 us): the zeroing dominates, the sort of 8192 keys is a few microseconds. bfloat16
// halves the forward (4 B per output element, 25 MB, ~8 us) and, into a bfloat16 dweight, the
// backward (13 + 77 MB, ~30 us). Accumulating bfloat16 dout into a float32 master gradient zeroes
// nothing: it reads dout (13 MB) and reads and writes only the rows whose ids occur (random ids:
// ~7.6k of 50257 rows x 768 x 8 B = 46 MB), ~20 us.
//
// Design:
//  - forward: a grid-stride loop over output elements, float4 when cols % 4 == 0 and weight and
//    out are 16-byte aligned; consecutive threads copy consecutive columns of one weight row.
//  - backward: no float atomics, so every sum has one fixed order. cub::DeviceRadixSort::SortPairs
//    sorts (id, position) pairs; radix sort is stable, so the positions of one id come out
//    contiguous and increasing. Only the low bits that ids in [0, num_embeddings) can use are
//    sorted (16 for 50257: two 8-bit passes instead of four). Then one block per sorted index:
//    a block whose index starts a run of equal ids adds that run's dout rows in position order
//    (threads over columns, float4 when possible) and writes dweight[id]; the other blocks move
//    on at once. dweight is zeroed first. This is the CPU reference's order and precision, so
//    the results are bitwise equal. A very frequent id leaves one block a long run to walk
//    alone; at GPT-2 batch sizes that costs less than the zeroing.
//  - bad ids: the ops queue the range check (kernels/index_check.h) and report a bad id later, so
//    these kernels still run on one: the forward writes NaN for its row, the backward skips it —
//    though a bad id whose low key bits equal a valid id's sorts into that id's run and splits it,
//    so the gradient of that row is then wrong (the step is refused anyway, before any update).
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <cstdint>

#include <type_traits>

#include "kernels/common/bfloat16.h"
#include "kernels/cuda/check.cuh"
#include "kernels/embedding.h"

namespace mp::kernels::cuda {

namespace {

constexpr int kElementThreads = 256;
constexpr int kRunThreads = 128;
constexpr int64_t kMaxRunBlocks = 65535LL * 16;
constexpr size_t kWorkspaceAlignment = 256;

bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

size_t align_up(size_t bytes) { return (bytes + kWorkspaceAlignment - 1) / kWorkspaceAlignment * kWorkspaceAlignment; }

// Sort-key bits ids in [0, num_embeddings) can use: all higher bits are zero.
int sort_key_bits(int64_t num_embeddings) {
    int bits = 1;
    while (bits < 31 && (int64_t(1) << bits) < num_embeddings) ++bits;
    return bits;
}

// Byte offsets of the backward's scratch arrays inside one workspace, each 256-byte aligned.
struct WorkspaceLayout {
    size_t sorted_ids;
    size_t positions;
    size_t sorted_positions;
    size_t sort_storage;
    size_t sort_storage_bytes;
    size_t total;
};

WorkspaceLayout workspace_layout(int64_t n, int key_bits) {
    WorkspaceLayout layout;
    layout.sorted_ids = 0;
    layout.positions = layout.sorted_ids + align_up(static_cast<size_t>(n) * sizeof(int32_t));
    layout.sorted_positions = layout.positions + align_up(static_cast<size_t>(n) * sizeof(int64_t));
    layout.sort_storage = layout.sorted_positions + align_up(static_cast<size_t>(n) * sizeof(int64_t));
    // A null temp-storage pointer makes CUB report the bytes it needs instead of sorting.
    layout.sort_storage_bytes = 0;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, layout.sort_storage_bytes, static_cast<const int32_t*>(nullptr),
                                               static_cast<int32_t*>(nullptr), static_cast<const int64_t*>(nullptr),
                                               static_cast<int64_t*>(nullptr), n, 0, key_bits));
    layout.total = layout.sort_storage + align_up(layout.sort_storage_bytes);
    return layout;
}

__device__ __forceinline__ void accumulate(float& sum, float value) { sum += value; }
__device__ __forceinline__ void accumulate(float4& sum, float4 value) {
    sum.x += value.x;
    sum.y += value.y;
    sum.z += value.z;
    sum.w += value.w;
}

__device__ __forceinline__ void set_nan(float& value) { value = __int_as_float(0x7fc00000); }
__device__ __forceinline__ void set_nan(bfloat16& value) { value.bits = 0x7fc0; }
__device__ __forceinline__ void set_nan(float4& value) {
    const float nan = __int_as_float(0x7fc00000);
    value = make_float4(nan, nan, nan, nan);
}

// out[p, :] = weight[ids[p], :], with rows of vecs_per_row Vec (float or float4) each; NaN for an
// id outside [0, num_embeddings).
template <typename Vec>
__global__ void embedding_forward_kernel(const int32_t* __restrict__ ids, const Vec* __restrict__ weight,
                                         Vec* __restrict__ out, int64_t n, int64_t num_embeddings,
                                         int64_t vecs_per_row) {
    const int64_t total = n * vecs_per_row;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t position = i / vecs_per_row;
        const int64_t column = i - position * vecs_per_row;
        const int64_t id = ids[position];
        if (id >= 0 && id < num_embeddings) out[i] = weight[id * vecs_per_row + column];
        else set_nan(out[i]);
    }
}

__global__ void iota_kernel(int64_t* __restrict__ positions, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        positions[i] = i;
}

// Blocks stride over sorted indices; the block at the first index of a run of equal ids sums the
// run's dout rows in sorted (= increasing position) order and adds the sum to dweight[id] (zeroed
// first unless accumulating). The skip test reads the same two ids in every thread, so a block
// skips or works as a whole (no barriers here).
template <typename Vec>
__global__ void __launch_bounds__(kRunThreads)
    embedding_sum_runs_kernel(const int32_t* __restrict__ sorted_ids, const int64_t* __restrict__ sorted_positions,
                              const Vec* __restrict__ dout, Vec* __restrict__ dweight, int64_t n,
                              int64_t num_embeddings, int64_t vecs_per_row) {
    for (int64_t start = blockIdx.x; start < n; start += gridDim.x) {
        const int32_t id = sorted_ids[start];
        if (start > 0 && sorted_ids[start - 1] == id) continue;  // inside a run: its first index sums it
        if (id < 0 || id >= num_embeddings) continue;            // a bad id (reported by the op's check)
        for (int64_t column = threadIdx.x; column < vecs_per_row; column += blockDim.x) {
            Vec sum{};  // zero, like the CPU reference's sums
            for (int64_t j = start; j < n && sorted_ids[j] == id; ++j)
                accumulate(sum, dout[sorted_positions[j] * vecs_per_row + column]);
            Vec& out = dweight[static_cast<int64_t>(id) * vecs_per_row + column];
            Vec total = out;
            accumulate(total, sum);  // + the old value (0 after the zeroing): one rounding
            out = total;
        }
    }
}

// The same for bfloat16 dout: each run summed in float32, then added to dweight (float32, or
// bfloat16 rounded once).
template <typename G>
__global__ void __launch_bounds__(kRunThreads)
    embedding_sum_runs_bf16_kernel(const int32_t* __restrict__ sorted_ids, const int64_t* __restrict__ sorted_positions,
                                   const bfloat16* __restrict__ dout, G* __restrict__ dweight, int64_t n,
                                   int64_t num_embeddings, int64_t cols) {
    for (int64_t start = blockIdx.x; start < n; start += gridDim.x) {
        const int32_t id = sorted_ids[start];
        if (start > 0 && sorted_ids[start - 1] == id) continue;
        if (id < 0 || id >= num_embeddings) continue;
        for (int64_t column = threadIdx.x; column < cols; column += blockDim.x) {
            float sum = 0.0f;
            for (int64_t j = start; j < n && sorted_ids[j] == id; ++j)
                sum += static_cast<float>(dout[sorted_positions[j] * cols + column]);
            G& out = dweight[static_cast<int64_t>(id) * cols + column];
            out = G(static_cast<float>(out) + sum);
        }
    }
}

// Sorts (id, position) pairs into the workspace; returns the sorted arrays.
struct SortedIds {
    const int32_t* ids;
    const int64_t* positions;
};

SortedIds sort_ids(const int32_t* ids, int64_t n, int64_t num_embeddings, void* workspace, size_t workspace_bytes,
                   cudaStream_t stream) {
    const int key_bits = sort_key_bits(num_embeddings);
    const WorkspaceLayout layout = workspace_layout(n, key_bits);
    MP_REQUIRE(workspace_bytes >= layout.total, "embedding_backward: workspace has ", workspace_bytes,
               " bytes, needs ", layout.total, " for ", n, " ids (embedding_backward_workspace_bytes)");
    char* base = static_cast<char*>(workspace);
    int32_t* sorted_ids = reinterpret_cast<int32_t*>(base + layout.sorted_ids);
    int64_t* positions = reinterpret_cast<int64_t*>(base + layout.positions);
    int64_t* sorted_positions = reinterpret_cast<int64_t*>(base + layout.sorted_positions);
    iota_kernel<<<cuda_detail::grid_for(n, kElementThreads), kElementThreads, 0, stream>>>(positions, n);
    CUDA_CHECK_LAUNCH();
    size_t sort_storage_bytes = layout.sort_storage_bytes;
    CUDA_CHECK(cub::DeviceRadixSort::SortPairs(base + layout.sort_storage, sort_storage_bytes, ids, sorted_ids,
                                               positions, sorted_positions, n, 0, key_bits, stream));
    return {sorted_ids, sorted_positions};
}

}  // namespace

void embedding_forward(const int32_t* ids, const float* weight, float* out, int64_t n, int64_t num_embeddings,
                       int64_t cols, cudaStream_t stream) {
    if (n == 0 || cols == 0) return;
    if (cols % 4 == 0 && aligned16(weight) && aligned16(out)) {
        const int64_t vecs_per_row = cols / 4;
        embedding_forward_kernel<float4><<<cuda_detail::grid_for(n * vecs_per_row, kElementThreads), kElementThreads,
                                           0, stream>>>(ids, reinterpret_cast<const float4*>(weight),
                                                        reinterpret_cast<float4*>(out), n, num_embeddings,
                                                        vecs_per_row);
    } else {
        embedding_forward_kernel<float><<<cuda_detail::grid_for(n * cols, kElementThreads), kElementThreads, 0,
                                          stream>>>(ids, weight, out, n, num_embeddings, cols);
    }
    CUDA_CHECK_LAUNCH();
}

void embedding_forward(const int32_t* ids, const bfloat16* weight, bfloat16* out, int64_t n, int64_t num_embeddings,
                       int64_t cols, cudaStream_t stream) {
    if (n == 0 || cols == 0) return;
    embedding_forward_kernel<bfloat16><<<cuda_detail::grid_for(n * cols, kElementThreads), kElementThreads, 0,
                                         stream>>>(ids, weight, out, n, num_embeddings, cols);
    CUDA_CHECK_LAUNCH();
}

size_t embedding_backward_workspace_bytes(int64_t n, int64_t num_embeddings) {
    if (n == 0) return 0;  // nothing to sort
    return workspace_layout(n, sort_key_bits(num_embeddings)).total;
}

template <typename T, typename G>
void embedding_backward(const int32_t* ids, const T* dout, G* dweight, int64_t n, int64_t num_embeddings, int64_t cols,
                        bool accumulate, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
    if (num_embeddings == 0 || cols == 0) return;  // dweight is empty
    // Rows of ids that never occur stay zero (or keep their old gradient when accumulating).
    if (!accumulate)
        CUDA_CHECK(cudaMemsetAsync(dweight, 0, static_cast<size_t>(num_embeddings * cols) * sizeof(G), stream));
    if (n == 0) return;
    const SortedIds sorted = sort_ids(ids, n, num_embeddings, workspace, workspace_bytes, stream);
    const unsigned run_blocks = static_cast<unsigned>(std::min(n, kMaxRunBlocks));
    if constexpr (std::is_same_v<T, float>) {
        if (cols % 4 == 0 && aligned16(dout) && aligned16(dweight)) {
            embedding_sum_runs_kernel<float4><<<run_blocks, kRunThreads, 0, stream>>>(
                sorted.ids, sorted.positions, reinterpret_cast<const float4*>(dout),
                reinterpret_cast<float4*>(dweight), n, num_embeddings, cols / 4);
        } else {
            embedding_sum_runs_kernel<float><<<run_blocks, kRunThreads, 0, stream>>>(
                sorted.ids, sorted.positions, dout, dweight, n, num_embeddings, cols);
        }
    } else {
        embedding_sum_runs_bf16_kernel<G><<<run_blocks, kRunThreads, 0, stream>>>(sorted.ids, sorted.positions, dout,
                                                                                  dweight, n, num_embeddings, cols);
    }
    CUDA_CHECK_LAUNCH();
}

template void embedding_backward<float, float>(const int32_t*, const float*, float*, int64_t, int64_t, int64_t, bool,
                                               void*, size_t, cudaStream_t);
template void embedding_backward<bfloat16, float>(const int32_t*, const bfloat16*, float*, int64_t, int64_t, int64_t,
                                                  bool, void*, size_t, cudaStream_t);
template void embedding_backward<bfloat16, bfloat16>(const int32_t*, const bfloat16*, bfloat16*, int64_t, int64_t,
                                                     int64_t, bool, void*, size_t, cudaStream_t);

}  // namespace mp::kernels::cuda
