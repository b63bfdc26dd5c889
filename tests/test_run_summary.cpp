// The run summary (train/summary.h): the JSON round-trips (NaN as null, 8 GiB counts), reading names
// the missing or mistyped field, writing replaces the file atomically and names a bad path. The
// parameter checksum it carries is tested in test_parameter_checksum.cpp.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/test_util.h"
#include "train/summary.h"

using namespace mp;
using namespace mp::train;
using mp::testing::expect_invalid_argument;

namespace {

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

}  // namespace

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
    const std::filesystem::path dir = mp::testing::fresh_temp_dir("run_summary");
    const std::string path = (dir / "summary.json").string();
    std::ofstream(path) << "old contents";
    write_summary(example_summary(), path);
    expect_same_summary(run_summary_from_json(nlohmann::json::parse(mp::testing::read_text_file(path))), example_summary());
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
    const std::string bad = (dir / "missing" / "summary.json").string();
    expect_invalid_argument([&] { write_summary(example_summary(), bad); }, {"write_summary", bad});
    std::filesystem::remove_all(dir);
}
