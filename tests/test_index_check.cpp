// Tests of the index range check: the CPU reference (first bad position, the exempt value, empty
// input), the CUDA kernel against it on random non-round sizes, and the queue of GPU checks
// (tensor/device_checks.h): nothing waits when the check is queued, the error comes at the next
// synchronisation naming the value, the queue drains itself when full, and the embedding and
// cross-entropy ops never make the host wait for the device.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "kernels/index_check.h"
#include "tensor/device_checks.h"
#include "tensor/device_context.h"
#include "tensor/ops.h"
#include "tests/support/test_util.h"

#if MP_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#endif

namespace mp {
namespace {

using kernels::kNoExemptValue;
using testing::expect_invalid_argument;

// Random values in [low, high), with `bad` positions (sorted) replaced by values outside it.
[[maybe_unused]] std::vector<int32_t> values_with_bad(int64_t n, int32_t low, int32_t high, const std::vector<int64_t>& bad,
                                     uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int32_t> inside(low, high - 1);
    std::vector<int32_t> values(static_cast<size_t>(n));
    for (int32_t& v : values) v = inside(rng);
    for (size_t i = 0; i < bad.size(); ++i) values[static_cast<size_t>(bad[i])] = i % 2 ? low - 1 - int32_t(i) : high + int32_t(i);
    return values;
}

// ---------------------------------------------------------------- CPU reference

TEST(IndexCheck, CpuFindsTheFirstBadPosition) {
    std::vector<int32_t> values = {3, 0, 9, 4, -1, 12};
    EXPECT_EQ(kernels::cpu::first_out_of_range(values.data(), 6, 0, 10, kNoExemptValue), 4);
    EXPECT_EQ(kernels::cpu::first_out_of_range(values.data(), 6, 0, 13, kNoExemptValue), 4);
    EXPECT_EQ(kernels::cpu::first_out_of_range(values.data(), 6, -1, 13, kNoExemptValue), -1);
    EXPECT_EQ(kernels::cpu::first_out_of_range(values.data(), 6, 0, 9, kNoExemptValue), 2);  // high is exclusive
    EXPECT_EQ(kernels::cpu::first_out_of_range(values.data(), 6, 1, 10, kNoExemptValue), 1);  // low is inclusive
    EXPECT_EQ(kernels::cpu::first_out_of_range(values.data(), 0, 0, 1, kNoExemptValue), -1);  // empty
}

TEST(IndexCheck, CpuExemptValueIsAccepted) {
    std::vector<int32_t> targets = {2, -100, 1, 7};
    EXPECT_EQ(kernels::cpu::first_out_of_range(targets.data(), 4, 0, 5, -100), 3);
    EXPECT_EQ(kernels::cpu::first_out_of_range(targets.data(), 4, 0, 5, kNoExemptValue), 1);
    EXPECT_EQ(kernels::cpu::first_out_of_range(targets.data(), 4, 0, 8, -100), -1);
}

TEST(IndexCheck, CpuTensorCheckThrowsAtOnceWithTheCallersMessage) {
    Tensor ids = Tensor::from_vector<int32_t>({1, 2, 5, 9}, {2, 2});
    expect_invalid_argument(
        [&] {
            check_index_range(ids, 0, 5, kNoExemptValue,
                              [](int64_t position, int32_t value) { return str("value ", value, " at ", position); });
        },
        {"value 5 at 2"});
    check_index_range(ids, 0, 10, kNoExemptValue, [](int64_t, int32_t) { return std::string("unreachable"); });
    EXPECT_EQ(pending_device_checks(Device::cpu()), 0u);
    raise_device_errors(Device::cpu());  // a no-op
    expect_invalid_argument([&] { check_index_range(Tensor::zeros({2}), 0, 1, kNoExemptValue, nullptr); },
                            {"check_index_range", "int32", "float32(2)"});
}

// ---------------------------------------------------------------- CUDA

#if MP_CUDA
// The kernel's answer for `values` on the GPU, from a poisoned (all-ones) word.
int64_t cuda_first_out_of_range(const std::vector<int32_t>& values, int64_t low, int64_t high, int64_t exempt) {
    const Device gpu = Device::cuda(0);
    Tensor device_values = Tensor::from_vector(values, {static_cast<int64_t>(values.size())}, gpu);
    Tensor word = Tensor::empty({2}, DType::Int32, gpu);
    cudaStream_t stream = compute_stream(0);
    CUDA_CHECK(cudaMemsetAsync(word.raw_data(), 0xFF, 8, stream));
    kernels::cuda::first_out_of_range(device_values.data<int32_t>(), device_values.numel(), low, high, exempt,
                                      static_cast<unsigned long long*>(word.raw_data()), stream);
    std::vector<int32_t> halves = word.to_vector<int32_t>();
    unsigned long long position = 0;
    std::memcpy(&position, halves.data(), sizeof(position));
    return position == ~0ULL ? -1 : static_cast<int64_t>(position);
}
#endif

TEST(IndexCheckCuda, MatchesCpuOnRandomNonRoundSizes) {
    MP_REQUIRE_GPU();
#if MP_CUDA
    const std::vector<int64_t> sizes = {1, 7, 255, 257, 4099, 100003};
    uint64_t seed = 11;
    for (int64_t n : sizes) {
        std::mt19937_64 rng(seed++);
        std::vector<std::vector<int64_t>> bad_sets = {{}, {n - 1}, {0}};
        if (n > 10) bad_sets.push_back({n / 3, n / 2, n - 2});  // many blocks racing with atomicMin
        for (const auto& bad : bad_sets) {
            std::vector<int32_t> values = values_with_bad(n, 0, 50257, bad, seed++);
            for (int64_t exempt : {kNoExemptValue, int64_t{-100}}) {
                int64_t expected = kernels::cpu::first_out_of_range(values.data(), n, 0, 50257, exempt);
                EXPECT_EQ(cuda_first_out_of_range(values, 0, 50257, exempt), expected) << "n " << n;
            }
        }
    }
#endif
}

TEST(IndexCheckCuda, QueuedCheckWaitsForNothingAndThrowsAtTheNextSynchronisation) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    raise_device_errors(gpu);
    Tensor ids = Tensor::from_vector<int32_t>({0, 6, 2, 1, 7, 9}, {2, 3}, gpu);
    const uint64_t waits_before = host_wait_count();
    auto message = [](int64_t position, int32_t value) { return str("bad ", value, " at ", position); };
    check_index_range(ids, 0, 7, kNoExemptValue, message);
    EXPECT_EQ(host_wait_count(), waits_before) << "queuing a check must not wait for the device";
    EXPECT_EQ(pending_device_checks(gpu), 1u);
    expect_invalid_argument([&] { synchronize(gpu); }, {"bad 7 at 4"});
    EXPECT_EQ(pending_device_checks(gpu), 0u);
    synchronize(gpu);  // reported once, then forgotten

