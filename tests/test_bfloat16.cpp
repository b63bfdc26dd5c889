// bfloat16 as a storage type: round-to-nearest-even on store checked bit by bit at the cases that
// decide it (ties to even, carries into the exponent, overflow to infinity, NaN, signed zero,
// subnormals) and against the definition on random floats; bfloat16 tensors (empty, fill, item,
// conversions, safetensors round trip); the one dtype dispatch and its refusal.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "nn/safetensors.h"
#include "tensor/dispatch.h"
#include "tensor/tensor.h"
#include "tests/support/test_util.h"

using namespace mp;

namespace {

float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

uint32_t bits_of(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

uint16_t rounded(uint32_t float_bits) { return bfloat16(from_bits(float_bits)).bits; }

}  // namespace

TEST(BFloat16, RoundsToNearestEvenBitByBit) {
    EXPECT_EQ(rounded(0x3F800000u), 0x3F80u);  // 1 is exact
    EXPECT_EQ(rounded(0x3F808000u), 0x3F80u);  // 1 + 2^-8: a tie, kept even (down)
    EXPECT_EQ(rounded(0x3F818000u), 0x3F82u);  // 1 + 3·2^-8: a tie, made even (up)
    EXPECT_EQ(rounded(0x3F808001u), 0x3F81u);  // just above the tie: up
    EXPECT_EQ(rounded(0x3F807FFFu), 0x3F80u);  // just below: down
    EXPECT_EQ(rounded(0xBF818000u), 0xBF82u);  // the same for negatives
    EXPECT_EQ(rounded(0x3FFFFFFFu), 0x4000u);  // the carry runs into the exponent: 2
    EXPECT_EQ(rounded(0x7F7FFFFFu), 0x7F80u);  // FLT_MAX is past the largest bfloat16's midpoint: +inf
    EXPECT_EQ(rounded(0x7F7F7FFFu), 0x7F7Fu);  // below that midpoint: the largest finite bfloat16
    EXPECT_EQ(rounded(0x7F800000u), 0x7F80u);  // +inf
    EXPECT_EQ(rounded(0xFF800000u), 0xFF80u);  // -inf
    EXPECT_EQ(rounded(0x80000000u), 0x8000u);  // -0 keeps its sign
    EXPECT_EQ(rounded(0x00008000u), 0x0000u);  // subnormal tie: even (0)
    EXPECT_EQ(rounded(0x00018000u), 0x0002u);  // subnormal tie: even (2)
    // NaN stays NaN, quiet, with its sign, even when its payload sits in the dropped bits only.
    for (uint32_t nan : {0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu}) {
        const uint16_t b = rounded(nan);
        EXPECT_TRUE(std::isnan(bfloat16::to_float(b))) << std::hex << nan;
        EXPECT_EQ(b & 0x8000u, (nan >> 16) & 0x8000u) << std::hex << nan;
    }
}

// The definition: the nearest of the two bfloat16 values around x (float32 with the low 16 bits
// cleared, and the next one up in magnitude), the even one on a tie; and the relative error is at
// most the unit roundoff 2^-8 for normal numbers.
TEST(BFloat16, RandomFloatsRoundToTheNearestNeighbour) {
    std::mt19937 rng(7);
    std::uniform_int_distribution<uint32_t> any_bits;
    int checked = 0;
    for (int i = 0; i < 200000; ++i) {
        const float x = from_bits(any_bits(rng));
        if (!std::isfinite(x)) continue;
        const uint32_t down_bits = bits_of(x) & 0xFFFF0000u;
        const float down = from_bits(down_bits), up = from_bits(down_bits + 0x10000u);
        // Past the largest bfloat16 the next value up is infinity, which IEEE rounding treats as
        // 2^128 (so the midpoint decides, as for any other neighbour).
        const double up_value = std::isinf(up) ? std::copysign(std::ldexp(1.0, 128), double(x)) : double(up);
        const double to_down = std::fabs(double(x) - double(down)), to_up = std::fabs(up_value - double(x));
        uint16_t expected = static_cast<uint16_t>(down_bits >> 16);
        if (to_up < to_down || (to_up == to_down && (expected & 1u))) expected = static_cast<uint16_t>(expected + 1);
        ASSERT_EQ(bfloat16(x).bits, expected) << std::hexfloat << x;
        const float r = round_to_bfloat16(x);
        if (std::isfinite(r) && std::fabs(x) >= std::numeric_limits<float>::min()) {
            ASSERT_LE(std::fabs(double(r) - double(x)), std::ldexp(std::fabs(double(x)), -8)) << std::hexfloat << x;
        }
        ++checked;
    }
    EXPECT_GT(checked, 100000);
}

// From a double the rounding is direct: a double just past a bfloat16 midpoint, which float32 would
// round onto the midpoint exactly, still rounds away from it.
TEST(BFloat16, FromDoubleRoundsOnce) {
    EXPECT_EQ(element_from_double<bfloat16>(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30)).bits, 0x3F81u);
    EXPECT_EQ(element_from_double<bfloat16>(1.0 + std::ldexp(1.0, -8) - std::ldexp(1.0, -30)).bits, 0x3F80u);
    EXPECT_EQ(element_from_double<bfloat16>(-(1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30))).bits, 0xBF81u);
    EXPECT_EQ(element_from_double<bfloat16>(1.0 + std::ldexp(1.0, -8)).bits, 0x3F80u);  // an exact tie: to even
    EXPECT_EQ(element_from_double<bfloat16>(1.0 + 3 * std::ldexp(1.0, -8)).bits, 0x3F82u);
    EXPECT_TRUE(std::isnan(static_cast<float>(element_from_double<bfloat16>(std::nan("")))));
}

