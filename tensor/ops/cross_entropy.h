// Cross-entropy ops: softmax cross-entropy over the last dimension (the vocabulary) with an ignore
// index, as a forward that saves each row's logsumexp and a backward that uses it.
#pragma once

#include "tensor/tensor.h"

namespace mp::ops {

struct CrossEntropyResult {
    Tensor losses;     // per row, shaped like targets; 0 where the target is ignore_index
    Tensor logsumexp;  // per row, shaped like targets; written for ignored rows too (backward needs it)
};

// logits (..., V) float; targets int32 of shape (...), each in [0, V) or equal to ignore_index.
// A target outside that range is an error naming the value, its row and V. On CUDA the targets are
// copied to the host and checked before the launch (rows * 4 bytes and one stream synchronisation).
CrossEntropyResult cross_entropy_forward(const Tensor& logits, const Tensor& targets, int ignore_index = -100);

// dlogits (..., V) = dlosses * (softmax(logits) - onehot(targets)), zero rows where the target is
// ignore_index; logsumexp is the forward's, dlosses the gradient of each row's loss (shape of targets).
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& targets, const Tensor& logsumexp,
                              const Tensor& dlosses, int ignore_index = -100);

}  // namespace mp::ops
