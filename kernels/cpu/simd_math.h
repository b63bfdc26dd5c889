// Elementary functions in double precision written so that GCC vectorizes a loop that calls them
// (no library calls, no branches: selects only), for the CPU kernels' float32 fast paths.
// defines: exp_vectorizable, GeluSigmoid, gelu_sigmoid_vectorizable, MP_SIMD_CLONES
//
// Why double: a float32 result rounded once from a double accurate to ~1e-15 is the correctly
// rounded float32 value except within ~1e-15 (relative) of a rounding midpoint, so a fast path
// built on these gives its reference's bits but for a handful of elements per million, where the
// two differ by one float32 ulp. Why no libm: glibc's exp/tanh are scalar calls, ~10 ns an element,
// which made GELU a third of a CPU training step.
//
// Bitwise reproducibility: every operation here is an IEEE add, multiply, divide, compare or an
// integer operation on the bits, so a vector lane, the scalar tail and every instruction set give
// the same bits — provided the compiler fuses no multiply-add (kernels/cpu is built with
// -ffp-contract=off; see the Makefile). The selects need -fno-trapping-math to become blends
// (otherwise GCC will not if-convert the loop and it stays scalar); no kernel reads the
// floating-point exception flags.
#pragma once

#include <cstdint>
#include <cstring>

// Compile a function for AVX-512, AVX2 and baseline x86-64, chosen once at load time by the CPU
// it runs on (GCC function multi-versioning). The default build targets baseline x86-64 (SSE2:
// two doubles a vector); the binaries must run on any x86-64 machine, so wider vectors are only
// taken where the CPU has them. Elsewhere (another architecture, another compiler) it is empty.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(MP_NO_SIMD_CLONES)
#define MP_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MP_SIMD_CLONES
#endif

namespace mp::kernels::cpu::simd {

// Bits as unsigned integers: their sums and shifts wrap (defined), where int64_t's would overflow
// (undefined) for the NaN bit pattern that exp_vectorizable carries along until its final select.
inline uint64_t bits_of(double x) {
    uint64_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    return bits;
}

inline double double_from_bits(uint64_t bits) {
    double x;
    std::memcpy(&x, &bits, sizeof x);
    return x;
}

// e^x with a relative error below 3e-16 (measured: 2.2e-16 over [-700, 700] against glibc's exp).
// x = n ln2 + r with n an integer and |r| <= ln2 / 2 (Cody-Waite: ln2 in two parts, so n ln2 is
// exact in the high part); e^r by its Taylor series to degree 13 (the first term left out is
// r^14 / 14! < 5e-18); 2^n added to the exponent bits. Below -708 the result is 0 (e^-708 is the
// smallest normal double's neighbourhood; the bit trick does not make subnormals), above 709 it
// is +inf, NaN stays NaN. 2^n is added to p's exponent in unsigned arithmetic: for |x| <= 709 that is
// the signed sum (n may be negative: two's complement wraps alike), and a NaN's meaningless n
// wraps harmlessly instead of overflowing int64_t; the last select returns the NaN.
inline double exp_vectorizable(double x) {
    constexpr double kLog2e = 1.4426950408889634;
    constexpr double kLn2High = 6.93147180369123816490e-01;  // the upper 32 bits of ln2: n * kLn2High is exact
    constexpr double kLn2Low = 1.90821492927058770002e-10;   // ln2 - kLn2High
    constexpr double kRoundingShift = 6755399441055744.0;     // 1.5 * 2^52: adding it rounds to an integer
    double clamped = x > 709.0 ? 709.0 : x;
    clamped = clamped < -708.0 ? -708.0 : clamped;
    // n = round(x / ln2), held in the low mantissa bits of `shifted`.
    const double shifted = clamped * kLog2e + kRoundingShift;
    const double n = shifted - kRoundingShift;
    const double r = (clamped - n * kLn2High) - n * kLn2Low;
    double p = 1.0 / 6227020800.0;  // 1/13!
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const uint64_t n_bits = bits_of(shifted) - bits_of(kRoundingShift);  // n as an integer, modulo 2^64
    double result = double_from_bits(bits_of(p) + (n_bits << 52));
    result = x < -708.0 ? 0.0 : result;
    result = x > 709.0 ? __builtin_inf() : result;
    return x != x ? x : result;
}

// GELU's tanh factor as a sigmoid: 0.5 (1 + tanh u) = s = 1 / (1 + e^{-2u}), and
// 0.5 (1 - tanh^2 u) = 2 s (1 - s), for u = sqrt(2/pi) (x + 0.044715 x^3) — the CUDA kernel's
// formulation. With t = e^{-2|u|} in [0, 1], s is 1 / (1 + t) for u >= 0 and t / (1 + t) for
// u < 0, and s (1 - s) = t / (1 + t)^2: no cancellation anywhere (1 + tanh u loses all its digits
// for u << 0 in the definition), and no overflow.
struct GeluSigmoid {
    double s;
    double s_times_one_minus_s;
};

inline GeluSigmoid gelu_sigmoid_vectorizable(double x, double sqrt_2_over_pi, double cubic) {
    const double u = sqrt_2_over_pi * (x + cubic * x * x * x);
    const double abs_u = u < 0.0 ? -u : u;
    const double t = exp_vectorizable(-2.0 * abs_u);
    const double inv = 1.0 / (1.0 + t);
    const double t_inv = t * inv;
    return {u >= 0.0 ? inv : t_inv, t_inv * inv};
}

}  // namespace mp::kernels::cpu::simd
