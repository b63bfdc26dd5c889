// The shared main of the trainer examples: MPI start-up, the command line (--config FILE,
// --set key=value ..., --summary FILE, --help), the environment (MINIPIPE_COMM_TIMEOUT_S) and the
// config, validated on every rank and then agreed on by all (an error on any rank, or ranks with
// different configs, stops every rank with the cause), the communicator the config asks for, then
// the example's body. An error in the body on one rank ends the whole job at once (MPI_Abort),
// naming that rank and its cause; the exit status is non-zero either way.
#pragma once

#include <cstdio>
#include <cstring>
#include <algorithm>
#include <functional>
#include <map>
#include <new>
#include <thread>
#include <string>
#include <vector>

#include "comm/agreement.h"
#include "comm/make_communicator.h"
#include "comm/mpi_runtime.h"
#include "train/config.h"
#include "train/output_paths.h"
#include "train/trainer.h"
#include "tensor/device_context.h"

namespace mp::examples {

// A flag of one example beyond the common ones (microbatch_sweep's --schedules): its value is
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

// The body: gets the validated config, the world communicator and this rank's GPU (-1: none).
using TrainerBody = std::function<int(const train::TrainConfig&, comm::Communicator&, int gpu,
                                      const TrainerCommandLine&)>;

inline void print_trainer_usage(const char* program, const char* summary, const char* default_config,
                                const std::vector<ExtraFlag>& extra_flags = {}) {
    std::string extra_usage, extra_lines;
    for (const ExtraFlag& flag : extra_flags) {
        extra_usage += str(" [", flag.name, " ", flag.value_name, "]");
        std::string left = flag.name + " " + flag.value_name;
        extra_lines += str("  ", left, std::string(left.size() < 18 ? 18 - left.size() : 1, ' '), flag.help,
                           " (default: ", flag.default_value, ")\n");
    }
    std::printf(
        "usage: mpirun -np N %s [--config FILE] [--set key=value ...] [--summary FILE]%s\n%s\n\n"
        "  --config FILE     the run's JSON config (default: %s)\n"
        "  --set key=value   override one key, e.g. --set pipeline.schedule=gpipe (repeatable)\n"
        "  --summary FILE    write a JSON summary of the run (same as --set summary.path=FILE)\n"
        "%s"
        "  --help            this text\n\nconfig keys:\n%s",
        program, extra_usage.c_str(), summary, default_config, extra_lines.c_str(), train::config_help().c_str());
}

// Start-up: the command line, the environment and the config file, into a validated config.
// Returns false for --help (printed by rank 0). Throws on any error.
inline bool load_trainer_config(int argc, char** argv, const char* program, const char* summary,
                                const char* default_config, int world_rank, int world_size,
                                TrainerCommandLine& command_line, train::TrainConfig& config,
                                const std::vector<ExtraFlag>& extra_flags = {}) {
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
            if (world_rank == 0) print_trainer_usage(program, summary, default_config, extra_flags);
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
    config = train::load_config(command_line.config_path, train::with_environment_overrides(command_line.overrides),
                                   world_size);
    if (world_rank == 0) train::check_output_paths(config);  // rank 0 writes them
    return true;
}

// Every rank's start-up verdict, gathered: the first rank that failed, with its error, makes every
// rank stop with that cause; then the ranks' resolved configs must agree key by key. Throws the
// same std::invalid_argument on every rank, or returns.
// The start-up verdict of a rank that was given --help: it prints the usage instead of running.
constexpr const char* kAskedForHelp = "--help";

inline void agree_on_start(const std::string& local_error, const train::TrainConfig& config, double timeout_s,
                           const std::map<std::string, std::string>& extra = {}) {
    std::vector<std::string> errors = comm::gather_texts(local_error, "the start-up check of every rank", timeout_s);
    int failed = -1, asked_for_help = -1;  // the first rank of each kind
    for (size_t r = 0; r < errors.size(); ++r) {
        if (errors[r] == kAskedForHelp) asked_for_help = asked_for_help < 0 ? static_cast<int>(r) : asked_for_help;
        else if (!errors[r].empty() && failed < 0) failed = static_cast<int>(r);
    }
    if (failed >= 0) {
        if (!local_error.empty() && local_error != kAskedForHelp) throw std::invalid_argument(local_error);
        throw std::invalid_argument(str("rank ", failed, " could not start: ", errors[static_cast<size_t>(failed)]));
    }
    if (asked_for_help >= 0) {
        if (std::count(errors.begin(), errors.end(), kAskedForHelp) == static_cast<long>(errors.size())) return;
        throw std::invalid_argument(str("rank ", asked_for_help, " was given --help and the others were not: give every "
                                        "rank the same arguments"));
    }
    std::vector<std::string> configs =
        comm::gather_texts(train::to_json(config).dump(), "the configuration check of every rank", timeout_s);
    for (size_t r = 0; r < configs.size(); ++r) {
        if (configs[r] == configs[0]) continue;
        // Every rank compares rank r with rank 0, so all name the same keys.
        train::TrainConfig rank_zero = train::parse_config_text(configs[0], "rank 0's config", {},
                                                                      static_cast<int>(configs.size()));
        train::TrainConfig rank_r = train::parse_config_text(configs[r], str("rank ", r, "'s config"), {},
                                                                   static_cast<int>(configs.size()));
        std::string keys;
        for (const std::string& difference : train::config_differences(rank_r, str("rank ", r), rank_zero, "rank 0"))
            keys += (keys.empty() ? "" : ", ") + difference;
        throw std::invalid_argument(str("the ranks run different configurations: rank ", r, " differs from rank 0 in ",
                                        keys, "; every rank must get the same config file, --set overrides and "
                                        "MINIPIPE_COMM_TIMEOUT_S"));
    }
    std::string extra_text;
    for (const auto& [name, value] : extra) extra_text += (extra_text.empty() ? "" : " ") + name + " " + value;
    std::vector<std::string> extras = comm::gather_texts(extra_text, "the command-line check of every rank", timeout_s);
    for (size_t r = 0; r < extras.size(); ++r)
        if (extras[r] != extras[0])
            throw std::invalid_argument(str("the ranks were given different arguments: rank ", r, " has '", extras[r],
                                            "', rank 0 has '", extras[0], "'; give every rank the same arguments"));
}

inline int trainer_main(int argc, char** argv, const char* program, const char* summary, const char* default_config,
                        const TrainerBody& body, const std::vector<ExtraFlag>& extra_flags = {}) {
    comm::MpiRuntime mpi(&argc, &argv);
    auto print_error = [&](const std::string& message) {
        std::fprintf(stderr, "[rank %d] %s: error: %s\n", mpi.world_rank(), program, message.c_str());
        std::fflush(stderr);
    };
    // Start-up: every rank reaches the agreement whether its own start failed or not, so an error
    // on one rank stops every rank at once with that rank's cause.
    TrainerCommandLine command_line;
    train::TrainConfig config;
    std::string local_error;
    double timeout_s = 300.0;
    bool run = true;
    try {
        timeout_s = comm::default_timeout_seconds();
        run = load_trainer_config(argc, argv, program, summary, default_config, mpi.world_rank(), mpi.world_size(),
                                  command_line, config, extra_flags);
        if (run) timeout_s = config.comm.timeout_s;
    } catch (const std::exception& e) {
        local_error = e.what();
    }
    if (!run && local_error.empty()) local_error = kAskedForHelp;
    try {
        agree_on_start(local_error, config, timeout_s, command_line.extra);
    } catch (const std::exception& e) {
        print_error(e.what());
        return 1;
    }
    if (!run) return 0;  // --help on every rank: rank 0 printed the usage
    // From here a rank that fails alone ends the whole job: the others would wait for it.
    try {
        // Ranks sharing this machine share its cores.
        int cores = static_cast<int>(std::thread::hardware_concurrency());
        set_cpu_threads(std::max(1, cores / std::max(1, mpi.local_size())));
        comm::CommOptions options;
        options.backend = config.comm.backend;
        options.timeout_seconds = config.comm.timeout_s;
        std::unique_ptr<comm::Communicator> world = comm::make_communicator(options);
        return body(config, *world, mpi.gpu(), command_line);
    } catch (const std::exception& e) {
        std::string message = e.what();
        if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr)  // say which sizes, not just "std::bad_alloc"
            message = str("out of host memory (std::bad_alloc) with model.kind ", name_of(config.model.kind),
                          ", vocab ", config.model.vocab, ", context ", config.model.context, ", channels ",
                          config.model.channels, ", layers ", config.model.layers, ", micro_batch_size ",
                          config.micro_batch_size,
                          ": use a smaller model or batch, or more stages");
        if (mpi.world_size() == 1) {
            print_error(message);
            return 1;
        }
        comm::abort_job(str(program, ": error: ", message));
    }
}

}  // namespace mp::examples
