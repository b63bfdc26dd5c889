// Run summary and parameter checksum: the summary JSON round-trips (NaN as null, 8 GiB counts),
// reading names the missing or mistyped field, writing replaces atomically; the parameter checksum is
// stable, order-free, and changed by one bit, a shape, a dtype or a name.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/summary.h"
#include "tests/support/test_util.h"

using namespace mp;
using namespace mp::pipeline;
using mp::testing::expect_invalid_argument;

namespace {

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
}

std::filesystem::path fresh_temp_dir(const std::string& name) {
    std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                ("minipipe_test_run_summary_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

RunSummary example_summary() {
    RunSummary summary;
    summary.final_loss = 3.25;
    summary.tokens_per_second = 123456.5;
    summary.samples_per_second = 120.5;
    summary.bubble_per_stage = {0.125, 0.25, 0.375, 0.5};
    summary.peak_memory_per_stage = {size_t(1) << 33, 2048, 3, 0};  // 8 GiB does not fit 32 bits
    summary.peak_stash_per_stage = {4096, 2048, 1024, 512};
    summary.parameter_checksum = "ab12";
    summary.steps = 1000;
    summary.config = {{"schedule", "1f1b"}, {"stages", 4}, {"micro_batches", 8}, {"lr", 3e-4}};
    return summary;
}

void expect_same_summary(const RunSummary& actual, const RunSummary& expected) {
    EXPECT_EQ(actual.final_loss, expected.final_loss);
    EXPECT_EQ(actual.tokens_per_second, expected.tokens_per_second);
    EXPECT_EQ(actual.samples_per_second, expected.samples_per_second);
    EXPECT_EQ(actual.bubble_per_stage, expected.bubble_per_stage);
    EXPECT_EQ(actual.peak_memory_per_stage, expected.peak_memory_per_stage);
    EXPECT_EQ(actual.peak_stash_per_stage, expected.peak_stash_per_stage);
    EXPECT_EQ(actual.parameter_checksum, expected.parameter_checksum);
    EXPECT_EQ(actual.steps, expected.steps);
    EXPECT_EQ(actual.config, expected.config);
}

std::vector<std::pair<std::string, Tensor>> example_parameters() {
    return {{"wte", mp::testing::random_tensor({5, 4}, 1)},
            {"h0.ln.weight", mp::testing::random_tensor({4}, 2)},
            {"h0.attn.bias", mp::testing::random_tensor({12}, 3, 1.0, DType::Float64)},
            {"empty", Tensor::zeros({0, 3})}};
}

}  // namespace

// ------------------------------------------------------------------------------------ summary

TEST(RunSummary, JsonHasEveryFieldAndRoundTrips) {
    const RunSummary summary = example_summary();
    const nlohmann::json parsed = nlohmann::json::parse(to_json(summary).dump());
    for (const char* key : {"final_loss", "tokens_per_second", "samples_per_second", "bubble_per_stage",
                            "peak_memory_per_stage", "peak_stash_per_stage", "parameter_checksum", "steps", "config"})
        EXPECT_TRUE(parsed.contains(key)) << key;
    EXPECT_EQ(parsed["format"], "minipipe-run-summary");
    EXPECT_EQ(parsed["peak_memory_per_stage"][0].get<uint64_t>(), uint64_t(1) << 33);
    EXPECT_EQ(parsed["config"]["schedule"], "1f1b");
    expect_same_summary(run_summary_from_json(parsed), summary);
}

TEST(RunSummary, NanLossIsWrittenAsNullAndReadBackAsNan) {
    RunSummary summary = example_summary();
    summary.final_loss = std::nan("");
    const nlohmann::json parsed = nlohmann::json::parse(to_json(summary).dump());
    EXPECT_TRUE(parsed["final_loss"].is_null());
    EXPECT_TRUE(std::isnan(run_summary_from_json(parsed).final_loss));
}

TEST(RunSummary, ReadingNamesTheMissingOrMistypedField) {
    nlohmann::json json = to_json(example_summary());
    json.erase("peak_stash_per_stage");
    expect_invalid_argument([&] { run_summary_from_json(json); }, {"run_summary_from_json", "peak_stash_per_stage"});
    json = to_json(example_summary());
    json["peak_memory_per_stage"][1] = -5;
    expect_invalid_argument([&] { run_summary_from_json(json); }, {"peak_memory_per_stage", "-5"});
}

TEST(RunSummary, WriteReplacesTheFileAndNamesABadPath) {
    const std::filesystem::path dir = fresh_temp_dir("summary");
    const std::string path = (dir / "summary.json").string();
    std::ofstream(path) << "old contents";
    write_summary(example_summary(), path);
    expect_same_summary(run_summary_from_json(nlohmann::json::parse(read_text(path))), example_summary());
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
    const std::string bad = (dir / "missing" / "summary.json").string();
    expect_invalid_argument([&] { write_summary(example_summary(), bad); }, {"write_summary", bad});
    std::filesystem::remove_all(dir);
}

// ----------------------------------------------------------------------------------- checksum

TEST(ParameterChecksum, StableHexAndIndependentOfOrder) {
    const auto parameters = example_parameters();
    const std::string checksum = parameter_checksum(parameters);
    EXPECT_EQ(checksum.size(), 64u);
    EXPECT_TRUE(std::all_of(checksum.begin(), checksum.end(), [](char c) { return std::isxdigit(c) && !std::isupper(c); }));
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
    EXPECT_NE(parameter_checksum({{"a", first}, {"b", rest}}), parameter_checksum({{"a", shifted_first}, {"b", shifted_rest}}));
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
