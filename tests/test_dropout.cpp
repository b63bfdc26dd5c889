// Dropout: the kept fraction, the scaling, the mask's dependence on (seed, offset) only, and
// CUDA against the CPU reference.
#include <gtest/gtest.h>

#include "tensor/ops/dropout.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_close;
using mp::testing::expect_invalid_argument;

TEST(Dropout, KeepsAboutOneMinusPAndScalesSurvivors) {
    const int64_t n = 100000;
    const double p = 0.3;
    Tensor x = Tensor::full({n}, 2.0, DType::Float64);
    std::vector<double> y = ops::dropout(x, p, 11, 0).to_vector<double>();
    int64_t kept = 0;
    for (double v : y) {
        if (v != 0.0) {
            ++kept;
            EXPECT_DOUBLE_EQ(v, 2.0 / 0.7);
        }
    }
    // Binomial(n, 0.7): standard deviation sqrt(n·0.7·0.3) ≈ 145; allow 5 sigma.
    EXPECT_NEAR(static_cast<double>(kept), 0.7 * n, 5 * 145.0);
}

TEST(Dropout, MaskDependsOnlyOnSeedAndOffset) {
    Tensor x = mp::testing::random_tensor({1000}, 3);
    Tensor a = ops::dropout(x, 0.5, 7, 100);
    Tensor b = ops::dropout(x, 0.5, 7, 100);
    mp::testing::expect_equal(a, b, "same seed and offset");
    // Offsetting by k shifts the mask by k elements: element i of offset 100+k is element i+k of offset 100.
    Tensor ones = Tensor::full({1000}, 1.0);
    std::vector<float> m0 = ops::dropout(ones, 0.5, 7, 100).to_vector<float>();
    std::vector<float> m5 = ops::dropout(ones, 0.5, 7, 105).to_vector<float>();
    for (int i = 0; i + 5 < 1000; ++i) EXPECT_EQ(m5[i], m0[i + 5]);
    EXPECT_NE(ops::dropout(ones, 0.5, 8, 100).to_vector<float>(), m0);
}

TEST(Dropout, ZeroProbabilityIsIdentity) {
    Tensor x = mp::testing::random_tensor({33, 7}, 4);
    mp::testing::expect_equal(ops::dropout(x, 0.0, 1, 0), x, "p = 0");
}

TEST(Dropout, BadArguments) {
    Tensor x = Tensor::zeros({4});
    expect_invalid_argument([&] { ops::dropout(x, 1.0, 0, 0); }, {"dropout", "p must be in [0, 1)", "1"});
    expect_invalid_argument([&] { ops::dropout(x, -0.1, 0, 0); }, {"dropout", "-0.1"});
    expect_invalid_argument([&] { ops::dropout(Tensor::zeros({4}, DType::Int32), 0.1, 0, 0); }, {"dropout", "int32"});
}

TEST(Dropout, CudaMatchesCpu) {
    MP_REQUIRE_GPU();
    for (int64_t n : {1, 7, 33, 1000, 50257}) {
        Tensor x = mp::testing::random_tensor({n}, 5 + n);
        Tensor cpu = ops::dropout(x, 0.1, 9, 12345);
        Tensor gpu = ops::dropout(x.to(Device::cuda(0)), 0.1, 9, 12345);
        // Same mask bit for bit (integer hash, then a double comparison); the scaling is one
        // float multiply on both sides: equal.
        expect_close(gpu, cpu, 0.0, 0.0, "dropout n=" + std::to_string(n));
    }
}

// bfloat16 (CPU): the same mask as float32 (it depends only on seed and offset), kept values scaled
// in float32 and rounded once.
TEST(DropoutBf16, SameMaskScaledInFloat32AndRoundedOnce) {
    Tensor x = mp::testing::random_tensor({5, 13}, 8).to(DType::BFloat16);
    std::vector<bfloat16> got = ops::dropout(x, 0.3, 77, 5).to_vector<bfloat16>();
    std::vector<float> wide = ops::dropout(x.to(DType::Float32), 0.3, 77, 5).to_vector<float>();
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].bits, bfloat16(wide[i]).bits) << i;
}

// On the GPU: the same mask and the same float32 scaling, rounded once, bit for bit the CPU's.
TEST(DropoutCudaBf16, MatchesCpu) {
    MP_REQUIRE_GPU();
    Tensor x = mp::testing::random_tensor({7, 33}, 12).to(DType::BFloat16);
    mp::testing::expect_equal(ops::dropout(x.to(Device::cuda(0)), 0.25, 9, 3), ops::dropout(x, 0.25, 9, 3), "dropout");
}
