// Attention layout permutations: a hand-checked small case, round trips, float64 on the CPU, CUDA
// bitwise equal to the CPU (vectorised and scalar paths, NaN-poisoned outputs), and argument errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kernels/attention_layout.h"
#include "tensor/device_context.h"
#include "tensor/ops/attention_layout.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::poisoned;
using mp::testing::random_tensor;

// ---------------------------------------------------------------- CPU reference

TEST(AttentionLayoutCpu, SplitQkvHandCheckedSmallCase) {
    // B=2, T=3, H=2, D=2 (C=4): qkv[b][t][:] = 12*(3b + t) + (0..11), laid out as (q | k | v), each
    // (head 0 | head 1). So q[b][h][t][d] = 12*(3b + t) + 2h + d, k adds 4, v adds 8.
    Tensor qkv = Tensor::arange(2 * 3 * 12, DType::Float32).reshape({2, 3, 12});
    std::array<Tensor, 3> heads = ops::split_qkv_heads(qkv, 2);
    const std::vector<float> q = {0,  1,  12, 13, 24, 25,   // b0 h0 t0..2
                                  2,  3,  14, 15, 26, 27,   // b0 h1
                                  36, 37, 48, 49, 60, 61,   // b1 h0
                                  38, 39, 50, 51, 62, 63};  // b1 h1
    for (int part = 0; part < 3; ++part) {
        EXPECT_EQ(heads[part].shape(), (Shape{2, 2, 3, 2}));
        std::vector<float> expected(q);
        for (float& value : expected) value += 4.0f * part;
        expect_equal(heads[part], Tensor::from_vector(expected, {2, 2, 3, 2}), "part " + std::to_string(part));
    }
    // Spot check by hand: k[1][1][2][0] = qkv[1][2][C + 1*D + 0] = 12*5 + 6 = 66.
    EXPECT_EQ(heads[1].to_vector<float>()[((1 * 2 + 1) * 3 + 2) * 2 + 0], 66.0f);

    // merge_heads of q gives q's rows: (B, T, H*D) with row (b, t) = 12*(3b + t) + (0, 1, 2, 3).
    std::vector<float> rows;
    for (int bt = 0; bt < 6; ++bt)
        for (int c = 0; c < 4; ++c) rows.push_back(12.0f * bt + c);
    expect_equal(ops::merge_heads(heads[0]), Tensor::from_vector(rows, {2, 3, 4}), "merge_heads of q");
}

TEST(AttentionLayoutCpu, RoundTripsAreIdentity) {
    for (DType dtype : {DType::Float32, DType::Float64}) {
        Tensor qkv = random_tensor({3, 5, 3 * 4 * 7}, 1, 1.0, dtype);
        std::array<Tensor, 3> heads = ops::split_qkv_heads(qkv, 4);
        EXPECT_EQ(heads[0].shape(), (Shape{3, 4, 5, 7}));
        expect_equal(ops::merge_qkv_heads(heads[0], heads[1], heads[2]), qkv, "merge(split(qkv))");

        Tensor x = random_tensor({3, 5, 12}, 2, 1.0, dtype);
        Tensor split = ops::split_heads(x, 3);
        EXPECT_EQ(split.shape(), (Shape{3, 3, 5, 4}));
        expect_equal(ops::merge_heads(split), x, "merge_heads(split_heads(x))");
        Tensor y = random_tensor({2, 3, 4, 5}, 3, 1.0, dtype);
        expect_equal(ops::split_heads(ops::merge_heads(y), 3), y, "split_heads(merge_heads(y))");
    }
}

TEST(AttentionLayoutCpu, SplitQkvAgreesWithSplitHeadsOfEachThird) {
    // q, k, v are split_heads of the column blocks [0, C), [C, 2C), [2C, 3C) of qkv.
    const int64_t batch = 2, seq = 3, heads = 2, head_dim = 5, channels = heads * head_dim;
    Tensor qkv = random_tensor({batch, seq, 3 * channels}, 4);
    std::array<Tensor, 3> parts = ops::split_qkv_heads(qkv, heads);
    std::vector<float> values = qkv.to_vector<float>();
    for (int part = 0; part < 3; ++part) {
        std::vector<float> block;
        for (int64_t bt = 0; bt < batch * seq; ++bt)
            for (int64_t c = 0; c < channels; ++c) block.push_back(values[bt * 3 * channels + part * channels + c]);
        expect_equal(parts[part], ops::split_heads(Tensor::from_vector(block, {batch, seq, channels}), heads),
                     "part " + std::to_string(part));
    }
}

