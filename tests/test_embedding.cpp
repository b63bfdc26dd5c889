// Embedding tests: the CPU lookup and its scatter-add gradient against hand-written cases and the
// adjoint identity, the CUDA kernels against the CPU bitwise (same fp32 sums in the same order)
// on NaN-poisoned outputs, run-to-run determinism, out-of-range ids, and every argument check.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/embedding.h"
#include "tensor/device_context.h"
#include "tensor/ops/elementwise.h"
#include "tensor/ops/embedding.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_equal;
using mp::testing::expect_invalid_argument;
using mp::testing::poisoned;
using mp::testing::random_ids;
using mp::testing::random_tensor;

namespace {

double dot(const Tensor& a, const Tensor& b) {
    std::vector<double> av = mp::testing::to_doubles(a), bv = mp::testing::to_doubles(b);
    double total = 0.0;
    for (size_t i = 0; i < av.size(); ++i) total += av[i] * bv[i];
    return total;
}

// The raw CUDA kernels writing into NaN-poisoned outputs (and a poisoned workspace), so an element
// a kernel fails to write shows up. Inputs are CUDA tensors; only called after MP_REQUIRE_GPU(),
// so in a CPU-only build (no kernel call compiled) some parameters are unused.
Tensor cuda_forward_poisoned(const Tensor& ids, const Tensor& weight) {
    Shape out_shape = ids.shape();
    out_shape.push_back(weight.size(1));
    Tensor out = poisoned(out_shape, DType::Float32, weight.device());
#if MP_CUDA
    kernels::cuda::embedding_forward(ids.data<int32_t>(), weight.data<float>(), out.data<float>(), ids.numel(),
                                     weight.size(0), weight.size(1), compute_stream(weight.device().index));
#endif
    return out;
}

Tensor cuda_backward_poisoned([[maybe_unused]] const Tensor& ids, const Tensor& dout, int64_t num_embeddings) {
    const int64_t dim = dout.shape().back();
    Tensor dweight = poisoned({num_embeddings, dim}, DType::Float32, dout.device());
#if MP_CUDA
    const size_t workspace_bytes = kernels::cuda::embedding_backward_workspace_bytes(ids.numel(), num_embeddings);
    Tensor workspace = poisoned({static_cast<int64_t>((workspace_bytes + 3) / 4)}, DType::Int32, dout.device());
    kernels::cuda::embedding_backward(ids.data<int32_t>(), dout.data<float>(), dweight.data<float>(), ids.numel(),
                                      num_embeddings, dim, /*accumulate=*/false, workspace.raw_data(),
                                      workspace_bytes, compute_stream(dout.device().index));
#endif
    return dweight;
}

}  // namespace

// ---------------------------------------------------------------- CPU reference

TEST(EmbeddingCpu, ForwardCopiesTheRowsOfTheIds) {
    // weight[v, c] = 10 v + c, so out[i, j, c] = 10 ids[i, j] + c.
    const int64_t vocab = 6, dim = 3;
    std::vector<float> weight_values;
    for (int64_t v = 0; v < vocab; ++v)
        for (int64_t c = 0; c < dim; ++c) weight_values.push_back(static_cast<float>(10 * v + c));
    Tensor weight = Tensor::from_vector(weight_values, {vocab, dim});
    Tensor ids = Tensor::from_vector<int32_t>({5, 0, 2, 2, 1, 5}, {2, 3});
    Tensor out = ops::embedding(ids, weight);
    EXPECT_EQ(out.shape(), (Shape{2, 3, 3}));
    expect_equal(out,
                 Tensor::from_vector<float>({50, 51, 52, 0, 1, 2, 20, 21, 22, 20, 21, 22, 10, 11, 12, 50, 51, 52},
                                            {2, 3, 3}),
                 "embedding rows");
    // A scalar id gives a single row of shape (dim); float64 weights stay float64.
    Tensor row = ops::embedding(Tensor::from_vector<int32_t>({4}, {}), weight.to(DType::Float64));
    expect_equal(row, Tensor::from_vector<double>({40, 41, 42}, {3}), "scalar id, float64");
}

