// Embedding lookup: forward gathers weight rows by id, backward scatter-adds the output
// gradient's rows into dweight by id — deterministically on CUDA (sort by id, then sum each run
// of equal ids in position order). Ids must lie in [0, num_embeddings): the ops check them
// (kernels/index_check.h); the CUDA kernels never read or write outside the tables even when an
// unchecked id is out of range.
// defines: embedding_forward, embedding_backward (cpu:: for float, double, bfloat16; cuda:: for
//          float and bfloat16, the backward written or accumulated into a float32 or bfloat16 gradient),
//          cpu::embedding_backward_into, cuda::embedding_backward_workspace_bytes
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/common/bfloat16.h"
#include "kernels/common/stream.h"

namespace mp::kernels::cpu {
// ids: n; weight: (num_embeddings, cols); out: (n, cols) with out[p, :] = weight[ids[p], :].
template <typename T>
void embedding_forward(const int32_t* ids, const T* weight, T* out, int64_t n, int64_t cols);
// dout: (n, cols); dweight: (num_embeddings, cols), overwritten with dweight[v, :] = the sum of
// dout[p, :] over positions p with ids[p] == v, added in increasing p (0 for ids that never occur).
template <typename T>
void embedding_backward(const int32_t* ids, const T* dout, T* dweight, int64_t n, int64_t num_embeddings,
                        int64_t cols);
// The same sums (in compute_t<T>, increasing p) added to dweight, of T or float32 for bfloat16
// dout: each occurring row gets G(old + sum) once, old = 0 unless `accumulate`; rows of ids that
// never occur keep their value (0 when not accumulating). The CUDA kernel's order and precision.
template <typename T, typename G>
void embedding_backward_into(const int32_t* ids, const T* dout, G* dweight, int64_t n, int64_t num_embeddings,
                             int64_t cols, bool accumulate);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
// An id outside [0, num_embeddings) gives a row of NaN (visible, never an out-of-bounds read).
void embedding_forward(const int32_t* ids, const float* weight, float* out, int64_t n, int64_t num_embeddings,
                       int64_t cols, cudaStream_t stream);
void embedding_forward(const int32_t* ids, const bfloat16* weight, bfloat16* out, int64_t n, int64_t num_embeddings,
                       int64_t cols, cudaStream_t stream);
// Bytes of scratch memory embedding_backward needs for n ids over num_embeddings rows: the
// sorted ids, the positions before and after sorting, and CUB's radix-sort temporary storage.
size_t embedding_backward_workspace_bytes(int64_t n, int64_t num_embeddings);
// dweight (+)= the scatter-add: zeroed first unless `accumulate`, then each id's run of dout rows
// summed in position order (float32) and added to its row once. T/G: float/float (the CPU
// reference's sums and order: bitwise equal), bfloat16/float (mixed precision) and
// bfloat16/bfloat16. Out-of-range ids are skipped (the op's check reports them).
template <typename T, typename G>
void embedding_backward(const int32_t* ids, const T* dout, G* dweight, int64_t n, int64_t num_embeddings, int64_t cols,
                        bool accumulate, void* workspace, size_t workspace_bytes, cudaStream_t stream);
}  // namespace mp::kernels::cuda
