// A trainer's start-up without MPI (train/startup.h, train/output_paths.h): command line, --help,
// environment, output paths, and the judgements of the ranks' gathered verdicts, configs and flags
// (the gathering itself runs under mpirun in tests/run_example_smoke.sh).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/support/test_util.h"
#include "train/output_paths.h"
#include "train/startup.h"

using namespace mp::train;
using mp::testing::expect_invalid_argument;

namespace {

// A config file in a fresh directory, removed with it.
class Startup : public ::testing::Test {
  protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() / ("minipipe_test_startup_" + std::to_string(::getpid()));
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_);
        config_path_ = (dir_ / "run.json").string();
        std::ofstream(config_path_) << R"({"steps": 7, "seed": 5, "comm": {"timeout_s": 40}})";
        unsetenv("MINIPIPE_COMM_TIMEOUT_S");
    }
    void TearDown() override {
        unsetenv("MINIPIPE_COMM_TIMEOUT_S");
        std::filesystem::remove_all(dir_);
    }

    // Runs load_trainer_config on `args` (the program name first) as world rank `rank` of one.
    bool load(std::vector<std::string> args, int rank = 0, const std::vector<ExtraFlag>& extra_flags = {}) {
        args.insert(args.begin(), "trainer");
        std::vector<char*> argv;
        for (std::string& arg : args) argv.push_back(arg.data());
        return load_trainer_config(static_cast<int>(argv.size()), argv.data(), "trainer", "A test trainer.",
                                   config_path_.c_str(), rank, 1, command_line_, config_, extra_flags);
    }

    std::filesystem::path dir_;
    std::string config_path_;
    TrainerCommandLine command_line_;
    TrainConfig config_;
};

const ExtraFlag kColourFlag{"--colour", "NAME", "a colour to check", "red", [](const std::string& value) {
                                if (value != "red" && value != "blue")
                                    throw std::invalid_argument("--colour: '" + value + "' is not red or blue");
                            }};

}  // namespace

TEST_F(Startup, DefaultConfigFileThenSetOverridesInOrder) {
    ASSERT_TRUE(load({}));
    EXPECT_EQ(command_line_.config_path, config_path_);
    EXPECT_EQ(config_.steps, 7);
    EXPECT_EQ(config_.seed, 5);
    ASSERT_TRUE(load({"--set", "steps=9", "--set", "steps=11", "--summary", (dir_ / "s.json").string()}));
    EXPECT_EQ(config_.steps, 11);  // later --set wins
    EXPECT_EQ(config_.summary.path, (dir_ / "s.json").string());
    EXPECT_EQ(command_line_.overrides,
              (std::vector<std::string>{"steps=9", "steps=11", "summary.path=" + (dir_ / "s.json").string()}));
}

TEST_F(Startup, ConfigFlagNamesAnotherFile) {
    const std::string other = (dir_ / "other.json").string();
    std::ofstream(other) << R"({"steps": 3})";
    ASSERT_TRUE(load({"--config", other}));
    EXPECT_EQ(command_line_.config_path, other);
    EXPECT_EQ(config_.steps, 3);
    expect_invalid_argument([&] { load({"--config", (dir_ / "missing.json").string()}); }, {"missing.json"});
}

// Precedence: --set > MINIPIPE_COMM_TIMEOUT_S > the file > the default.
TEST_F(Startup, EnvironmentSitsBetweenTheFileAndSet) {
    ASSERT_TRUE(load({}));
    EXPECT_DOUBLE_EQ(config_.comm.timeout_s, 40.0);
    setenv("MINIPIPE_COMM_TIMEOUT_S", "20", 1);
    ASSERT_TRUE(load({}));
    EXPECT_DOUBLE_EQ(config_.comm.timeout_s, 20.0);
    ASSERT_TRUE(load({"--set", "comm.timeout_s=30"}));
    EXPECT_DOUBLE_EQ(config_.comm.timeout_s, 30.0);
    setenv("MINIPIPE_COMM_TIMEOUT_S", "soon", 1);
    expect_invalid_argument([&] { load({}); }, {"MINIPIPE_COMM_TIMEOUT_S='soon'"});
}

TEST_F(Startup, BadArgumentsAreNamed) {
    expect_invalid_argument([&] { load({"--bogus"}); }, {"trainer: unknown argument '--bogus'", "--help"});
    expect_invalid_argument([&] { load({"--set"}); }, {"trainer: --set needs a value"});
    expect_invalid_argument([&] { load({"--set", "stpes=3"}); }, {"stpes"});
    expect_invalid_argument([&] { load({"--colour", "red"}); }, {"unknown argument '--colour'"});  // not this program's
}

TEST_F(Startup, ExtraFlagsDefaultGivenAndChecked) {
    ASSERT_TRUE(load({}, 0, {kColourFlag}));
    EXPECT_EQ(command_line_.extra.at("--colour"), "red");
    ASSERT_TRUE(load({"--colour", "blue"}, 0, {kColourFlag}));
    EXPECT_EQ(command_line_.extra.at("--colour"), "blue");
    expect_invalid_argument([&] { load({"--colour", "green"}, 0, {kColourFlag}); }, {"'green' is not red or blue"});
    expect_invalid_argument([&] { load({"--colour"}, 0, {kColourFlag}); }, {"--colour needs a value"});
}

TEST_F(Startup, HelpIsPrintedByRankZeroOnlyAndStopsTheRun) {
    ::testing::internal::CaptureStdout();
    EXPECT_FALSE(load({"--set", "steps=3", "--help"}, 1, {kColourFlag}));
    EXPECT_EQ(::testing::internal::GetCapturedStdout(), "");
    ::testing::internal::CaptureStdout();
    EXPECT_FALSE(load({"-h", "--bogus"}, 0, {kColourFlag}));  // --help wins over what follows it
    const std::string printed = ::testing::internal::GetCapturedStdout();
    EXPECT_EQ(printed, trainer_usage("trainer", "A test trainer.", config_path_.c_str(), {kColourFlag}));
}