TEST(EmbeddingCpu, BackwardSumsTheRowsOfRepeatedIds) {
    // ids = (3, 1, 3, 3, 0), dout[p, c] = 10 p + c. Id 3 appears at positions 0, 2, 3 and gets
    // (0 + 20 + 30, 1 + 21 + 31); ids 1 and 0 get their one row; 2 and 4 never occur: zero.
    Tensor ids = Tensor::from_vector<int32_t>({3, 1, 3, 3, 0}, {5});
    Tensor dout = Tensor::from_vector<float>({0, 1, 10, 11, 20, 21, 30, 31, 40, 41}, {5, 2});
    Tensor dweight = ops::embedding_backward(ids, dout, 5);
    expect_equal(dweight, Tensor::from_vector<float>({40, 41, 10, 11, 0, 0, 50, 53, 0, 0}, {5, 2}),
                 "dweight with repeated and absent ids");
}

TEST(EmbeddingCpu, BackwardIsTheAdjointOfForward) {
    // The forward is linear in weight, so <embedding(ids, W), dout> = <W, embedding_backward(ids, dout)>
    // for any W and dout. In float64 both sides sum the same ~1000 products of size ~1 in other
    // orders: they agree to ~1e-13.
    const int64_t vocab = 37, dim = 7;
    Tensor ids = random_ids({4, 33}, vocab, 1);
    Tensor weight = random_tensor({vocab, dim}, 2, 1.0, DType::Float64);
    Tensor dout = random_tensor({4, 33, dim}, 3, 1.0, DType::Float64);
    const double forward_side = dot(ops::embedding(ids, weight), dout);
    const double backward_side = dot(weight, ops::embedding_backward(ids, dout, vocab));
    EXPECT_NEAR(forward_side, backward_side, 1e-10);
}

// ---------------------------------------------------------------- CUDA against the CPU

TEST(EmbeddingCuda, ForwardMatchesCpuExactly) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    uint64_t seed = 100;
    // 1, 7, 33: scalar loads; 768: float4 loads. A copy, so the results are bitwise equal.
    for (int64_t dim : {1, 7, 33, 768}) {
        for (const Shape& ids_shape : {Shape{1}, Shape{5, 7}, Shape{4, 257}}) {
            const std::string what = "forward dim " + std::to_string(dim) + " ids " + shape_str(ids_shape);
            const int64_t vocab = 1000;
            Tensor ids = random_ids(ids_shape, vocab, seed++);
            Tensor weight = random_tensor({vocab, dim}, seed++);
            Tensor cpu = ops::embedding(ids, weight);
            expect_equal(cuda_forward_poisoned(ids.to(gpu), weight.to(gpu)), cpu, what + " (raw kernel)");
            expect_equal(ops::embedding(ids.to(gpu), weight.to(gpu)), cpu, what + " (op)");
        }
    }
}

TEST(EmbeddingCuda, BackwardMatchesCpuExactly) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    uint64_t seed = 200;
    // vocab 50 with 4099 ids: every id repeats ~80 times. vocab 50257 with 1000 ids: mostly
    // single occurrences and ~49300 rows that must come out zero (the poison would show).
    // Both sides add each id's dout rows in fp32, in increasing position order, starting from 0:
    // the same operations in the same order, so the results are bitwise equal.
    struct Case {
        int vocab;
        Shape ids_shape;
    };
    for (int64_t dim : {1, 7, 33, 768}) {
        for (const Case& c : {Case{50, {4099}}, Case{50257, {8, 125}}, Case{1, {3, 5}}}) {
            const std::string what = "backward dim " + std::to_string(dim) + " vocab " + std::to_string(c.vocab) +
                                     " ids " + shape_str(c.ids_shape);
            Tensor ids = random_ids(c.ids_shape, c.vocab, seed++);
            Shape dout_shape = c.ids_shape;
            dout_shape.push_back(dim);
            Tensor dout = random_tensor(dout_shape, seed++);
            Tensor cpu = ops::embedding_backward(ids, dout, c.vocab);
            expect_equal(cuda_backward_poisoned(ids.to(gpu), dout.to(gpu), c.vocab), cpu, what + " (raw kernel)");
            expect_equal(ops::embedding_backward(ids.to(gpu), dout.to(gpu), c.vocab), cpu, what + " (op)");
        }
    }
}

TEST(EmbeddingCuda, BackwardRunsAreBitwiseDeterministic) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    // Few distinct ids and many positions: long runs, where atomics would reorder the sums.
    Tensor ids = random_ids({8, 1024}, 64, 7).to(gpu);
    Tensor dout = random_tensor({8, 1024, 768}, 8).to(gpu);
    Tensor first = cuda_backward_poisoned(ids, dout, 64);
    Tensor second = cuda_backward_poisoned(ids, dout, 64);
    expect_equal(second, first, "dweight, two runs");
}

