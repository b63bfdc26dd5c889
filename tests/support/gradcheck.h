// Finite-difference gradient check in float64 on the CPU: perturbs every element of every
// floating input by ±h, evaluates the scalar function, and compares the central difference with
// the gradient the tape computes.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mp::testing {

// f maps the inputs to a one-element tensor. Inputs must be float64 CPU tensors (int32 inputs,
// e.g. token ids, are passed through and not differentiated). Parameters (tensors with a
// gradient slot) are compared through their slot; other inputs through Tape::grad.
//
// Error measure per element: |numeric − analytic| / max(1, |numeric|, |analytic|). With h = 1e-6
// in float64 the central difference has truncation error ~h²·|f'''| ≈ 1e-12 and rounding error
// ~ε·|f|/h ≈ 1e-10, so a correct backward stays below 1e-6 with a wide margin, while a wrong
// formula (a missing factor, a transposed operand) gives errors of order 1.
void gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, std::vector<Tensor> inputs,
               const std::string& what, double h = 1e-6, double tolerance = 1e-6);

// A fixed random weighting that turns any tensor into a scalar: sum(y ⊙ w). Makes every output
// element matter with a different weight, so a permuted gradient is caught.
Tensor weighted_sum(const Tensor& y, uint64_t seed = 99);

}  // namespace mp::testing
