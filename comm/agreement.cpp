// gather_texts (lengths, then the bytes, both non-blocking behind the timed wait) and abort_job.
#include "comm/agreement.h"

#include <mpi.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <thread>

#include "comm/check.h"
#include "comm/mpi_runtime.h"
#include "comm/protocol.h"

namespace mp::comm {

std::vector<std::string> gather_texts(const std::string& local_text, const std::string& what, double timeout_seconds) {
    MpiRuntime& runtime = MpiRuntime::instance();
    const int size = runtime.world_size();
    MP_REQUIRE(local_text.size() <= static_cast<size_t>(INT_MAX / std::max(1, size)), "gather_texts: ",
               local_text.size(), " bytes from each of ", size, " ranks is more than one gather can carry");
    auto describe = [&](size_t) {
        return str(what, ": waiting for every rank of the job (", size, ") to arrive at start-up");
    };
    int length = static_cast<int>(local_text.size());
    std::vector<int> lengths(static_cast<size_t>(size), 0);
    std::vector<MPI_Request> request(1, MPI_REQUEST_NULL);
    MPI_CHECK(MPI_Iallgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD, &request[0]));
    detail::wait_all(request, timeout_seconds, describe);

    std::vector<int> offsets(static_cast<size_t>(size), 0);
    long long total = 0;
    for (int r = 0; r < size; ++r) {
        offsets[static_cast<size_t>(r)] = static_cast<int>(total);
        total += lengths[static_cast<size_t>(r)];
        MP_REQUIRE(total <= INT_MAX, "gather_texts: ", what, ": more than ", INT_MAX, " bytes in all");
    }
    std::vector<char> bytes(static_cast<size_t>(std::max<long long>(total, 1)));
    request[0] = MPI_REQUEST_NULL;
    MPI_CHECK(MPI_Iallgatherv(local_text.data(), length, MPI_CHAR, bytes.data(), lengths.data(), offsets.data(),
                              MPI_CHAR, MPI_COMM_WORLD, &request[0]));
    detail::wait_all(request, timeout_seconds, describe);

    std::vector<std::string> texts;
    for (int r = 0; r < size; ++r)
        texts.emplace_back(bytes.data() + offsets[static_cast<size_t>(r)], static_cast<size_t>(lengths[static_cast<size_t>(r)]));
    return texts;
}

void abort_job(const std::string& message, int exit_code) {
    int rank = -1;
    std::string host = "?";
    if (MpiRuntime::exists()) {
        rank = MpiRuntime::instance().world_rank();
        host = MpiRuntime::instance().host();
    }
    std::fprintf(stderr, "[rank %d] %s\n[rank %d] minipipe: rank %d (host %s) stops the whole job (MPI_Abort) so that the "
                 "other ranks do not wait for it\n", rank, message.c_str(), rank, rank, host.c_str());
    std::fflush(stderr);
    std::fflush(stdout);
    detail::run_abort_hooks();
    // Ranks that fail at the same moment (a collective error) get to print their own cause first.
    std::this_thread::sleep_for(std::chrono::seconds(1));
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::abort();  // MPI_Abort does not return
}

}  // namespace mp::comm
