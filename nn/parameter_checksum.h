// The parameter checksum: one SHA-256 over a model's named parameters, how the run summary, the
// smoke tests and the multi-rank tests tell whether two runs (or a run and its resumed twin, or a
// pipeline and its one-process reference) ended with bit-identical weights.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace mp::nn {

// SHA-256 (64 lowercase hex digits) over the parameters sorted by name: for each, its name, dtype,
// shape and raw bytes (copied to the CPU first if on CUDA), every field length-prefixed so no two
// different lists encode alike. Bit-identical parameters give the same string whatever the input
// order; one flipped bit, a renamed tensor or a reshape changes it. SHA-256 rather than a 64-bit
// FNV-1a: collisions are out of reach however many runs are compared, the digest can be checked
// against any other implementation, and hashing ~0.5 GB of GPT-2 weights once at the end of a run
// costs a second or two. Throws std::invalid_argument for an undefined tensor or a repeated name.
std::string parameter_checksum(const std::vector<std::pair<std::string, Tensor>>& named);

}  // namespace mp::nn