// ---------------------------------------------------------------- CUDA vs CPU (bitwise: pure copies)

#if MP_CUDA  // calls raw kernels::cuda:: functions, which a CPU-only build does not have
TEST(AttentionLayoutCuda, BitwiseEqualToCpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    cudaStream_t stream = compute_stream(0);
    uint64_t seed = 10;
    // D = 1, 7 (scalar path), 4, 64 (float4 path); odd B, T, H.
    for (int64_t head_dim : {1, 7, 4, 64}) {
        const int64_t batch = 3, seq = 33, heads = 5, channels = heads * head_dim;
        const std::string what = "D=" + std::to_string(head_dim);
        const Shape head_shape{batch, heads, seq, head_dim};

        Tensor qkv = random_tensor({batch, seq, 3 * channels}, seed++);
        std::array<Tensor, 3> expected = ops::split_qkv_heads(qkv, heads);
        Tensor qkv_gpu = qkv.to(gpu);
        std::array<Tensor, 3> got;
        for (Tensor& t : got) t = poisoned(head_shape, DType::Float32, gpu);
        kernels::cuda::split_qkv_heads(qkv_gpu.data<float>(), got[0].data<float>(), got[1].data<float>(),
                                       got[2].data<float>(), batch, seq, heads, head_dim, stream);
        for (int part = 0; part < 3; ++part) expect_equal(got[part], expected[part], what + " split_qkv part " + std::to_string(part));

        Tensor dq = random_tensor(head_shape, seed++), dk = random_tensor(head_shape, seed++),
               dv = random_tensor(head_shape, seed++);
        Tensor dqkv = poisoned({batch, seq, 3 * channels}, DType::Float32, gpu);
        kernels::cuda::merge_qkv_heads(dq.to(gpu).data<float>(), dk.to(gpu).data<float>(), dv.to(gpu).data<float>(),
                                       dqkv.data<float>(), batch, seq, heads, head_dim, stream);
        expect_equal(dqkv, ops::merge_qkv_heads(dq, dk, dv), what + " merge_qkv");

        Tensor merged = poisoned({batch, seq, channels}, DType::Float32, gpu);
        kernels::cuda::merge_heads(dq.to(gpu).data<float>(), merged.data<float>(), batch, seq, heads, head_dim, stream);
        expect_equal(merged, ops::merge_heads(dq), what + " merge_heads");

        Tensor x = random_tensor({batch, seq, channels}, seed++);
        Tensor split = poisoned(head_shape, DType::Float32, gpu);
        kernels::cuda::split_heads(x.to(gpu).data<float>(), split.data<float>(), batch, seq, heads, head_dim, stream);
        expect_equal(split, ops::split_heads(x, heads), what + " split_heads");
    }
}

TEST(AttentionLayoutCuda, MisalignedPointersTakeTheScalarPath) {
    MP_REQUIRE_GPU();
    // D = 64 would use float4, but an input starting one float into its buffer is not 16-byte
    // aligned: the launcher must fall back to scalar accesses and still be exact.
    const Device gpu = Device::cuda(0);
    const int64_t batch = 2, seq = 9, heads = 3, head_dim = 64, channels = heads * head_dim;
    Tensor buffer = random_tensor({1 + batch * seq * channels}, 20);
    Tensor x = buffer.slice(1, buffer.numel()).reshape({batch, seq, channels});
    Tensor split = poisoned({batch, heads, seq, head_dim}, DType::Float32, gpu);
    Tensor buffer_gpu = buffer.to(gpu);
    kernels::cuda::split_heads(buffer_gpu.data<float>() + 1, split.data<float>(), batch, seq, heads, head_dim,
                               compute_stream(0));
    expect_equal(split, ops::split_heads(x, heads), "split_heads from an unaligned input");

    Tensor merged_buffer = poisoned({1 + batch * seq * channels}, DType::Float32, gpu);
    kernels::cuda::merge_heads(split.data<float>(), merged_buffer.data<float>() + 1, batch, seq, heads, head_dim,
                               compute_stream(0));
    expect_equal(merged_buffer.slice(1, merged_buffer.numel()).reshape({batch, seq, channels}), x,
                 "merge_heads to an unaligned output");
}
#endif  // MP_CUDA

