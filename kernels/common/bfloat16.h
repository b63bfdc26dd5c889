// bfloat16 as a storage type: the top 16 bits of an IEEE float32 (1 sign, 8 exponent, 7 mantissa
// bits), so it has float32's range and a unit roundoff of 2^-8. Arithmetic is done in float32
// (every kernel accumulates in float32); a value is rounded to bfloat16 only when it is stored,
// by round-to-nearest-even — the rounding CUDA's __float2bfloat16_rn and PyTorch use, so the CPU
// references give the GPU kernels' bits. Usable from host and device code.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/common/host_device.h"

namespace mp {

struct bfloat16 {
    uint16_t bits = 0;

    bfloat16() = default;
    MP_HOST_DEVICE explicit bfloat16(float value) : bits(round_to_bits(value)) {}
    MP_HOST_DEVICE explicit operator float() const { return to_float(bits); }

    static MP_HOST_DEVICE bfloat16 from_bits(uint16_t raw) {
        bfloat16 b;
        b.bits = raw;
        return b;
    }

    // Round to nearest, ties to even; NaN stays a (quiet) NaN with its sign; values beyond the
    // largest bfloat16 round to infinity, as IEEE rounding does.
    static MP_HOST_DEVICE uint16_t round_to_bits(float value) {
        uint32_t u = float_bits(value);
        if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0)  // NaN
            return static_cast<uint16_t>((u >> 16) | 0x0040u);
        const uint32_t lsb = (u >> 16) & 1u;  // the last bit kept: ties go to make it 0
        u += 0x7fffu + lsb;
        return static_cast<uint16_t>(u >> 16);
    }

    static MP_HOST_DEVICE float to_float(uint16_t raw) {
        const uint32_t u = static_cast<uint32_t>(raw) << 16;
        float f;
        std::memcpy(&f, &u, sizeof f);
        return f;
    }

  private:
    static MP_HOST_DEVICE uint32_t float_bits(float f) {
        uint32_t u;
        std::memcpy(&u, &f, sizeof u);
        return u;
    }
};

static_assert(sizeof(bfloat16) == 2, "bfloat16 must be two bytes");

// x rounded to bfloat16 and back: what storing x in a bfloat16 tensor keeps.
MP_HOST_DEVICE float round_to_bfloat16(float x) { return static_cast<float>(bfloat16(x)); }

// The type arithmetic on T is done in: float for bfloat16 (loaded exactly, rounded to nearest even
// once on store), T itself for float and double.
template <typename T> struct ComputeTypeOf {
    using type = T;
};
template <> struct ComputeTypeOf<bfloat16> {
    using type = float;
};
template <typename T> using compute_t = typename ComputeTypeOf<T>::type;

// One element of any element type from or to a double (fills, conversions, tests): a bfloat16
// goes through float32 and is rounded to nearest even when stored.
template <typename T> MP_HOST_DEVICE T element_from_double(double value) { return static_cast<T>(value); }
// Rounded from the double directly (to nearest, ties to even): rounding to float32 first could
// land exactly on a bfloat16 midpoint that the double is not on and then break that tie the wrong
// way (1 + 2^-8 + 2^-30 must give 1 + 2^-7, not 1). Only such float32 ties need the double.
template <> MP_HOST_DEVICE bfloat16 element_from_double(double value) {
    const float f = static_cast<float>(value);
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0xFFFFu) == 0x8000u && static_cast<double>(f) != value) {
        const bool beyond = (value < 0 ? -value : value) > (f < 0 ? -static_cast<double>(f) : static_cast<double>(f));
        return bfloat16::from_bits(static_cast<uint16_t>((u >> 16) + (beyond ? 1u : 0u)));
    }
    return bfloat16(f);
}
template <typename T> MP_HOST_DEVICE double element_to_double(T value) { return static_cast<double>(value); }
template <> MP_HOST_DEVICE double element_to_double(bfloat16 value) {
    return static_cast<double>(static_cast<float>(value));
}

}  // namespace mp