TEST(EmbeddingCuda, OutOfRangeIdsAreReportedNotRead) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    synchronize(gpu);
    Tensor weight = Tensor::zeros({7, 4}, DType::Float32, gpu);
    Tensor dout = Tensor::zeros({2, 3, 4}, DType::Float32, gpu);
    // The check is queued on the GPU and reported at the next synchronisation (the ops do not
    // wait); the first bad position is reported, whatever comes after it.
    Tensor too_large = Tensor::from_vector<int32_t>({0, 6, 2, 1, 7, 9}, {2, 3}, gpu);
    expect_invalid_argument([&] { ops::embedding(too_large, weight); synchronize(gpu); },
                            {"embedding", "id 7 at position 4", "(2, 3)", "[0, 7)"});
    expect_invalid_argument([&] { ops::embedding_backward(too_large, dout, 7); synchronize(gpu); },
                            {"embedding_backward", "id 7 at position 4", "[0, 7)"});
    Tensor negative = Tensor::from_vector<int32_t>({0, 1, 2, -3, 7, 0}, {2, 3}, gpu);
    expect_invalid_argument([&] { ops::embedding(negative, weight); synchronize(gpu); },
                            {"embedding", "id -3 at position 3", "[0, 7)"});
    expect_invalid_argument([&] { ops::embedding_backward(negative, dout, 7); synchronize(gpu); },
                            {"embedding_backward", "id -3 at position 3", "[0, 7)"});
    // The position is found in a long tensor too (many blocks racing with atomicMin).
    std::vector<int32_t> long_ids(100000, 1);
    long_ids[70001] = 123;
    long_ids[99999] = -1;
    expect_invalid_argument([&] { ops::embedding(Tensor::from_vector(long_ids, {100000}, gpu), weight); synchronize(gpu); },
                            {"embedding", "id 123 at position 70001", "[0, 7)"});
    // Until a bad id is reported, the kernels never touch memory outside the tables (checked
    // under compute-sanitizer by tools/gpu_check.sh): the forward writes NaN for its row, the
    // backward skips it. Here the raw kernels run on the bad ids, with no check queued.
#if MP_CUDA
    Tensor table = mp::testing::random_tensor({7, 4}, 3).to(gpu);
    Tensor out = Tensor::zeros({6, 4}, DType::Float32, gpu);
    kernels::cuda::embedding_forward(too_large.data<int32_t>(), table.data<float>(), out.data<float>(), 6, 7, 4,
                                     compute_stream(0));
    std::vector<float> rows = out.to_vector<float>(), table_rows = table.to_vector<float>();
    const std::vector<int32_t> ids = {0, 6, 2, 1, 7, 9};
    for (size_t p = 0; p < ids.size(); ++p)
        for (size_t c = 0; c < 4; ++c) {
            if (ids[p] >= 7) EXPECT_TRUE(std::isnan(rows[4 * p + c])) << "bad id " << ids[p] << " at position " << p;
            else EXPECT_EQ(rows[4 * p + c], table_rows[4 * static_cast<size_t>(ids[p]) + c]) << "position " << p;
        }
    Tensor grads = mp::testing::random_tensor({6, 4}, 4).to(gpu);
    Tensor dweight = cuda_backward_poisoned(too_large, grads, 7);
    std::vector<float> dweight_rows = dweight.to_vector<float>(), grad_rows = grads.to_vector<float>();
    for (size_t id = 0; id < 7; ++id)
        for (size_t c = 0; c < 4; ++c) {
            // Ids 0, 6, 2, 1 occur once (positions 0, 1, 2, 3); rows 3, 4, 5 never occur.
            const std::vector<int> position_of = {0, 3, 2, -1, -1, -1, 1};
            float expected = position_of[id] < 0 ? 0.0f : grad_rows[4 * static_cast<size_t>(position_of[id]) + c];
            EXPECT_EQ(dweight_rows[4 * id + c], expected) << "dweight row " << id;
        }
#endif
}

TEST(EmbeddingCuda, MixedDevicesAreAnError) {
    MP_REQUIRE_GPU();
    Tensor ids = Tensor::zeros({3}, DType::Int32);
    expect_invalid_argument([&] { ops::embedding(ids, Tensor::zeros({5, 2}, DType::Float32, Device::cuda(0))); },
                            {"embedding", "different devices", "int32(3) on cpu", "cuda:0"});
    expect_invalid_argument(
        [&] { ops::embedding_backward(ids, Tensor::zeros({3, 2}, DType::Float32, Device::cuda(0)), 5); },
        {"embedding_backward", "different devices", "int32(3) on cpu", "cuda:0"});
}

