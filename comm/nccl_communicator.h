// NcclCommunicator: the Communicator over NCCL, one rank per GPU. Bootstrapped by MPI (rank 0's
// ncclUniqueId shared with MPI_Bcast), it runs NCCL on its own communication stream, ordered
// against the device's compute stream with events. Built only when MP_NCCL and MP_CUDA are 1.
#pragma once

#if MP_NCCL && MP_CUDA

#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"

namespace mp::comm {

class NcclCommunicator : public Communicator {
  public:
    // Collective over `comm`: every rank passes its own GPU (distinct ones; make_communicator
    // checks that first). Initialisation is non-blocking, so a rank that never arrives is
    // reported by the timeout instead of hanging here.
    // A failed initialisation throws having freed (ncclCommAbort) whatever it had built.
    NcclCommunicator(MPI_Comm comm, int device, double timeout_seconds);
    // Finalizes (ncclCommFinalize, waited for at most the timeout) then ncclCommDestroy; on an
    // asynchronous error or past the timeout it prints why and uses ncclCommAbort instead.
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
    // deadline); the compute stream is also ordered after them. An NCCL error aborts this
    // rank's NCCL communicator (ncclCommAbort, as NCCL requires after an error) and throws;
    // later exchange/all_reduce/broadcast calls then throw too (barrier and split still work).
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
    // Orders the communication stream after the compute stream, runs `enqueue` (the NCCL calls)
    // and finish_and_wait. On any error on the way the NCCL communicator is abandoned (below)
    // before the exception leaves, so no NCCL work still writes buffers that the caller or the
    // caching allocator (which reuses blocks in compute-stream order only) gets back.
    void run_on_comm_stream(const std::string& what, const std::function<void()>& enqueue);
    // Makes the communication stream wait for the compute stream (before NCCL work).
    void order_after_compute();
    // Records the end of the NCCL work, orders the compute stream after it and waits on the
    // host for it, polling ncclCommGetAsyncError; past the deadline prints `what` and aborts.
    void finish_and_wait(const std::string& what);
    // Handles an NCCL return code: ncclInProgress (non-blocking communicator) is waited out.
    void check(ncclResult_t result, const char* call, const std::string& what);
    void wait_until_ready(const std::string& what);

    // Throws when an earlier error aborted the NCCL communicator.
    void require_usable(const char* op) const;
    // After an error with NCCL work possibly in flight: ncclCommAbort (which stops it), then
    // waits for the communication stream to drain. Later NCCL operations throw `reason`.
    void abandon(const std::string& reason) noexcept;
    // Ends the NCCL communicator: unregisters its abort hook, then ncclCommAbort when `abort`,
    // else ncclCommFinalize polled until the timeout and ncclCommDestroy, or ncclCommAbort when
    // the finalize fails or runs past the timeout. Never throws; a no-op without a communicator.
    void end_nccl(bool abort) noexcept;
    // end_nccl, then the stream and events. Used by the destructor and by the constructor when
    // it throws (on a partly built object: whatever exists is freed, nothing leaks).
    void release(bool abort) noexcept;

    std::unique_ptr<MpiCommunicator> mpi_;  // bootstrap, handshakes, agreement checks, barrier
    ncclComm_t nccl_ = nullptr;             // nullptr once ended (or abandoned after an error)
    int rank_ = 0;
    int size_ = 1;
    int device_ = 0;
    cudaStream_t comm_stream_ = nullptr;
    cudaEvent_t compute_ready_ = nullptr;
    cudaEvent_t comm_done_ = nullptr;
    int abort_hook_ = 0;      // id of the ncclCommAbort hook run before a timeout's MPI_Abort; 0: none
    std::string abandoned_;  // why the NCCL communicator was aborted; empty while usable
};

}  // namespace mp::comm

#endif  // MP_NCCL && MP_CUDA