    // A read of any tensor of that device reports it too.
    check_index_range(ids, 0, 7, kNoExemptValue, message);
    Tensor unrelated = Tensor::zeros({3}, DType::Float32, gpu);
    expect_invalid_argument([&] { unrelated.to_vector<float>(); }, {"bad 7 at 4"});

    // Good values: the read finds nothing.
    check_index_range(ids, 0, 10, kNoExemptValue, message);
    raise_device_errors(gpu);
    EXPECT_EQ(pending_device_checks(gpu), 0u);
}

TEST(IndexCheckCuda, AFullQueueIsReadBeforeTheNextCheck) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    raise_device_errors(gpu);
    Tensor good = Tensor::from_vector<int32_t>({1, 2, 3}, {3}, gpu);
    Tensor bad = Tensor::from_vector<int32_t>({1, 2, 30}, {3}, gpu);
    auto message = [](int64_t position, int32_t value) { return str("value ", value, " at ", position); };
    check_index_range(bad, 0, 4, kNoExemptValue, message);  // the earliest failed check is the one named
    bool thrown = false;
    try {
        for (int i = 0; i < 3000; ++i) check_index_range(good, 0, 4, kNoExemptValue, message);
    } catch (const std::invalid_argument& e) {
        thrown = true;
        EXPECT_NE(std::string(e.what()).find("value 30 at 2"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(thrown) << "a full queue must be read (and the failed check reported) before more are queued";
    for (int i = 0; i < 3000; ++i) check_index_range(good, 0, 4, kNoExemptValue, message);
    EXPECT_LE(pending_device_checks(gpu), 1024u);
    raise_device_errors(gpu);
}

TEST(IndexCheckCuda, EmbeddingAndCrossEntropyStepsNeverWaitForTheDevice) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(0);
    raise_device_errors(gpu);
    Tensor ids = testing::random_ids({4, 33}, 97, 5).to(gpu);
    Tensor targets = testing::random_ids({4, 33}, 97, 6).to(gpu);
    Tensor weight = testing::random_tensor({97, 24}, 7).to(gpu);
    Tensor head = testing::random_tensor({97, 24}, 8).to(gpu);  // (out, in)
    autograd::make_parameter(weight);
    autograd::make_parameter(head);
    const uint64_t waits_before = host_wait_count();
    {
        autograd::Tape tape;
        autograd::TapeScope scope(tape);
        Tensor x = fn::embedding(ids, weight);
        Tensor logits = fn::linear(x, head, Tensor());
        Tensor loss = fn::cross_entropy(logits, targets);
        tape.backward(loss);
    }
    EXPECT_EQ(host_wait_count(), waits_before) << "forward and backward of embedding + cross-entropy waited for the GPU";
    raise_device_errors(gpu);
}

}  // namespace
}  // namespace mp
