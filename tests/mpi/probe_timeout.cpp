// The timeout path, run by tests/run_mpi_tests.sh under mpirun with MINIPIPE_COMM_TIMEOUT_S=3:
// rank 1 waits for a tensor that rank 0 never sends. The job must end within the timeout with
// a message naming the operation, peer, tag and bytes, and a non-zero exit status; the script
// checks all three. Reaching the end of main is the failure.
#include <chrono>
#include <cstdio>
#include <thread>

#include "comm/make_communicator.h"
#include "comm/mpi_runtime.h"

int main(int argc, char** argv) {
    mp::comm::MpiRuntime mpi(&argc, &argv);
    mp::comm::CommOptions options;
    options.backend = mp::comm::Backend::Mpi;
    std::unique_ptr<mp::comm::Communicator> world = mp::comm::make_communicator(options);
    if (world->size() < 2) {
        std::fprintf(stderr, "probe_timeout: needs at least 2 ranks\n");
        return 2;
    }
    if (world->rank() == 1) {
        mp::Tensor never_sent = mp::Tensor::empty({4, 8});
        world->recv(never_sent, 0, 7);  // must not return
        std::fprintf(stderr, "probe_timeout: recv returned although nothing was sent\n");
        return 1;
    }
    // The other ranks stay busy well past the timeout; rank 1's MPI_Abort must end them.
    std::this_thread::sleep_for(std::chrono::seconds(60));
    std::fprintf(stderr, "probe_timeout: rank %d was not aborted\n", world->rank());
    return 1;
}
