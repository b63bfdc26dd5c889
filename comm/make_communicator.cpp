// The backend decision (gather every rank's host and GPU, then one pure function decides, so
// every rank reaches the same answer or throws the same error) and the factory that builds
// the chosen Communicator.
#include "comm/make_communicator.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>

#include "comm/check.h"
#include "comm/mpi_communicator.h"
#include "comm/mpi_runtime.h"
#include "comm/protocol.h"

#if MP_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#endif
#if MP_NCCL && MP_CUDA
#include "comm/nccl_communicator.h"
#endif

namespace mp::comm {

namespace {

// RankDevice in a fixed-size form for MPI_Allgather.
struct PackedRankDevice {
    char host[MPI_MAX_PROCESSOR_NAME];
    char gpu_uuid[64];
    int gpu;
};

std::string rank_list(const std::vector<int>& ranks) {
    std::string out;
    for (size_t i = 0; i < ranks.size(); ++i)
        out += str(i == 0 ? "" : (i + 1 == ranks.size() ? " and " : ", "), ranks[i]);
    return out;
}

}  // namespace

RankDevice this_rank_device() {
    MpiRuntime& runtime = MpiRuntime::instance();
    RankDevice device;
    device.host = runtime.host();
    device.gpu = runtime.gpu();
#if MP_CUDA
    if (device.gpu >= 0) {
        cudaDeviceProp properties;
        CUDA_CHECK(cudaGetDeviceProperties(&properties, device.gpu));
        static const char* hex = "0123456789abcdef";
        for (int i = 0; i < 16; ++i) {
            unsigned char byte = static_cast<unsigned char>(properties.uuid.bytes[i]);
            device.gpu_uuid += hex[byte >> 4];
            device.gpu_uuid += hex[byte & 15];
        }
    }
#endif
    return device;
}

BackendChoice decide_backend(Backend requested, const std::vector<RankDevice>& ranks, bool nccl_built) {
    if (requested == Backend::Mpi) return {Backend::Mpi, "requested"};

    std::vector<int> without_gpu;
    // (host, GPU identity) -> the ranks bound to it
    std::map<std::pair<std::string, std::string>, std::vector<int>> by_device;
    for (size_t r = 0; r < ranks.size(); ++r) {
        const RankDevice& d = ranks[r];
        if (d.gpu < 0) {
            without_gpu.push_back(static_cast<int>(r));
            continue;
        }
        std::string identity = d.gpu_uuid.empty() ? str("cuda:", d.gpu) : d.gpu_uuid;
        by_device[{d.host, identity}].push_back(static_cast<int>(r));
    }
    std::string sharing;  // the first shared device, named
    for (const auto& entry : by_device) {
        if (entry.second.size() < 2) continue;
        const RankDevice& first = ranks[static_cast<size_t>(entry.second[0])];
        sharing = str("ranks ", rank_list(entry.second), " share GPU cuda:", first.gpu,
                      first.gpu_uuid.empty() ? "" : str(" (uuid ", first.gpu_uuid, ")"), " on host ", first.host);
        break;
    }
    std::string no_gpu = without_gpu.size() == ranks.size()
                             ? std::string("no rank has a GPU")
                             : str("rank", without_gpu.size() > 1 ? "s " : " ", rank_list(without_gpu), " ",
                                   without_gpu.size() > 1 ? "have" : "has", " no GPU");

    if (requested == Backend::Auto) {
        if (!without_gpu.empty()) return {Backend::Mpi, no_gpu + ": tensors travel over MPI"};
        if (!sharing.empty()) return {Backend::Mpi, sharing + ": NCCL needs one GPU per rank, so MPI (pinned host staging)"};
        if (!nccl_built) return {Backend::Mpi, "every rank owns a distinct GPU but this build has no NCCL (HAVE_NCCL=0)"};
        return {Backend::Nccl, str("every rank owns a distinct GPU (", ranks.size(), " ranks)")};
    }
    // requested == Nccl
    if (!nccl_built)
        throw RuntimeError("comm backend nccl: this build of minipipe has no NCCL (built with HAVE_NCCL=0, CUDA=0 or "
                           "without nccl.h / libnccl); use backend mpi or auto");
    if (!without_gpu.empty()) throw RuntimeError(str("comm backend nccl: ", no_gpu, "; use backend mpi or auto"));
    if (!sharing.empty())
        throw RuntimeError(str("comm backend nccl: ", sharing, ". NCCL needs one GPU per rank (it would stop with ",
                               "'Duplicate GPU detected' / ncclInvalidUsage); use backend mpi or auto, or start at ",
                               "most one rank per GPU"));
    return {Backend::Nccl, "requested"};
}

std::unique_ptr<Communicator> make_communicator(const CommOptions& options) {
    CommOptions world_options = options;
    const char* from_env = std::getenv("MINIPIPE_COMM_BACKEND");
    if (options.backend == Backend::Auto && from_env != nullptr && *from_env != '\0')
        world_options.backend = parse_enum<Backend>(from_env, "MINIPIPE_COMM_BACKEND");
    return make_communicator(MPI_COMM_WORLD, world_options);
}

std::unique_ptr<Communicator> make_communicator(MPI_Comm comm, const CommOptions& options) {
    MpiRuntime::instance();  // throws when MPI is not initialised
    double timeout = options.timeout_seconds > 0 ? options.timeout_seconds : default_timeout_seconds();
    int rank = 0, size = 1;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    MPI_CHECK(MPI_Comm_size(comm, &size));

    RankDevice mine = this_rank_device();
    PackedRankDevice packed;
    std::memset(&packed, 0, sizeof(packed));
    std::strncpy(packed.host, mine.host.c_str(), sizeof(packed.host) - 1);
    std::strncpy(packed.gpu_uuid, mine.gpu_uuid.c_str(), sizeof(packed.gpu_uuid) - 1);
    packed.gpu = mine.gpu;
    std::vector<PackedRankDevice> gathered(static_cast<size_t>(size));
    // Non-blocking behind the timed wait: a rank that never arrives is reported, not waited for forever.
    std::vector<MPI_Request> request(1, MPI_REQUEST_NULL);
    MPI_CHECK(MPI_Iallgather(&packed, sizeof(packed), MPI_BYTE, gathered.data(), sizeof(packed), MPI_BYTE, comm,
                             &request[0]));
    detail::wait_all(request, timeout, [&](size_t) {
        return str("the communicator's start-up (every rank's host and GPU, group of ", size, " ranks)");
    });
    std::vector<RankDevice> ranks;
    for (const PackedRankDevice& p : gathered) ranks.push_back(RankDevice{p.host, p.gpu, p.gpu_uuid});

    BackendChoice choice = decide_backend(options.backend, ranks, MP_NCCL && MP_CUDA);
    if (options.log_choice && rank == 0) {
        std::printf("minipipe comm: backend %s for %d rank%s (%s%s)\n", name_of(choice.backend), size,
                    size == 1 ? "" : "s", options.backend == Backend::Auto ? "auto: " : "", choice.reason.c_str());
        std::fflush(stdout);
    }
#if MP_NCCL && MP_CUDA
    if (choice.backend == Backend::Nccl) return std::make_unique<NcclCommunicator>(comm, mine.gpu, timeout);
#endif
    return std::make_unique<MpiCommunicator>(comm, timeout);
}

std::unique_ptr<Communicator> split_communicator(MPI_Comm parent, int rank, int color, std::optional<int> key,
                                                 Backend backend, double timeout_seconds) {
    // MPI_Comm_split has no non-blocking form: a timed barrier first makes sure every rank has
    // arrived, so the split itself cannot wait for a rank that never comes.
    std::vector<MPI_Request> arrived(1, MPI_REQUEST_NULL);
    MPI_CHECK(MPI_Ibarrier(parent, &arrived[0]));
    detail::wait_all(arrived, timeout_seconds, [&](size_t) {
        return str("split(color ", color, "): waiting for every rank of the group to call split");
    });
    MPI_Comm sub = MPI_COMM_NULL;
    MPI_CHECK(MPI_Comm_split(parent, color < 0 ? MPI_UNDEFINED : color, key.value_or(rank), &sub));
    if (sub == MPI_COMM_NULL) return nullptr;
    CommOptions options;
    options.backend = backend;
    options.timeout_seconds = timeout_seconds;
    options.log_choice = false;
    std::unique_ptr<Communicator> result;
    try {
        result = make_communicator(sub, options);
    } catch (...) {
        MPI_Comm_free(&sub);
        throw;
    }
    MPI_CHECK(MPI_Comm_free(&sub));
    return result;
}

}  // namespace mp::comm
