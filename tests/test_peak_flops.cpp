// The MFU peak table (tensor/peak_flops.h): the GPU names it knows, the column each precision reads
// through train::gemm_math (what PrecisionScope sets), GEMMs without a figure refused rather than
// read as fp32, and the GPT flops-per-token formula.
#include <gtest/gtest.h>

#include "tensor/peak_flops.h"
#include "tests/support/test_util.h"
#include "train/build.h"

using namespace mp;
using mp::testing::expect_invalid_argument;

TEST(PeakFlops, KnowsTheSxmPartsOnly) {
    ASSERT_NE(find_peak("NVIDIA H100 80GB HBM3"), nullptr);
    ASSERT_NE(find_peak("NVIDIA H200"), nullptr);
    EXPECT_EQ(find_peak("NVIDIA H100 PCIe"), nullptr);
    EXPECT_EQ(find_peak("NVIDIA H100 NVL"), nullptr);
    EXPECT_EQ(find_peak("NVIDIA GH200 480GB"), nullptr);
    EXPECT_EQ(find_peak("cpu"), nullptr);
}

TEST(PeakFlops, EachPrecisionReadsItsColumn) {
    const PeakEntry& h100 = *find_peak("NVIDIA H100 80GB HBM3");
    EXPECT_EQ(h100.for_math(train::gemm_math(train::Precision::Fp32)), h100.fp32);
    EXPECT_EQ(h100.for_math(train::gemm_math(train::Precision::Tf32)), h100.tf32);
    EXPECT_EQ(h100.for_math(train::gemm_math(train::Precision::Bf16)), h100.bf16);
    EXPECT_STREQ(PeakEntry::math_label(train::gemm_math(train::Precision::Fp32)), "FP32");
    EXPECT_STREQ(PeakEntry::math_label(train::gemm_math(train::Precision::Tf32)), "TF32 dense");
    EXPECT_STREQ(PeakEntry::math_label(train::gemm_math(train::Precision::Bf16)), "BF16 dense");
}

// gemm_math is what PrecisionScope sets: tf32 is TF32 float32 GEMMs, bf16 computes in bfloat16.
TEST(PeakFlops, GemmMathOfEachPrecision) {
    const GemmMath tf32 = train::gemm_math(train::Precision::Tf32), bf16 = train::gemm_math(train::Precision::Bf16);
    EXPECT_EQ(tf32.dtype, DType::Float32);
    EXPECT_EQ(tf32.float32_precision, MatmulPrecision::TF32);
    EXPECT_EQ(bf16.dtype, DType::BFloat16);
    EXPECT_EQ(bf16.float32_precision, MatmulPrecision::Exact);
    {
        const train::PrecisionScope scope(train::Precision::Tf32);
        EXPECT_EQ(matmul_precision(), MatmulPrecision::TF32);
    }
    const train::PrecisionScope scope(train::Precision::Fp32);  // back to exact for the rest of the thread
    EXPECT_EQ(matmul_precision(), MatmulPrecision::Exact);
}

TEST(PeakFlops, GemmsWithoutAFigureAreRefused) {
    const PeakEntry& h200 = *find_peak("NVIDIA H200");
    expect_invalid_argument([&] { h200.for_math({DType::Float64, MatmulPrecision::Exact}); },
                            {"peak FLOP/s", "float64"});
    expect_invalid_argument([&] { PeakEntry::math_label({DType::Int32, MatmulPrecision::Exact}); }, {"int32"});
    expect_invalid_argument([&] { h200.for_math({DType::Float32, static_cast<MatmulPrecision>(7)}); },
                            {"matmul precision 7"});
}

// 6·N + 6·L·C·T: GPT-2 small's 85M matmul parameters at T = 1024.
TEST(PeakFlops, GptFlopsPerToken) {
    EXPECT_DOUBLE_EQ(gpt_flops_per_token(85'000'000, 12, 768, 1024), 6.0 * 85'000'000 + 6.0 * 12 * 768 * 1024);
    EXPECT_DOUBLE_EQ(gpt_flops_per_token(0, 0, 0, 0), 0.0);
}