TEST(AttentionLayoutCuda, OpsRoundTripOnGpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    Tensor qkv = random_tensor({2, 17, 3 * 4 * 16}, 30);
    std::array<Tensor, 3> heads = ops::split_qkv_heads(qkv.to(gpu), 4);
    std::array<Tensor, 3> expected = ops::split_qkv_heads(qkv, 4);
    for (int part = 0; part < 3; ++part) expect_equal(heads[part], expected[part], "op split_qkv part " + std::to_string(part));
    expect_equal(ops::merge_qkv_heads(heads[0], heads[1], heads[2]), qkv, "op merge(split(qkv))");
    expect_equal(ops::split_heads(ops::merge_heads(heads[1]), 4), expected[1], "op split_heads(merge_heads(k))");
}

// ---------------------------------------------------------------- bad input

TEST(AttentionLayoutErrors, SplitQkvHeads) {
    expect_invalid_argument([&] { ops::split_qkv_heads(Tensor(), 2); }, {"split_qkv_heads", "qkv is an undefined tensor"});
    expect_invalid_argument([&] { ops::split_qkv_heads(Tensor::zeros({2, 3, 12}, DType::Int32), 2); },
                            {"split_qkv_heads", "expects float32", "int32(2, 3, 12)"});
    expect_invalid_argument([&] { ops::split_qkv_heads(Tensor::zeros({6, 12}), 2); },
                            {"split_qkv_heads", "(B, T, 3*C)", "(6, 12)"});
    expect_invalid_argument([&] { ops::split_qkv_heads(Tensor::zeros({2, 3, 12}), 0); },
                            {"split_qkv_heads", "heads must be at least 1", "got 0"});
    expect_invalid_argument([&] { ops::split_qkv_heads(Tensor::zeros({2, 3, 14}), 2); },
                            {"split_qkv_heads", "(2, 3, 14)", "last dimension 14", "not divisible by 3"});
    expect_invalid_argument([&] { ops::split_qkv_heads(Tensor::zeros({2, 3, 18}), 4); },
                            {"split_qkv_heads", "C = 6", "(2, 3, 18)", "not divisible by heads = 4"});
}

TEST(AttentionLayoutErrors, MergeQkvHeads) {
    Tensor dq = Tensor::zeros({2, 2, 3, 4});
    expect_invalid_argument([&] { ops::merge_qkv_heads(dq, Tensor(), dq); }, {"merge_qkv_heads", "dk is an undefined tensor"});
    expect_invalid_argument([&] { ops::merge_qkv_heads(Tensor::zeros({2, 2, 3, 4}, DType::Int32), dq, dq); },
                            {"merge_qkv_heads", "expects float32", "int32(2, 2, 3, 4)"});
    expect_invalid_argument([&] { ops::merge_qkv_heads(dq, dq, Tensor::zeros({2, 2, 3, 4}, DType::Float64)); },
                            {"merge_qkv_heads", "dtype mismatch", "float32(2, 2, 3, 4)", "float64(2, 2, 3, 4)"});
    expect_invalid_argument([&] { ops::merge_qkv_heads(Tensor::zeros({2, 3, 8}), Tensor::zeros({2, 3, 8}), Tensor::zeros({2, 3, 8})); },
                            {"merge_qkv_heads", "(B, H, T, D)", "(2, 3, 8)"});
    expect_invalid_argument([&] { ops::merge_qkv_heads(dq, Tensor::zeros({2, 2, 3, 5}), dq); },
                            {"merge_qkv_heads", "shape mismatch", "(2, 2, 3, 4)", "(2, 2, 3, 5)"});
    expect_invalid_argument([&] { ops::merge_qkv_heads(dq, dq, Tensor::zeros({2, 2, 4, 4})); },
                            {"merge_qkv_heads", "shape mismatch", "(2, 2, 3, 4)", "(2, 2, 4, 4)"});
}