// ---------------------------------------------------------------- argument checks

TEST(EmbeddingOps, OutOfRangeIdsOnCpuNameIdPositionAndVocab) {
    Tensor weight = Tensor::zeros({7, 4});
    Tensor too_large = Tensor::from_vector<int32_t>({0, 6, 2, 1, 7, 9}, {2, 3});
    expect_invalid_argument([&] { ops::embedding(too_large, weight); },
                            {"embedding", "id 7 at position 4", "(2, 3)", "[0, 7)"});
    expect_invalid_argument([&] { ops::embedding_backward(too_large, Tensor::zeros({2, 3, 4}), 7); },
                            {"embedding_backward", "id 7 at position 4", "[0, 7)"});
    Tensor negative = Tensor::from_vector<int32_t>({-1}, {1});
    expect_invalid_argument([&] { ops::embedding(negative, weight); }, {"embedding", "id -1 at position 0", "[0, 7)"});
}

TEST(EmbeddingOps, ForwardArgumentErrorsNameTheOpAndValues) {
    Tensor ids = Tensor::zeros({2, 3}, DType::Int32);
    Tensor weight = Tensor::zeros({7, 4});
    expect_invalid_argument([&] { ops::embedding(Tensor(), weight); }, {"embedding", "ids is an undefined tensor"});
    expect_invalid_argument([&] { ops::embedding(ids, Tensor()); }, {"embedding", "weight is an undefined tensor"});
    expect_invalid_argument([&] { ops::embedding(Tensor::zeros({2, 3}), weight); },
                            {"embedding", "ids must be int32", "float32(2, 3)"});
    expect_invalid_argument([&] { ops::embedding(ids, Tensor::zeros({7, 4}, DType::Int32)); },
                            {"embedding", "expects float32", "int32(7, 4)"});
    expect_invalid_argument([&] { ops::embedding(ids, Tensor::zeros({28})); },
                            {"embedding", "weight must be (num_embeddings, dim)", "(28)"});
}

TEST(EmbeddingOps, BackwardArgumentErrorsNameTheOpAndValues) {
    Tensor ids = Tensor::zeros({2, 3}, DType::Int32);
    Tensor dout = Tensor::zeros({2, 3, 4});
    const char* op = "embedding_backward";
    expect_invalid_argument([&] { ops::embedding_backward(Tensor(), dout, 7); }, {op, "ids is an undefined tensor"});
    expect_invalid_argument([&] { ops::embedding_backward(ids, Tensor(), 7); }, {op, "dout is an undefined tensor"});
    expect_invalid_argument([&] { ops::embedding_backward(Tensor::zeros({2, 3}), dout, 7); },
                            {op, "ids must be int32", "float32(2, 3)"});
    expect_invalid_argument([&] { ops::embedding_backward(ids, Tensor::zeros({2, 3, 4}, DType::Int32), 7); },
                            {op, "expects float32", "int32(2, 3, 4)"});
    expect_invalid_argument([&] { ops::embedding_backward(ids, dout, -3); }, {op, "num_embeddings must be >= 0", "-3"});
    expect_invalid_argument([&] { ops::embedding_backward(ids, Tensor::zeros({2, 4, 4}), 7); },
                            {op, "dout has shape (2, 4, 4)", "expected ids' shape (2, 3)"});
    expect_invalid_argument([&] { ops::embedding_backward(ids, Tensor::zeros({6, 4}), 7); },
                            {op, "dout has shape (6, 4)", "expected ids' shape (2, 3)"});
}

