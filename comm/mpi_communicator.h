// MpiCommunicator: the Communicator over plain MPI. CPU tensors go straight from their
// storage; CUDA tensors are staged through pinned host buffers. It is what runs in CI (no GPU)
// and when several ranks share one GPU, where NCCL refuses to run.
#pragma once

#include <mpi.h>

#include <memory>
#include <vector>

#include "comm/communicator.h"

namespace mp::comm {

class MpiCommunicator : public Communicator {
  public:
    // Works on a duplicate of `comm` (its traffic never mixes with anyone else's) and frees it
    // on destruction. Needs a live MpiRuntime.
    MpiCommunicator(MPI_Comm comm, double timeout_seconds);
    ~MpiCommunicator() override;
    MpiCommunicator(const MpiCommunicator&) = delete;
    MpiCommunicator& operator=(const MpiCommunicator&) = delete;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    int local_rank() const override;
    Backend backend() const override { return Backend::Mpi; }
    int device_index() const override { return -1; }

    void exchange(const std::vector<Transfer>& batch) override;
    void all_reduce(const Tensor& tensor, ReduceOp op) override;
    void broadcast(const Tensor& tensor, int root) override;
    void barrier() override;
    std::unique_ptr<Communicator> split(int color, std::optional<int> key = std::nullopt,
                                        std::optional<Backend> backend = std::nullopt) override;

    MPI_Comm mpi_comm() const { return comm_; }

  private:
    class PinnedBuffer;
    // A host pointer holding (or receiving) the tensor's bytes: the storage itself for a CPU
    // tensor, the slot-th pinned staging buffer for a CUDA one.
    void* host_buffer(const Tensor& tensor, size_t slot);

    MPI_Comm comm_ = MPI_COMM_NULL;
    int rank_ = 0;
    int size_ = 1;
    std::vector<std::unique_ptr<PinnedBuffer>> staging_;
};

}  // namespace mp::comm
