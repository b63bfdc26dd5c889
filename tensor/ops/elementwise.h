// Shape-checked elementwise ops and reductions: add / sub / mul, scale, in-place axpy_
// (gradient accumulation), bias_add and its gradient sum_rows, the full sum, and the global L2
// norm of a list of tensors (gradient clipping). float32 on any device, float64 on the CPU.
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace mp::ops {

// x converted to `dtype` (a new tensor): between float32, float64 and bfloat16 on the CPU (to
// bfloat16: rounded to nearest even), between float32 and bfloat16 on CUDA.
Tensor cast(const Tensor& x, DType dtype);

// a + b, a - b, a * b elementwise; a and b must have the same shape, dtype and device.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
// s * x.
Tensor scale(const Tensor& x, double s);
// y += alpha * x, in place; x and y must have the same shape, dtype and device.
void axpy_(Tensor& y, const Tensor& x, double alpha = 1.0);
// x (..., C) + bias (C), the bias broadcast over every row.
Tensor bias_add(const Tensor& x, const Tensor& bias);
// x (..., C) -> (C): the sum over every dimension but the last (the gradient of bias_add's bias).
Tensor sum_rows(const Tensor& x);
// The sum of all elements, as a shape-{} tensor on x's device.
Tensor sum(const Tensor& x);

// A one-element tensor's value repeated to `shape`, on its device: the host never reads it.
Tensor broadcast_scalar(const Tensor& scalar, const Shape& shape);
// sqrt(sum over the tensors of the sum of their squares); 0 for an empty list. The tensors must
// share one device. CPU: each tensor's sum in double, added in double. CUDA: one multi-tensor
// reduction (float partials per chunk, added in double on the device), one value to the host.
double global_l2_norm(const std::vector<Tensor>& tensors);
// Every tensor of the list scaled by s in place (gradient clipping), bitwise as `scale` on each;
// the float32 CUDA tensors (one device) in one multi-tensor launch.
void scale_(const std::vector<Tensor>& tensors, double s);

}  // namespace mp::ops
