// Trainer start-up without MPI: the command-line parser and its --help text (from the same flags
// and the config key table), the config load, and the judgements of the ranks' gathered verdicts,
// configs and flags that agree_on_start (train/start_agreement.cpp) applies.
#include "train/startup.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "base/error.h"
#include "train/output_paths.h"

namespace mp::train {

std::string trainer_usage(const char* program, const char* summary, const char* default_config,
                          const std::vector<ExtraFlag>& extra_flags) {
    std::string extra_usage, extra_lines;
    for (const ExtraFlag& flag : extra_flags) {
        extra_usage += str(" [", flag.name, " ", flag.value_name, "]");
        std::string left = flag.name + " " + flag.value_name;
        extra_lines += str("  ", left, std::string(left.size() < 18 ? 18 - left.size() : 1, ' '), flag.help,
                           " (default: ", flag.default_value, ")\n");
    }
    return str("usage: mpirun -np N ", program, " [--config FILE] [--set key=value ...] [--summary FILE]", extra_usage,
               "\n", summary, "\n\n",
               "  --config FILE     the run's JSON config (default: ", default_config, ")\n",
               "  --set key=value   override one key, e.g. --set pipeline.schedule=gpipe (repeatable)\n",
               "  --summary FILE    write a JSON summary of the run (same as --set summary.path=FILE)\n",
               extra_lines,
               "  --help            this text\n\nconfig keys:\n", config_help());
}

bool load_trainer_config(int argc, char** argv, const char* program, const char* summary,
                         const char* default_config, int world_rank, int world_size,
                         TrainerCommandLine& command_line, TrainConfig& config,
                         const std::vector<ExtraFlag>& extra_flags) {
    command_line = TrainerCommandLine{default_config, {}, {}};
    for (const ExtraFlag& flag : extra_flags) command_line.extra[flag.name] = flag.default_value;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&](const char* flag) -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(std::string(program) + ": " + flag + " needs a value");
            return argv[++i];
        };
        const auto extra = std::find_if(extra_flags.begin(), extra_flags.end(),
                                        [&](const ExtraFlag& flag) { return flag.name == arg; });
        if (arg == "--help" || arg == "-h") {
            if (world_rank == 0) {
                std::fputs(trainer_usage(program, summary, default_config, extra_flags).c_str(), stdout);
                std::fflush(stdout);
            }
            return false;
        } else if (extra != extra_flags.end()) {
            command_line.extra[extra->name] = value(extra->name.c_str());
        } else if (arg == "--config") {
            command_line.config_path = value("--config");
        } else if (arg == "--set") {
            command_line.overrides.push_back(value("--set"));
        } else if (arg == "--summary") {
            command_line.overrides.push_back("summary.path=" + value("--summary"));
        } else {
            throw std::invalid_argument(std::string(program) + ": unknown argument '" + arg + "' (see --help)");
        }
    }
    for (const ExtraFlag& flag : extra_flags)
        if (flag.check) flag.check(command_line.extra.at(flag.name));
    config = load_config(command_line.config_path, with_environment_overrides(command_line.overrides), world_size);
    if (world_rank == 0) check_output_paths(config);  // world rank 0 writes them
    return true;
}

bool judge_start_verdicts(const std::vector<std::string>& verdicts, const std::string& local_verdict) {
    int failed = -1, asked_for_help = -1;  // the first rank of each kind
    for (size_t r = 0; r < verdicts.size(); ++r) {
        if (verdicts[r] == kAskedForHelp) asked_for_help = asked_for_help < 0 ? static_cast<int>(r) : asked_for_help;
        else if (!verdicts[r].empty() && failed < 0) failed = static_cast<int>(r);
    }
    if (failed >= 0) {
        if (!local_verdict.empty() && local_verdict != kAskedForHelp) throw std::invalid_argument(local_verdict);
        throw std::invalid_argument(
            str("rank ", failed, " could not start: ", verdicts[static_cast<size_t>(failed)]));
    }
    if (asked_for_help < 0) return false;
    if (std::count(verdicts.begin(), verdicts.end(), kAskedForHelp) == static_cast<long>(verdicts.size())) return true;
    throw std::invalid_argument(str("rank ", asked_for_help, " was given --help and the others were not: give every "
                                    "rank the same arguments"));
}

void require_same_configs(const std::vector<std::string>& config_texts) {
    const int ranks = static_cast<int>(config_texts.size());
    for (size_t r = 0; r < config_texts.size(); ++r) {
        if (config_texts[r] == config_texts[0]) continue;
        // Every rank compares rank r with rank 0, so all name the same keys.
        const TrainConfig rank_zero = parse_config_text(config_texts[0], "rank 0's config", {}, ranks);
        const TrainConfig rank_r = parse_config_text(config_texts[r], str("rank ", r, "'s config"), {}, ranks);
        std::string keys;
        for (const std::string& difference : config_differences(rank_r, str("rank ", r), rank_zero, "rank 0"))
            keys += (keys.empty() ? "" : ", ") + difference;
        throw std::invalid_argument(str("the ranks run different configurations: rank ", r, " differs from rank 0 in ",
                                        keys, "; every rank must get the same config file, --set overrides and "
                                        "MINIPIPE_COMM_TIMEOUT_S"));
    }
}

std::string extra_flags_text(const std::map<std::string, std::string>& extra) {
    std::string text;
    for (const auto& [name, value] : extra) text += (text.empty() ? "" : " ") + name + " " + value;
    return text;
}

void require_same_arguments(const std::vector<std::string>& texts) {
    for (size_t r = 0; r < texts.size(); ++r)
        if (texts[r] != texts[0])
            throw std::invalid_argument(str("the ranks were given different arguments: rank ", r, " has '", texts[r],
                                            "', rank 0 has '", texts[0], "'; give every rank the same arguments"));
}

}  // namespace mp::train
