// The shared main of the trainer examples: MPI, the start-up every rank agrees on (train/startup.h,
// train/start_agreement.h), threads, the communicator, then the example's body; an error on one rank
// stops every rank at once (at start-up by agreement, later by MPI_Abort) with a non-zero status.
#pragma once

#include <algorithm>
#include <cstdio>
#include <functional>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "comm/agreement.h"
#include "comm/make_communicator.h"
#include "comm/mpi_runtime.h"
#include "tensor/device_context.h"
#include "train/config.h"
#include "train/start_agreement.h"
#include "train/startup.h"

namespace mp::examples {

// The body: gets the validated config, the world communicator and this rank's GPU (-1: none).
using TrainerBody = std::function<int(const train::TrainConfig&, comm::Communicator&, int gpu,
                                      const train::TrainerCommandLine&)>;

inline int trainer_main(int argc, char** argv, const char* program, const char* summary, const char* default_config,
                        const TrainerBody& body, const std::vector<train::ExtraFlag>& extra_flags = {}) {
    comm::MpiRuntime mpi(&argc, &argv);
    auto print_error = [&](const std::string& message) {
        std::fprintf(stderr, "[rank %d] %s: error: %s\n", mpi.world_rank(), program, message.c_str());
        std::fflush(stderr);
    };
    // Start-up: every rank reaches the agreement whether its own start failed or not, so an error
    // on one rank stops every rank at once with that rank's cause.
    train::TrainerCommandLine command_line;
    train::TrainConfig config;
    std::string local_verdict;
    double timeout_s = 300.0;
    bool run = true;
    try {
        timeout_s = comm::default_timeout_seconds();
        run = train::load_trainer_config(argc, argv, program, summary, default_config, mpi.world_rank(),
                                         mpi.world_size(), command_line, config, extra_flags);
        if (run) timeout_s = config.comm.timeout_s;
    } catch (const std::exception& e) {
        local_verdict = e.what();
    }
    if (!run && local_verdict.empty()) local_verdict = train::kAskedForHelp;
    try {
        train::agree_on_start(local_verdict, config, timeout_s, command_line.extra);
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
