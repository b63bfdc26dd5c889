// The parameter checksum (nn/parameter_checksum.h) that run summaries and the smoke tests compare
// runs by: 64 lowercase hex digits, stable, independent of the parameters' order, and changed by
// any flipped bit, a shape, a dtype, a name or bytes moved between tensors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "nn/parameter_checksum.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::nn::parameter_checksum;
using mp::testing::expect_invalid_argument;

namespace {

std::vector<std::pair<std::string, Tensor>> example_parameters() {
    return {{"wte", mp::testing::random_tensor({5, 4}, 1)},
            {"h0.ln.weight", mp::testing::random_tensor({4}, 2)},
            {"h0.attn.bias", mp::testing::random_tensor({12}, 3, 1.0, DType::Float64)},
            {"empty", Tensor::zeros({0, 3})}};
}

}  // namespace

TEST(ParameterChecksum, StableHexAndIndependentOfOrder) {
    const auto parameters = example_parameters();
    const std::string checksum = parameter_checksum(parameters);
    EXPECT_EQ(checksum.size(), 64u);
    EXPECT_TRUE(std::all_of(checksum.begin(), checksum.end(),
                            [](char c) { return std::isxdigit(c) && !std::isupper(c); }));
    EXPECT_EQ(parameter_checksum(parameters), checksum);
    // Fresh tensors with the same values (other storage, other ids) give the same digest.
    auto copies = parameters;
    for (auto& [name, tensor] : copies) tensor = tensor.clone();
    EXPECT_EQ(parameter_checksum(copies), checksum);
    auto reversed = parameters;
    std::reverse(reversed.begin(), reversed.end());
    EXPECT_EQ(parameter_checksum(reversed), checksum);
}

TEST(ParameterChecksum, EveryFlippedBitChangesIt) {
    const auto parameters = example_parameters();
    const std::string checksum = parameter_checksum(parameters);
    // Every bit of one tensor, flipped on a clone and then restored.
    Tensor weight = parameters[1].second.clone();
    auto changed = parameters;
    changed[1].second = weight;
    auto* bytes = static_cast<unsigned char*>(weight.raw_data());
    for (size_t bit = 0; bit < weight.nbytes() * 8; ++bit) {
        bytes[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
        EXPECT_NE(parameter_checksum(changed), checksum) << "bit " << bit;
        bytes[bit / 8] ^= static_cast<unsigned char>(1u << (bit % 8));
    }
    EXPECT_EQ(parameter_checksum(changed), checksum);
}

TEST(ParameterChecksum, ShapeDtypeAndNameCount) {
    const Tensor values = mp::testing::random_tensor({6}, 7);
    const std::string flat = parameter_checksum({{"w", values}});
    EXPECT_NE(parameter_checksum({{"w", values.reshape({2, 3})}}), flat);
    EXPECT_NE(parameter_checksum({{"w", values.reshape({3, 2})}}), parameter_checksum({{"w", values.reshape({2, 3})}}));
    EXPECT_NE(parameter_checksum({{"v", values}}), flat);
    // The same 24 bytes read as int32.
    Tensor as_int = Tensor::empty({6}, DType::Int32);
    std::memcpy(as_int.raw_data(), values.raw_data(), values.nbytes());
    EXPECT_NE(parameter_checksum({{"w", as_int}}), flat);
    // Moving bytes between tensors is not the same as the original split.
    const Tensor first = values.slice(0, 2).clone(), rest = values.slice(2, 6).clone();
    const Tensor shifted_first = values.slice(0, 3).clone(), shifted_rest = values.slice(3, 6).clone();
    EXPECT_NE(parameter_checksum({{"a", first}, {"b", rest}}),
              parameter_checksum({{"a", shifted_first}, {"b", shifted_rest}}));
}

TEST(ParameterChecksum, RejectsRepeatedNamesAndUndefinedTensors) {
    expect_invalid_argument([] { parameter_checksum({{"w", Tensor::zeros({2})}, {"w", Tensor::zeros({2})}}); },
                            {"parameter_checksum", "'w'", "twice"});
    expect_invalid_argument([] { parameter_checksum({{"w", Tensor()}}); }, {"parameter_checksum", "'w'", "undefined"});
}

TEST(ParameterChecksum, CudaTensorsHashLikeTheirCpuCopies) {
    MP_REQUIRE_GPU();
    auto parameters = example_parameters();
    parameters.erase(parameters.begin() + 2);  // float64 lives on the CPU only
    auto on_gpu = parameters;
    for (auto& [name, tensor] : on_gpu) tensor = tensor.to(Device::cuda(0));
    EXPECT_EQ(parameter_checksum(on_gpu), parameter_checksum(parameters));
}
