// Softmax ops over the last dimension: the plain one and the causal-masked one used on
// attention scores (..., T, T), each with its backward.
// defines: softmax, softmax_backward, causal_softmax, causal_softmax_backward
#pragma once

#include "tensor/tensor.h"

namespace mp::ops {

// y = softmax(x) along the last dimension; x has at least one dimension.
Tensor softmax(const Tensor& x);
// dx = y * (dy - sum(dy * y)) along the last dimension; y is softmax's output, dy has its shape.
Tensor softmax_backward(const Tensor& y, const Tensor& dy);
// scores has shape (..., T, T). Row i of every (T, T) block becomes softmax(scale * scores) over
// its columns j <= i; the masked entries (j > i) are exactly 0 and are never read.
Tensor causal_softmax(const Tensor& scores, double scale = 1.0);
// dx = scale * y * (dy - sum(dy * y)) over the kept columns, 0 at the masked ones.
Tensor causal_softmax_backward(const Tensor& y, const Tensor& dy, double scale = 1.0);

}  // namespace mp::ops
