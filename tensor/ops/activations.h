// Activation ops: ReLU and GELU (tanh approximation, as GPT-2), forward and backward.
// Each checks its arguments, allocates the output and runs the CPU or CUDA kernel.
// defines: relu, relu_backward, gelu, gelu_backward
#pragma once

#include "tensor/tensor.h"

namespace mp::ops {

// y = max(x, 0), any shape.
Tensor relu(const Tensor& x);
// dx = dy where x > 0, else 0. x is the forward input; dy has x's shape.
Tensor relu_backward(const Tensor& x, const Tensor& dy);
// y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), any shape.
Tensor gelu(const Tensor& x);
// dx = dy * GELU'(x). x is the forward input; dy has x's shape.
Tensor gelu_backward(const Tensor& x, const Tensor& dy);

}  // namespace mp::ops
