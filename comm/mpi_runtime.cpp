// MpiRuntime: MPI_Init_thread / MPI_Finalize, the local rank from the host names of all
// ranks (one MPI_Allgather at start-up), and the GPU binding local_rank % device_count.
#include "comm/mpi_runtime.h"

#include <mpi.h>

#include <cstring>
#include <vector>

#include "comm/check.h"
#include "tensor/device.h"
#include "tensor/device_context.h"

namespace mp::comm {

namespace {
MpiRuntime* g_runtime = nullptr;
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
    if (g_runtime != nullptr) throw RuntimeError("MpiRuntime: one already exists in this process");
    int initialized = 0;
    MPI_CHECK(MPI_Initialized(&initialized));
    if (!initialized) {
        int provided = 0;
        // MULTIPLE when available: comm/ calls MPI from the calling thread only, but the
        // timeout path may call MPI_Abort from wherever the wait happens.
        MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
        owns_mpi_ = true;
    }
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size_));

    // Local rank = how many lower ranks run on the same host.
    char name[MPI_MAX_PROCESSOR_NAME] = {0};
    int name_length = 0;
    MPI_CHECK(MPI_Get_processor_name(name, &name_length));
    host_ = std::string(name, static_cast<size_t>(name_length));
    std::vector<char> all_names(static_cast<size_t>(world_size_) * MPI_MAX_PROCESSOR_NAME, 0);
    MPI_CHECK(MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all_names.data(), MPI_MAX_PROCESSOR_NAME,
                            MPI_CHAR, MPI_COMM_WORLD));
    local_rank_ = 0;
    local_size_ = 0;
    for (int r = 0; r < world_size_; ++r) {
        const char* other = all_names.data() + static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME;
        if (std::strncmp(other, name, MPI_MAX_PROCESSOR_NAME) != 0) continue;
        if (r < world_rank_) ++local_rank_;
        ++local_size_;
    }

    int device_count = cuda_device_count();
    if (device_count > 0) {
        gpu_ = local_rank_ % device_count;
        set_current_device(gpu_);
    }
    g_runtime = this;
}

MpiRuntime::~MpiRuntime() {
    g_runtime = nullptr;
    if (!owns_mpi_) return;
    int finalized = 0;
    if (MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Finalize();  // nothing to report to in a destructor
}

MpiRuntime& MpiRuntime::instance() {
    if (g_runtime == nullptr)
        throw RuntimeError("comm: MPI is not initialised; create an mp::comm::MpiRuntime at the start of main");
    return *g_runtime;
}

bool MpiRuntime::exists() { return g_runtime != nullptr; }

}  // namespace mp::comm
