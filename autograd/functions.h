// Differentiable functions: each computes its result with tensor ops and, when a tape is
// recording, records a backward closure that captures only what its gradient needs.
// Composite functions (attention) are built from these and need no gradient code of their own.
#pragma once

#include <array>
#include <cstdint>

#include "autograd/tape.h"
#include "tensor/tensor.h"

namespace mp::fn {

// ---- basic (autograd/functions/basic.cpp)
Tensor add(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& x, double s);
Tensor mul(const Tensor& a, const Tensor& b);
// The sum of all elements, as a one-element tensor of shape {}.
Tensor sum(const Tensor& x);
Tensor reshape(const Tensor& x, const Shape& shape);
// y = x · weightᵀ + bias, x (..., in), weight (out, in), bias (out) or undefined; the bias fused
// into the GEMM, the weight and bias gradients accumulated in place into parameters' slots.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
// GELU(x · weightᵀ + bias) as one op (the bias and GELU fused into the GEMM's epilogue): the MLP's
// first half. Same values as gelu(linear(...)) in float32.
Tensor linear_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias);
// Batched op(a) · op(b) · alpha over leading batch dims (attention scores and values).
Tensor bmm(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false, double alpha = 1.0);

// ---- activations (autograd/functions/activations.cpp)
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);
Tensor causal_softmax(const Tensor& scores, double scale);
// Dropout whose mask is a function of (seed, offset): backward regenerates it.
Tensor dropout(const Tensor& x, double p, uint64_t seed, uint64_t offset);

// ---- normalisation and embedding (autograd/functions/layers.cpp)
Tensor layernorm(const Tensor& x, const Tensor& gamma, const Tensor& beta, double eps = 1e-5);
Tensor embedding(const Tensor& ids, const Tensor& weight);

// ---- attention layout (autograd/functions/attention.cpp)
std::array<Tensor, 3> split_qkv_heads(const Tensor& qkv, int64_t heads);
Tensor merge_heads(const Tensor& y);
// Multi-head causal self-attention core on a fused qkv (B, T, 3C) -> (B, T, C): the fused cuDNN
// attention where it can run, else the composed one (ops::attention_path, MINIPIPE_ATTENTION).
Tensor causal_attention(const Tensor& qkv, int64_t heads);
// The composed attention (split heads, bmm, causal softmax, bmm, merge heads): the reference.
Tensor causal_attention_composed(const Tensor& qkv, int64_t heads);
// The fused attention (cuDNN SDPA; bfloat16 on a GPU): throws, saying why, where it cannot run.
Tensor causal_attention_fused(const Tensor& qkv, int64_t heads);

// ---- losses (autograd/functions/losses.cpp): scalar (shape {}) means
// Mean cross-entropy over the rows whose target is not ignore_index. vocab < the logits' last dim:
// the columns past vocab are padding (e.g. 50257 padded to 50304): no loss, zero gradient.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int ignore_index = -100, int64_t vocab = -1);
// The same mean loss with its backward done in the forward (one pass over the logits, the gradient
// written over them — so nothing may read `logits` afterwards), for a loss whose backward seed is
// known in advance: `seed`, as a pipeline's last stage knows its micro-batch weight. Backward then
// only hands the gradient on; a different seed is refused where it can be read without waiting
// (CPU). vocab < logits' last dim: the columns past vocab are padding (no loss, zero gradient).
// Outside a tape it computes the loss alone and leaves the logits as they are.
Tensor cross_entropy_seeded(const Tensor& logits, const Tensor& targets, int ignore_index, double seed,
                            int64_t vocab = -1);
// Mean squared error over all elements.
Tensor mse(const Tensor& prediction, const Tensor& target);

}  // namespace mp::fn
