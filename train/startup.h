// A trainer's start-up without MPI: the command line (--config, --set, --summary, --help, the
// program's own flags), the environment and the config file into one validated config, and the
// judgements of the ranks' gathered verdicts, configs and flags (train/start_agreement.h gathers).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "train/config.h"

namespace mp::train {

// A flag of one program beyond the common ones (microbatch_sweep's --schedules): its value is
// checked at start-up (check throws std::invalid_argument naming the problem) and must be the same
// on every rank.
struct ExtraFlag {
    std::string name;           // "--schedules"
    std::string value_name;     // "LIST"
    std::string help;           // one line
    std::string default_value;
    std::function<void(const std::string& value)> check;
};

struct TrainerCommandLine {
    std::string config_path;
    std::vector<std::string> overrides;
    std::map<std::string, std::string> extra;  // every ExtraFlag by name, given or default
};

// The --help text: the usage line, the common flags, the program's own, then every config key.
std::string trainer_usage(const char* program, const char* summary, const char* default_config,
                          const std::vector<ExtraFlag>& extra_flags = {});

// The command line, the environment (MINIPIPE_COMM_TIMEOUT_S) and the config file, into a validated
// `config` for `world_size` ranks; world rank 0 (which writes them) also checks the output paths.
// Returns false for --help (printed by world rank 0), true otherwise. Throws std::invalid_argument
// naming the problem: an unknown or incomplete argument, a bad flag value, a bad config.
bool load_trainer_config(int argc, char** argv, const char* program, const char* summary,
                         const char* default_config, int world_rank, int world_size,
                         TrainerCommandLine& command_line, TrainConfig& config,
                         const std::vector<ExtraFlag>& extra_flags = {});

// The start-up verdict of a rank that was given --help: it prints the usage instead of running.
constexpr const char* kAskedForHelp = "--help";

// Judges every rank's start-up verdict, in rank order ("" = ready, kAskedForHelp, else its error),
// from the rank whose verdict is `local_verdict`: when a rank failed, throws std::invalid_argument
// with this rank's own error if it failed, else "rank r could not start: <the first failure>";
// when only some ranks were given --help, throws naming the first. Returns true when every rank
// was given --help (nothing to run), false when every rank is ready.
bool judge_start_verdicts(const std::vector<std::string>& verdicts, const std::string& local_verdict);

// Every rank's resolved config as to_json(config).dump(), in rank order: throws
// std::invalid_argument naming the first rank that differs from rank 0 and the keys that differ.
void require_same_configs(const std::vector<std::string>& config_texts);

// The program's own flags as one line ("--schedules gpipe,1f1b"), what the ranks compare.
std::string extra_flags_text(const std::map<std::string, std::string>& extra);
// Every rank's extra_flags_text, in rank order: throws std::invalid_argument naming the first rank
// whose flags differ from rank 0's.
void require_same_arguments(const std::vector<std::string>& texts);

}  // namespace mp::train