TEST(BFloat16, TensorsHoldFillConvertAndPrint) {
    Tensor t = Tensor::empty({2, 3}, DType::BFloat16);
    EXPECT_EQ(t.nbytes(), 12u);
    EXPECT_EQ(t.describe(), "bfloat16(2, 3) on cpu");
    t.fill_(0.1);
    for (bfloat16 v : t.to_vector<bfloat16>()) EXPECT_EQ(static_cast<float>(v), round_to_bfloat16(0.1f));
    EXPECT_EQ(Tensor::full({1}, 3.0, DType::BFloat16).item(), 3.0);

    // float32 -> bfloat16 rounds each element to nearest even; back to float32 is exact.
    Tensor x = mp::testing::random_tensor({5, 7}, 3);
    Tensor b = x.to(DType::BFloat16);
    EXPECT_EQ(b.dtype(), DType::BFloat16);
    std::vector<float> xs = x.to_vector<float>(), back = b.to(DType::Float32).to_vector<float>();
    for (size_t i = 0; i < xs.size(); ++i) EXPECT_EQ(back[i], round_to_bfloat16(xs[i])) << i;
    EXPECT_EQ(b.to(DType::Float64).to(DType::BFloat16).to_vector<bfloat16>()[4].bits, b.to_vector<bfloat16>()[4].bits);
    EXPECT_EQ(Tensor::full({1}, 300.0, DType::Int32).to(DType::BFloat16).item(), 300.0);  // 300 = 0x4396 exactly

    std::ostringstream printed;
    printed << Tensor::full({2}, 1.5, DType::BFloat16);
    EXPECT_EQ(printed.str(), "Tensor([1.5, 1.5], bfloat16(2) on cpu)");
}

TEST(BFloat16, SafetensorsKeepTheBits) {
    Tensor b = mp::testing::random_tensor({3, 4}, 5).to(DType::BFloat16);
    nn::SafetensorsContents read = nn::decode_safetensors(nn::encode_safetensors({{"w", b}}), "memory");
    const Tensor& w = read.tensors.at("w");
    ASSERT_EQ(w.dtype(), DType::BFloat16);
    ASSERT_EQ(w.shape(), b.shape());
    std::vector<bfloat16> expected = b.to_vector<bfloat16>(), got = w.to_vector<bfloat16>();
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].bits, expected[i].bits) << i;
    EXPECT_EQ(nn::safetensors_dtype_name(DType::BFloat16), "BF16");
}

TEST(Dispatch, CallsWithTheElementTypeOrNamesWhatItTakes) {
    auto element_size = [](auto tag) { return sizeof(typename decltype(tag)::type); };
    EXPECT_EQ(dispatch_dtype("op", DType::BFloat16, kAllDTypes, element_size), 2u);
    EXPECT_EQ(dispatch_dtype("op", DType::Float64, kFloatingDTypes, element_size), 8u);
    mp::testing::expect_invalid_argument(
        [] { dispatch_dtype("layernorm", DType::Int32, kFloatingDTypes, [](auto) { return 0; }); },
        {"layernorm: int32 is not supported (expected float32 | float64 | bfloat16)"});
    EXPECT_EQ((DTypes{DType::Float32, DType::BFloat16}).names(), "float32 | bfloat16");
}