TEST(StartupUsage, NamesTheProgramItsFlagsAndEveryConfigKey) {
    const std::string usage = trainer_usage("trainer", "A test trainer.", "configs/x.json", {kColourFlag});
    EXPECT_EQ(usage.rfind("usage: mpirun -np N trainer [--config FILE] [--set key=value ...] [--summary FILE] "
                          "[--colour NAME]\nA test trainer.\n",
                          0),
              0u)
        << usage;
    EXPECT_NE(usage.find("(default: configs/x.json)"), std::string::npos);
    EXPECT_NE(usage.find("  --colour NAME     a colour to check (default: red)\n"), std::string::npos) << usage;
    EXPECT_NE(usage.find("\nconfig keys:\n" + config_help()), std::string::npos);
}

// checkpoint.dir is written at the end whenever it is set (the final checkpoint, model.safetensors),
// so it is checked at start-up whenever it is set, not only with checkpoint.every or resume.
TEST_F(Startup, OutputPathsAreCheckedWhenSet) {
    ASSERT_TRUE(load({"--set", "checkpoint.dir=" + (dir_ / "new" / "ckpt").string()}));  // missing levels are made
    const std::string file = (dir_ / "a_file").string();
    std::ofstream(file) << "x";
    const std::string under_file = file + "/ckpt";  // no directory can be made there, even by root
    expect_invalid_argument([&] { load({"--set", "checkpoint.every=0", "--set", "checkpoint.dir=" + under_file}); },
                            {"checkpoint.dir '" + under_file + "'", "cannot write there", "is not a directory"});
    expect_invalid_argument([&] { load({"--set", "checkpoint.dir=" + file}); },
                            {"checkpoint.dir '" + file + "' is not a directory"});
    expect_invalid_argument([&] { load({"--set", "summary.path=" + (dir_ / "no" / "s.json").string()}); },
                            {"summary.path", "does not exist"});
    expect_invalid_argument([&] { load({"--set", "trace.path=" + dir_.string()}); },
                            {"trace.path", "is a directory, not a file"});
    // Only world rank 0 writes the outputs, so only it checks them.
    EXPECT_TRUE(load({"--set", "checkpoint.dir=" + under_file}, 1));
}

TEST_F(Startup, CheckpointDirIsCheckedWithoutEveryOrResume) {
    const std::string file = (dir_ / "a_file").string();
    std::ofstream(file) << "x";
    TrainConfig config = parse_config_text("{}", "run.json", {"checkpoint.dir=" + file + "/ckpt"}, 1);
    ASSERT_EQ(config.checkpoint.every, 0);
    ASSERT_FALSE(config.checkpoint.resume);
    expect_invalid_argument([&] { check_output_paths(config); }, {"checkpoint.dir '" + file + "/ckpt'"});
    config.checkpoint.dir.clear();
    check_output_paths(config);  // nothing set: nothing to check
}

// ---------------------------------------------------------------- the ranks' verdicts

TEST(StartVerdicts, ReadyOrHelpOnEveryRank) {
    EXPECT_FALSE(judge_start_verdicts({"", "", ""}, ""));
    EXPECT_TRUE(judge_start_verdicts({kAskedForHelp, kAskedForHelp}, kAskedForHelp));
}

TEST(StartVerdicts, AFailedRankStopsEveryRankWithItsCause) {
    const std::vector<std::string> verdicts = {"", "bad key 'x'", "other failure"};
    // The ranks that did not fail name the first rank that did; a failed rank says its own error.
    expect_invalid_argument([&] { judge_start_verdicts(verdicts, ""); }, {"rank 1 could not start: bad key 'x'"});
    expect_invalid_argument([&] { judge_start_verdicts(verdicts, "other failure"); }, {"other failure"});
    // A failure outweighs --help elsewhere.
    expect_invalid_argument([&] { judge_start_verdicts({kAskedForHelp, "broken"}, kAskedForHelp); },
                            {"rank 1 could not start: broken"});
}

TEST(StartVerdicts, HelpOnSomeRanksOnly) {
    expect_invalid_argument([&] { judge_start_verdicts({"", kAskedForHelp, ""}, ""); },
                            {"rank 1 was given --help and the others were not"});
}

TEST(StartVerdicts, ConfigsMustAgreeKeyByKey) {
    const std::string base = to_json(parse_config_text("{}", "a", {"seed=1337"}, 2)).dump();
    const std::string other = to_json(parse_config_text("{}", "b", {"seed=7"}, 2)).dump();
    require_same_configs({base, base});
    expect_invalid_argument([&] { require_same_configs({base, other}); },
                            {"rank 1 differs from rank 0 in seed (rank 1: 7, rank 0: 1337)",
                             "MINIPIPE_COMM_TIMEOUT_S"});
}

TEST(StartVerdicts, ExtraFlagsMustAgree) {
    EXPECT_EQ(extra_flags_text({}), "");
    EXPECT_EQ(extra_flags_text({{"--schedules", "gpipe,1f1b"}, {"--colour", "red"}}),
              "--colour red --schedules gpipe,1f1b");
    require_same_arguments({"--colour red", "--colour red"});
    expect_invalid_argument([&] { require_same_arguments({"--colour red", "--colour red", "--colour blue"}); },
                            {"rank 2 has '--colour blue', rank 0 has '--colour red'"});
}
