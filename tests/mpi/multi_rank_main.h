// The shared main of the multi-rank GoogleTest binaries (run under mpirun): MPI start-up, the
// MPI-backend world communicator the tests use, rank 0 printing the GoogleTest report, and
// every other rank printing only its own failures, prefixed with its rank.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <thread>

#include "comm/make_communicator.h"
#include "comm/mpi_runtime.h"
#include "tensor/device_context.h"

namespace mp::testing {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
  public:
    explicit RankFailurePrinter(int rank) : rank_(rank) {}
    void OnTestPartResult(const ::testing::TestPartResult& result) override {
        if (!result.failed()) return;
        std::fprintf(stderr, "[rank %d] %s:%d: %s\n", rank_, result.file_name() ? result.file_name() : "?",
                     result.line_number(), result.summary());
    }

  private:
    int rank_;
};

// Runs every test with `world` set to an MPI-backend communicator over all ranks.
inline int run_multi_rank_tests(int argc, char** argv, const char* program, std::unique_ptr<comm::Communicator>& world) {
    comm::MpiRuntime mpi(&argc, &argv);
    ::testing::InitGoogleTest(&argc, argv);
    // Ranks sharing this machine share its cores (oversubscribed OpenMP threads spin and crawl).
    int cores = static_cast<int>(std::thread::hardware_concurrency());
    set_cpu_threads(std::max(1, cores / std::max(1, mpi.local_size())));
    int status = 1;
    try {
        comm::CommOptions options;
        options.backend = comm::Backend::Mpi;  // the MPI backend, on every machine
        options.log_choice = false;
        world = comm::make_communicator(options);
        if (mpi.world_rank() != 0) {
            ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
            delete listeners.Release(listeners.default_result_printer());
            listeners.Append(new RankFailurePrinter(mpi.world_rank()));
        }
        status = RUN_ALL_TESTS();
        world.reset();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "[rank %d] %s: %s\n", mpi.world_rank(), program, e.what());
        status = 1;
    }
    return status;
}

}  // namespace mp::testing
