// The shared main of the multi-rank GoogleTest binaries (under mpirun): MPI start-up, the MPI world
// communicator, rank 0 printing the report and the others only their failures (with their rank),
// and the fixture that fails a test on every rank when it failed on any.
#pragma once

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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

// The fixture of every multi-rank test: a test fails on every rank when it failed on any, so rank
// 0's report counts it, naming the ranks where it failed.
class AllRanksTest : public ::testing::Test {
  protected:
    void TearDown() override {
        int rank = 0, size = 1;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        int failed_here = HasFailure() ? 1 : 0;
        std::vector<int> failed(static_cast<size_t>(size), 0);
        ASSERT_EQ(MPI_Allgather(&failed_here, 1, MPI_INT, failed.data(), 1, MPI_INT, MPI_COMM_WORLD), MPI_SUCCESS);
        std::string others;
        for (int r = 0; r < size; ++r)
            if (failed[static_cast<size_t>(r)] && r != rank) others += (others.empty() ? "" : ", ") + std::to_string(r);
        if (!others.empty()) ADD_FAILURE() << "this test failed on rank(s) " << others << " (see their [rank r] lines)";
    }
};

// Runs every test with `world` set to an MPI-backend communicator over all ranks.
inline int run_multi_rank_tests(int argc, char** argv, const char* program,
                                std::unique_ptr<comm::Communicator>& world) {
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
