// MPI start-up and shut-down as an object (MPI_Init_thread in the constructor, MPI_Finalize in
// the destructor), plus what each rank learns at start: world rank and size, its local rank
// among the ranks of the same host (from host names), and the GPU it binds to.
#pragma once

#include <string>

namespace mp::comm {

class MpiRuntime {
  public:
    // Initialises MPI (unless something else already did, then it only reads the world), sets
    // MPI_ERRORS_RETURN on MPI_COMM_WORLD so comm/ sees error codes, derives the local rank by
    // comparing host names (works on one node or many, with or without OMPI_* variables) and,
    // when GPUs are visible, binds this rank to GPU local_rank % device_count.
    MpiRuntime(int* argc, char*** argv);
    ~MpiRuntime();  // MPI_Finalize, if this object initialised MPI
    MpiRuntime(const MpiRuntime&) = delete;
    MpiRuntime& operator=(const MpiRuntime&) = delete;

    int world_rank() const { return world_rank_; }
    int world_size() const { return world_size_; }
    int local_rank() const { return local_rank_; }  // among the ranks on this host
    int local_size() const { return local_size_; }
    const std::string& host() const { return host_; }
    int gpu() const { return gpu_; }  // the bound GPU, or -1 when none is visible

    // The live runtime; throws mp::RuntimeError when no MpiRuntime exists.
    static MpiRuntime& instance();
    static bool exists();

  private:
    bool owns_mpi_ = false;
    int world_rank_ = 0;
    int world_size_ = 1;
    int local_rank_ = 0;
    int local_size_ = 1;
    int gpu_ = -1;
    std::string host_;
};

}  // namespace mp::comm