TEST(AttentionLayoutErrors, MergeAndSplitHeads) {
    expect_invalid_argument([&] { ops::merge_heads(Tensor()); }, {"merge_heads", "y is an undefined tensor"});
    expect_invalid_argument([&] { ops::merge_heads(Tensor::zeros({2, 3, 4}, DType::Int32)); },
                            {"merge_heads", "expects float32", "int32(2, 3, 4)"});
    expect_invalid_argument([&] { ops::merge_heads(Tensor::zeros({2, 3, 4})); }, {"merge_heads", "(B, H, T, D)", "(2, 3, 4)"});
    expect_invalid_argument([&] { ops::split_heads(Tensor(), 2); }, {"split_heads", "x is an undefined tensor"});
    expect_invalid_argument([&] { ops::split_heads(Tensor::zeros({2, 3, 8}, DType::Int32), 2); },
                            {"split_heads", "expects float32", "int32(2, 3, 8)"});
    expect_invalid_argument([&] { ops::split_heads(Tensor::zeros({2, 3, 4, 2}), 2); },
                            {"split_heads", "(B, T, C)", "(2, 3, 4, 2)"});
    expect_invalid_argument([&] { ops::split_heads(Tensor::zeros({2, 3, 8}), -1); },
                            {"split_heads", "heads must be at least 1", "got -1"});
    expect_invalid_argument([&] { ops::split_heads(Tensor::zeros({2, 3, 10}), 4); },
                            {"split_heads", "C = 10", "(2, 3, 10)", "not divisible by heads = 4"});
}

TEST(AttentionLayoutErrors, HeadTensorsOnDifferentDevices) {
    MP_REQUIRE_GPU();
    Tensor dq = Tensor::zeros({2, 2, 3, 4});
    expect_invalid_argument([&] { ops::merge_qkv_heads(dq, dq.to(Device::cuda(0)), dq); },
                            {"merge_qkv_heads", "different devices", "cpu", "cuda:0"});
}

// bfloat16 (CPU): the layout ops only move elements, so they equal the float32 ones bit for bit.
TEST(AttentionLayoutBf16, MovesElementsExactly) {
    const int64_t batch = 2, seq = 3, heads = 2, head_dim = 5;
    Tensor qkv = mp::testing::random_tensor({batch, seq, 3 * heads * head_dim}, 9).to(DType::BFloat16);
    std::array<Tensor, 3> split = ops::split_qkv_heads(qkv, heads);
    std::array<Tensor, 3> split_wide = ops::split_qkv_heads(qkv.to(DType::Float32), heads);
    for (size_t i = 0; i < 3; ++i) mp::testing::expect_equal(split[i].to(DType::Float32), split_wide[i], "split");
    mp::testing::expect_equal(ops::merge_qkv_heads(split[0], split[1], split[2]).to(DType::Float32),
                              qkv.to(DType::Float32), "merge_qkv_heads");
    mp::testing::expect_equal(ops::merge_heads(split[0]).to(DType::Float32), ops::merge_heads(split_wide[0]),
                              "merge_heads");
}

// On the GPU the bfloat16 permutations move the same bits as the CPU's (head_dim 8: the float4
// path of 8 bfloat16s; head_dim 5: one value at a time).
TEST(AttentionLayoutCudaBf16, BitwiseEqualToCpu) {
    MP_REQUIRE_GPU();
    for (int64_t head_dim : {8, 5}) {
        const int64_t batch = 2, seq = 7, heads = 3;
        Tensor qkv = mp::testing::random_tensor({batch, seq, 3 * heads * head_dim}, 10 + head_dim).to(DType::BFloat16);
        std::array<Tensor, 3> cpu = ops::split_qkv_heads(qkv, heads);
        std::array<Tensor, 3> gpu = ops::split_qkv_heads(qkv.to(Device::cuda(0)), heads);
        for (size_t i = 0; i < 3; ++i) mp::testing::expect_equal(gpu[i], cpu[i], "split_qkv_heads");
        mp::testing::expect_equal(ops::merge_qkv_heads(gpu[0], gpu[1], gpu[2]), qkv, "merge_qkv_heads");
        mp::testing::expect_equal(ops::merge_heads(gpu[0]), ops::merge_heads(cpu[0]), "merge_heads");
    }
}
