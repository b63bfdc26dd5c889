// Choosing and building a Communicator: `auto` picks NCCL when every rank of the group owns a
// distinct GPU and MPI otherwise (CPU only, or several ranks on one GPU); `nccl` on a shared GPU
// fails on every rank with the ranks and the device named, never a hang.
#pragma once

#include <mpi.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace mp::comm {

struct CommOptions {
    Backend backend = Backend::Auto;
    double timeout_seconds = 0;  // <= 0: default_timeout_seconds() (MINIPIPE_COMM_TIMEOUT_S or 300)
    bool log_choice = true;      // rank 0 prints the backend and the reason
};

// The communicator over all ranks of the job (MPI_COMM_WORLD). Collective; needs a live
// MpiRuntime. Throws mp::RuntimeError on every rank when the asked-for backend cannot work.
std::unique_ptr<Communicator> make_communicator(const CommOptions& options = {});
// The same over any MPI communicator (used by split).
std::unique_ptr<Communicator> make_communicator(MPI_Comm comm, const CommOptions& options);

// The body of every backend's split(): MPI_Comm_split of `parent` (a negative color joins no
// group: nullptr), then a communicator of `backend` over the sub-group with the same timeout.
std::unique_ptr<Communicator> split_communicator(MPI_Comm parent, int rank, int color, std::optional<int> key,
                                                 Backend backend, double timeout_seconds);

// What one rank brings to the decision (gathered from every rank of the group).
struct RankDevice {
    std::string host;
    int gpu = -1;          // the bound GPU index, -1 when none
    std::string gpu_uuid;  // tells GPUs apart across CUDA_VISIBLE_DEVICES remappings
};

struct BackendChoice {
    Backend backend = Backend::Mpi;
    std::string reason;
};

// The decision itself, a pure function (tested with made-up device lists): Auto -> Nccl or
// Mpi with the reason; Nccl when impossible -> throws mp::RuntimeError naming the ranks that
// share a device (or the rank without one, or the build without NCCL).
BackendChoice decide_backend(Backend requested, const std::vector<RankDevice>& ranks, bool nccl_built);

// This rank's RankDevice (host name, bound GPU, its UUID).
RankDevice this_rank_device();

}  // namespace mp::comm
