// Embedding lookup as tensor ops: gather weight rows by int32 id, and the gradient of that gather
// with respect to the weight (a scatter-add, deterministic on CUDA). Ids outside
// [0, num_embeddings) are an error naming the id, its position and num_embeddings, on any device.
// defines: embedding, embedding_backward, embedding_backward_
#pragma once

#include <cstdint>

#include "tensor/tensor.h"

namespace mp::ops {

// ids: int32 of any shape; weight: (num_embeddings, dim) float. Returns ids.shape + (dim).
Tensor embedding(const Tensor& ids, const Tensor& weight);
// dout: ids.shape + (dim). Returns dweight (num_embeddings, dim): row v is the sum of the dout
// rows at the positions where ids == v, zero where v never occurs.
Tensor embedding_backward(const Tensor& ids, const Tensor& dout, int64_t num_embeddings);
// The same into an existing dweight (num_embeddings, dim) of dout's dtype, or float32 for
// bfloat16 dout: (accumulate ? dweight : 0) + the scatter-add, each occurring row rounded once,
// the others untouched when accumulating (so a step touches only the rows its ids use).
void embedding_backward_(Tensor& dweight, const Tensor& ids, const Tensor& dout, bool accumulate);

}  // namespace mp::ops
