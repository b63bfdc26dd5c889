// The counter-based random generator shared by the CPU and CUDA init kernels: value i of a
// draw is a pure function of (seed, counter), computed in double on both sides and rounded
// once, so CPU and CUDA produce the same float32 values for the same seed.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/common/host_device.h"

namespace mp::rng {

// SplitMix64's finaliser: a bijective 64-bit mix with full avalanche.
MP_HOST_DEVICE uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// 64 random bits for (seed, counter).
MP_HOST_DEVICE uint64_t bits(uint64_t seed, uint64_t counter) {
    return mix64(mix64(seed ^ 0x5851F42D4C957F2DULL) + (counter + 1) * 0x9E3779B97F4A7C15ULL);
}

// Uniform in [0, 1) with 53 random bits.
MP_HOST_DEVICE double uniform01(uint64_t seed, uint64_t counter) {
    return static_cast<double>(bits(seed, counter) >> 11) * (1.0 / 9007199254740992.0);
}

// Standard normal for element `counter` by Box–Muller on two independent uniforms drawn from
// the counters 2·counter and 2·counter + 1. u1 is shifted into (0, 1] so log(u1) is finite.
MP_HOST_DEVICE double normal(uint64_t seed, uint64_t counter) {
    double u1 = 1.0 - uniform01(seed, 2 * counter);
    double u2 = uniform01(seed, 2 * counter + 1);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

}  // namespace mp::rng