// bfloat16 (CPU): the lookup copies rows exactly; the gradient sums each row in float32, position
// by position, and rounds once — the float32 gradient of the widened dout, rounded.
TEST(EmbeddingBf16, LookupIsExactAndTheGradientIsRoundedOnce) {
    Tensor weight = mp::testing::random_tensor({11, 7}, 3).to(DType::BFloat16);
    Tensor ids = Tensor::from_vector<int32_t>({4, 0, 4, 10, 4, 2}, {2, 3});
    std::vector<bfloat16> out = ops::embedding(ids, weight).to_vector<bfloat16>(), w = weight.to_vector<bfloat16>();
    const std::vector<int32_t> id_values = ids.to_vector<int32_t>();
    for (size_t p = 0; p < id_values.size(); ++p)
        for (size_t c = 0; c < 7; ++c) EXPECT_EQ(out[p * 7 + c].bits, w[static_cast<size_t>(id_values[p]) * 7 + c].bits);
    Tensor dout = mp::testing::random_tensor({2, 3, 7}, 4).to(DType::BFloat16);
    std::vector<bfloat16> grad = ops::embedding_backward(ids, dout, 11).to_vector<bfloat16>();
    std::vector<float> wide = ops::embedding_backward(ids, dout.to(DType::Float32), 11).to_vector<float>();
    for (size_t i = 0; i < grad.size(); ++i) EXPECT_EQ(grad[i].bits, bfloat16(wide[i]).bits) << i;
}

// On the GPU: the lookup of a bfloat16 table is exact; the gradient agrees to one bfloat16 rounding.
TEST(EmbeddingCudaBf16, MatchesCpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    Tensor weight = mp::testing::random_tensor({13, 9}, 3).to(DType::BFloat16);
    Tensor ids = Tensor::from_vector<int32_t>({4, 0, 4, 12, 4, 2}, {2, 3});
    mp::testing::expect_equal(ops::embedding(ids.to(gpu), weight.to(gpu)), ops::embedding(ids, weight), "lookup");
    Tensor dout = mp::testing::random_tensor({2, 3, 9}, 4).to(DType::BFloat16);
    mp::testing::expect_close(ops::embedding_backward(ids.to(gpu), dout.to(gpu), 13), ops::embedding_backward(ids,
                              dout, 13),
                              std::ldexp(1.0, -8), 1e-6, "gradient");
}

// In place: written (rows of absent ids zeroed), then accumulated (only the rows the ids touch
// change, each by its run's sum added once); bfloat16 dout into a float32 gradient sums in float32
// and is never rounded to bfloat16 — the float32 gradient of the widened dout, exactly.
TEST(EmbeddingOps, BackwardIntoAnExistingGradientWritesThenAccumulates) {
    Tensor ids = Tensor::from_vector<int32_t>({4, 0, 4, 10, 4, 2}, {2, 3});
    Tensor dout = mp::testing::random_tensor({2, 3, 7}, 5);
    const Tensor once = ops::embedding_backward(ids, dout, 11);
    Tensor grad = mp::testing::poisoned({11, 7}, DType::Float32, Device::cpu());
    ops::embedding_backward_(grad, ids, dout, false);
    mp::testing::expect_equal(grad, once, "written");
    Tensor other = Tensor::from_vector<int32_t>({1, 1, 1, 1, 1, 1}, {2, 3});
    ops::embedding_backward_(grad, other, dout, true);
    mp::testing::expect_equal(grad, ops::add(once, ops::embedding_backward(other, dout, 11)), "accumulated");

    const Tensor dout16 = dout.to(DType::BFloat16);
    Tensor mixed = Tensor::zeros({11, 7});
    ops::embedding_backward_(mixed, ids, dout16, true);
    mp::testing::expect_equal(mixed, ops::embedding_backward(ids, dout16.to(DType::Float32), 11), "bf16 into float32");
    Tensor wrong = Tensor::zeros({11, 6});
    expect_invalid_argument([&] { ops::embedding_backward_(wrong, ids, dout, false); },
                            {"embedding_backward: dweight", "must be (num_embeddings, 7)"});
}

// The same on the GPU, bit for bit as the CPU for float32 and bfloat16 dout alike (the same float32
// sums in the same order, added once), each written then accumulated.
TEST(EmbeddingCuda, BackwardIntoAnExistingGradientMatchesCpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    Tensor ids = Tensor::from_vector<int32_t>({4, 0, 4, 10, 4, 2, 9, 9}, {2, 4});
    for (DType dtype : {DType::Float32, DType::BFloat16}) {
        const Tensor dout = mp::testing::random_tensor({2, 4, 37}, 6).to(dtype);
        Tensor cpu = Tensor::empty({11, 37});
        Tensor dev = mp::testing::poisoned({11, 37}, DType::Float32, gpu);
        for (bool accumulate : {false, true}) {
            ops::embedding_backward_(cpu, ids, dout, accumulate);
            ops::embedding_backward_(dev, ids.to(gpu), dout.to(gpu), accumulate);
        }
        mp::testing::expect_equal(dev, cpu, str("in place, dout ", dtype_name(dtype)));
    }
}
