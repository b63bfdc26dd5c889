// NcclCommunicator: the Communicator over NCCL, one rank per GPU. Bootstrapped by MPI (rank 0's
// ncclUniqueId shared with MPI_Bcast), it runs NCCL on its own communication stream, ordered
// against the device's compute stream with events. Built only when MP_NCCL and MP_CUDA are 1.
#pragma once

#if MP_NCCL && MP_CUDA

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace mp::comm {

class NcclCommunicator : public Communicator {
  public:
    // Collective over `comm`: every rank passes its own GPU (distinct ones; make_communicator
    // checks that first). Initialisation is non-blocking, so a rank that never arrives is
    // reported by the timeout instead of hanging here.
    NcclCommunicator(MPI_Comm comm, int device, double timeout_seconds);
    ~NcclCommunicator() override;
    NcclCommunicator(const NcclCommunicator&) = delete;
    NcclCommunicator& operator=(const NcclCommunicator&) = delete;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    int local_rank() const override { return mpi_->local_rank(); }
    Backend backend() const override { return Backend::Nccl; }
    int device_index() const override { return device_; }

    // CUDA tensors of this rank's GPU go straight to NCCL; CPU tensors are staged through the
    // GPU. Headers are handshaken over MPI first, so NCCL only ever sees matching sizes.
    // Returns when the transfers are complete (the host waits, polling for errors and the
    // deadline); the compute stream is also ordered after them.
    void exchange(const std::vector<Transfer>& batch) override;
    void all_reduce(const Tensor& tensor, ReduceOp op) override;
    void broadcast(const Tensor& tensor, int root) override;
    void barrier() override;
    std::unique_ptr<Communicator> split(int color, std::optional<int> key = std::nullopt,
                                        std::optional<Backend> backend = std::nullopt) override;

  private:
    // The device memory NCCL reads or writes for `tensor`: its own storage on this GPU, else a
    // fresh device buffer (kept alive in `staged`) filled from the CPU tensor when `fill`.
    void* device_pointer(const Tensor& tensor, bool fill, std::vector<Tensor>& staged);
    void copy_back(const Tensor& tensor, const void* device_data);
    // Makes the communication stream wait for the compute stream (before NCCL work).
    void order_after_compute();
    // Records the end of the NCCL work, orders the compute stream after it and waits on the
    // host for it, polling ncclCommGetAsyncError; past the deadline prints `what` and aborts.
    void finish_and_wait(const std::string& what);
    // Handles an NCCL return code: ncclInProgress (non-blocking communicator) is waited out.
    void check(ncclResult_t result, const char* call, const std::string& what);
    void wait_until_ready(const std::string& what);

    std::unique_ptr<MpiCommunicator> mpi_;  // bootstrap, handshakes, agreement checks, barrier
    ncclComm_t nccl_ = nullptr;
    int rank_ = 0;
    int size_ = 1;
    int device_ = 0;
    cudaStream_t comm_stream_ = nullptr;
    cudaEvent_t compute_ready_ = nullptr;
    cudaEvent_t comm_done_ = nullptr;
    int abort_hook_ = 0;
};

}  // namespace mp::comm

#endif  // MP_NCCL && MP_CUDA
