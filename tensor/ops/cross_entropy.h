// Cross-entropy ops: softmax cross-entropy over the last dimension (the vocabulary) with an ignore
// index, as a forward that saves each row's logsumexp and a backward that uses it.
#pragma once

#include "tensor/tensor.h"

namespace mp::ops {

// The dtype of the per-row losses, logsumexp and dlosses: float32 for bfloat16 logits (the loss is
// never rounded to 8 bits), else the logits' dtype.
inline DType cross_entropy_statistics_dtype(DType logits) { return logits == DType::BFloat16 ? DType::Float32 : logits; }

struct CrossEntropyResult {
    Tensor losses;     // per row, shaped like targets; 0 where the target is ignore_index
    Tensor logsumexp;  // per row, shaped like targets; written for ignored rows too (backward needs it)
};

// logits (..., V) float; targets int32 of shape (...), each in [0, V) or equal to ignore_index.
// A target outside that range is an error naming the value, its row and V: thrown here on the CPU;
// on CUDA the check is queued on the GPU and thrown at the device's next synchronisation
// (tensor/device_checks.h), so the host does not wait for the GPU here.
CrossEntropyResult cross_entropy_forward(const Tensor& logits, const Tensor& targets, int ignore_index = -100);

// dlogits (..., V) = dlosses * (softmax(logits) - onehot(targets)), zero rows where the target is
// ignore_index; logsumexp is the forward's, dlosses the gradient of each row's loss (shape of targets).
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& logsumexp,
                              const Tensor& dlosses, int ignore_index = -100);

// Forward and backward in one pass, the gradient written over the logits (llm.c's layout): logits
// (..., S) whose first `vocab` columns are the vocabulary (vocab <= S; the rest padding, e.g. GPT-2's
// 50257 padded to 50304, which never reaches the loss and gets a zero gradient). Returns the
// per-row losses (as cross_entropy_forward); when `dloss` is defined (one element of the losses'
// dtype, on the logits' device — e.g. the loss's seed times cross_entropy_mean_weight), overwrites
// logits with dloss * (softmax - onehot), bit for bit what cross_entropy_backward gives for that
// dloss on every row; the caller must not need the logits afterwards. Undefined: logits untouched.
Tensor cross_entropy_fused_(Tensor& logits, const Tensor& targets, int ignore_index, int64_t vocab,
                            const Tensor& dloss);

// 1 / (the number of targets that are not ignore_index) as a shape-{} tensor of `dtype` (float32, or
// float64 on the CPU) on the targets' device; 0 when every target is ignored. The weight of the mean
// loss, computed where the targets are, so the count never travels to the host.
Tensor cross_entropy_mean_weight(const Tensor& targets, int ignore_index, DType dtype);

}  // namespace mp::ops
