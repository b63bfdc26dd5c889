// All shape-checked tensor ops, one header per kernel family. Each op checks its arguments
// (throwing std::invalid_argument naming the op and the shapes), allocates its outputs and
// dispatches to kernels::cpu or kernels::cuda by device.
#pragma once

#include "tensor/ops/activations.h"
#include "tensor/ops/attention_fused.h"
#include "tensor/ops/attention_layout.h"
#include "tensor/ops/cross_entropy.h"
#include "tensor/ops/dropout.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/embedding.h"
#include "tensor/ops/gemm.h"
#include "tensor/ops/layernorm.h"
#include "tensor/ops/linear.h"
#include "tensor/ops/optimizer.h"
#include "tensor/ops/softmax.h"
