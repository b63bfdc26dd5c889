// The shared main of the trainer examples: MPI start-up, the command line (--config FILE,
// --set key=value ..., --summary FILE, --help), the config validated identically on every rank,
// the communicator the config asks for, then the example's body. Every error is printed on every
// rank with its rank number, and the exit status is non-zero.
#pragma once

#include <cstdio>
#include <cstring>
#include <algorithm>
#include <functional>
#include <thread>
#include <string>
#include <vector>

#include "comm/make_communicator.h"
#include "comm/mpi_runtime.h"
#include "pipeline/config.h"
#include "tensor/device_context.h"

namespace mp::examples {

struct TrainerCommandLine {
    std::string config_path;
    std::vector<std::string> overrides;
};

// The body: gets the validated config, the world communicator and this rank's GPU (-1: none).
using TrainerBody = std::function<int(const pipeline::TrainConfig&, comm::Communicator&, int gpu,
                                      const TrainerCommandLine&)>;

inline void print_trainer_usage(const char* program, const char* summary, const char* default_config) {
    std::printf(
        "usage: mpirun -np N %s [--config FILE] [--set key=value ...] [--summary FILE]\n%s\n\n"
        "  --config FILE     the run's JSON config (default: %s)\n"
        "  --set key=value   override one key, e.g. --set pipeline.schedule=gpipe (repeatable)\n"
        "  --summary FILE    write a JSON summary of the run (same as --set summary.path=FILE)\n"
        "  --help            this text\n\nconfig keys:\n%s",
        program, summary, default_config, pipeline::config_help().c_str());
}

inline int trainer_main(int argc, char** argv, const char* program, const char* summary, const char* default_config,
                        const TrainerBody& body) {
    comm::MpiRuntime mpi(&argc, &argv);
    try {
        TrainerCommandLine command_line{default_config, {}};
        for (int i = 1; i < argc; ++i) {
            std::string arg = argv[i];
            auto value = [&](const char* flag) -> std::string {
                if (i + 1 >= argc) throw std::invalid_argument(std::string(program) + ": " + flag + " needs a value");
                return argv[++i];
            };
            if (arg == "--help" || arg == "-h") {
                if (mpi.world_rank() == 0) print_trainer_usage(program, summary, default_config);
                return 0;
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
        // Ranks sharing this machine share its cores.
        int cores = static_cast<int>(std::thread::hardware_concurrency());
        set_cpu_threads(std::max(1, cores / std::max(1, mpi.local_size())));
        pipeline::TrainConfig config = pipeline::load_config(command_line.config_path, command_line.overrides, mpi.world_size());
        comm::CommOptions options;
        options.backend = comm::parse_backend(config.comm.backend);
        options.timeout_seconds = config.comm.timeout_s;
        std::unique_ptr<comm::Communicator> world = comm::make_communicator(options);
        return body(config, *world, mpi.gpu(), command_line);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "[rank %d] %s: error: %s\n", mpi.world_rank(), program, e.what());
        std::fflush(stderr);
        return 1;
    }
}

}  // namespace mp::examples
