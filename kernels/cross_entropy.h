// Cross-entropy fused with softmax over vocabulary-sized rows, with an ignore index: the forward
// writes each row's logsumexp and loss; the backward streams logits -> dlogits from that logsumexp.
// The mean over counted rows needs 1 / (rows whose target is not ignore_index): its own small
// kernel, so that the count never travels to the host.
// defines: cross_entropy_forward, cross_entropy_backward, cross_entropy_mean_weight,
//          cross_entropy_fused (one pass, the gradient in place, padded rows) (cpu:: for float,
//          double, and bfloat16 logits whose losses, logsumexp and dlosses are float32; cuda:: for float
//          and bfloat16 logits)
#pragma once

#include <cstdint>

#include "kernels/common/bfloat16.h"
#include "kernels/common/stream.h"

namespace mp::kernels::cpu {
// logits: rows x vocab; targets[r] in [0, vocab) or == ignore_index. Writes logsumexp[r] for every
// row and losses[r] = logsumexp[r] - logits[r][targets[r]], 0 where targets[r] == ignore_index.
// Checks the targets while computing: throws std::invalid_argument naming the first target outside
// [0, vocab) that is not ignore_index, its row and vocab.
template <typename T>
void cross_entropy_forward(const T* logits, const int32_t* targets, compute_t<T>* losses, compute_t<T>* logsumexp,
                           int64_t rows, int64_t vocab, int ignore_index);
// dlogits[r][j] = dlosses[r] * (exp(logits[r][j] - logsumexp[r]) - (j == targets[r])), all zero for
// ignored rows. Same target check as the forward.
template <typename T>
void cross_entropy_backward(const T* logits, const int32_t* targets, const compute_t<T>* logsumexp,
                            const compute_t<T>* dlosses, T* dlogits, int64_t rows, int64_t vocab, int ignore_index);
// out[0] = 1 / (the number of r with targets[r] != ignore_index), computed in double and rounded
// once to T; 0 when every row is ignored. The weight that turns the sum of losses into their mean.
template <typename T>
void cross_entropy_mean_weight(const int32_t* targets, int64_t rows, int ignore_index, T* out);
// Forward and backward in one pass per row, the gradient written where the logits were (as llm.c
// does): rows of `stride` elements of which the first `vocab` are the vocabulary (the rest —
// padding, e.g. 50257 -> 50304 — never reach the loss and get a zero gradient). losses[r] as the
// forward's; then, when write_gradient, logits[r][j] = dloss * (exp(logits[r][j] - lse_r) -
// (j == targets[r])) for j < vocab, with lse_r rounded to compute_t<T> as the forward stores it —
// bit for bit the forward + backward pair with dlosses[r] = dloss — and 0 for ignored rows and
// padding. Same target check as the forward.
template <typename T>
void cross_entropy_fused(T* logits, const int32_t* targets, compute_t<T>* losses, int64_t rows, int64_t vocab,
                         int64_t stride, int ignore_index, compute_t<T> dloss, bool write_gradient);
}  // namespace mp::kernels::cpu

namespace mp::kernels::cuda {
// T float or bfloat16 (losses, logsumexp and dlosses float32), one block per row. The kernels cannot
// throw, so the targets must already be checked (the ops do so on the host); a row whose target is
// neither valid nor ignore_index gets a NaN loss and NaN dlogits, never an out-of-bounds read.
template <typename T>
void cross_entropy_forward(const T* logits, const int32_t* targets, float* losses, float* logsumexp, int64_t rows,
                           int64_t vocab, int ignore_index, cudaStream_t stream);
template <typename T>
void cross_entropy_backward(const T* logits, const int32_t* targets, const float* logsumexp, const float* dlosses,
                            T* dlogits, int64_t rows, int64_t vocab, int ignore_index, cudaStream_t stream);
// The fused forward + backward (see cpu::cross_entropy_fused) with dloss read from device memory
// (dloss[0], so the host never waits; null when !write_gradient), one block per row, logits
// overwritten.
template <typename T>
void cross_entropy_fused(T* logits, const int32_t* targets, float* losses, int64_t rows, int64_t vocab, int64_t stride,
                         int ignore_index, const float* dloss, bool write_gradient, cudaStream_t stream);
// Same result as the CPU reference, bitwise (an integer count, then one double division). `out` is
// device memory.
void cross_entropy_mean_weight(const int32_t* targets, int64_t rows, int ignore_index, float* out,
                               cudaStream_t stream);
}  // namespace mp::kernels::cuda
