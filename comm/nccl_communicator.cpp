// NcclCommunicator: MPI bootstrap of the NCCL communicator (non-blocking, so initialisation
// has a deadline too), batched ncclSend/ncclRecv in one group issued in (peer, tag) order (NCCL
// matches by order, not tag), collectives, on a stream fenced with events, a polled host wait.
#if MP_NCCL && MP_CUDA

#include "comm/nccl_communicator.h"

#include <chrono>
#include <cstdio>

#include "comm/check.h"
#include "comm/make_communicator.h"
#include "comm/nccl_logic.h"
#include "comm/protocol.h"
#include "kernels/cuda/check.cuh"
#include "tensor/device_context.h"

// Non-blocking communicators (and ncclCommFinalize) arrived in NCCL 2.14.
#define MP_NCCL_NONBLOCKING (NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0))

namespace mp::comm {

namespace {

using detail::PollState;

ncclDataType_t nccl_type(DType dtype) {
    switch (dtype) {
        case DType::Float32: return ncclFloat32;
        case DType::Float64: return ncclFloat64;
        case DType::Int32: return ncclInt32;
        case DType::BFloat16: return ncclBfloat16;
    }
    throw std::invalid_argument(str("NcclCommunicator: unknown dtype ", static_cast<int>(dtype)));
}

std::string describe_batch(const std::vector<Transfer>& batch) {
    std::string out = "NCCL group [";
    for (size_t i = 0; i < batch.size(); ++i) out += (i ? "; " : "") + describe(batch[i]);
    return out + "]";
}

PollState poll_state(ncclResult_t result) {
    if (result == ncclSuccess) return PollState::Done;
    if (result == ncclInProgress) return PollState::Pending;
    return PollState::Failed;
}

// Teardown cannot throw: a failed call is reported on stderr and teardown goes on.
void report_teardown_error(int rank, const char* call, const char* error) {
    std::fprintf(stderr, "minipipe comm: rank %d: %s failed during NCCL communicator teardown: %s\n", rank, call,
                 error);
}
void check_teardown(int rank, const char* call, ncclResult_t result) {
    if (result != ncclSuccess) report_teardown_error(rank, call, ncclGetErrorString(result));
}
void check_teardown(int rank, const char* call, cudaError_t result) {
    if (result != cudaSuccess) report_teardown_error(rank, call, cudaGetErrorString(result));
}

auto steady_now() { return std::chrono::steady_clock::now(); }

}  // namespace

NcclCommunicator::NcclCommunicator(MPI_Comm comm, int device, double timeout_seconds) : device_(device) {
    set_timeout_seconds(timeout_seconds);
    mpi_ = std::make_unique<MpiCommunicator>(comm, timeout_seconds);
    rank_ = mpi_->rank();
    size_ = mpi_->size();
    max_tag_ = mpi_->max_tag();
    MP_REQUIRE(device >= 0 && device < cuda_device_count(), "NcclCommunicator: device cuda:", device, " but ",
               cuda_device_count(), " GPU(s) are visible");

    ncclUniqueId id;
    if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    std::vector<MPI_Request> request(1, MPI_REQUEST_NULL);
    MPI_CHECK(MPI_Ibcast(&id, sizeof(id), MPI_BYTE, 0, mpi_->mpi_comm(), &request[0]));
    detail::wait_all(request, timeout_seconds_, [&](size_t) {
        return str("the ncclUniqueId broadcast from rank 0 (group of ", size_, " ranks)");
    });

    // No destructor runs for a constructor that throws: from here on every failure frees what
    // was built (the communicator with ncclCommAbort, its hook, the stream, the events).
    try {
        set_current_device(device_);
        std::string init_what = str("NCCL initialisation of rank ", rank_, " of ", size_, " on cuda:", device_);
#if MP_NCCL_NONBLOCKING
        const char* init_call = "ncclCommInitRankConfig";
        ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
        config.blocking = 0;
        ncclResult_t started = ncclCommInitRankConfig(&nccl_, size_, id, rank_, &config);
#else
        const char* init_call = "ncclCommInitRank";
        ncclResult_t started = ncclCommInitRank(&nccl_, size_, id, rank_);
#endif
        // A non-blocking init hands back the communicator while it is still being set up. Its
        // abort hook goes in first, so that an init that times out (abort_job_on_timeout in
        // wait_until_ready) aborts it before MPI_Abort. NCCL leaves nccl_ null when the call
        // itself fails.
        if (nccl_ != nullptr) {
            ncclComm_t handle = nccl_;
            int rank = rank_;
            abort_hook_ = detail::add_abort_hook(
                [handle, rank] { check_teardown(rank, "ncclCommAbort", ncclCommAbort(handle)); });
        }
        check(started, init_call, init_what);

        CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
        CUDA_CHECK(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&comm_done_, cudaEventDisableTiming));
    } catch (...) {
        release(/*abort=*/true);
        throw;
    }
}

NcclCommunicator::~NcclCommunicator() { release(/*abort=*/false); }

void NcclCommunicator::end_nccl(bool abort) noexcept {
    if (abort_hook_ != 0) {
        try {
            detail::remove_abort_hook(abort_hook_);
        } catch (...) {
            // a mutex error: the hook stays registered, ending a job that aborts anyway
        }
        abort_hook_ = 0;
    }
    if (nccl_ == nullptr) return;
    ncclComm_t handle = nccl_;
    nccl_ = nullptr;
    // ncclCommAbort and ncclCommDestroy block until the communicator is freed, also on a
    // non-blocking communicator (they never return ncclInProgress): the handle is dead after.
    auto destroy = [&] { check_teardown(rank_, "ncclCommDestroy", ncclCommDestroy(handle)); };
    auto abort_now = [&] { check_teardown(rank_, "ncclCommAbort", ncclCommAbort(handle)); };
    if (abort) {
        abort_now();
        return;
    }
#if MP_NCCL_NONBLOCKING
    // ncclCommFinalize flushes the issued work; the communicator's state turns from
    // ncclInProgress to ncclSuccess once it is globally quiescent, and only then may
    // ncclCommDestroy free the rest. A peer that never finalizes would keep it in progress
    // forever, hence the deadline; an error there means NCCL's state is unknown: abort.
    ncclResult_t last = ncclSuccess;
    auto finalize = [&] {
        last = ncclCommFinalize(handle);
        return poll_state(last);
    };
    auto poll = [&] {
        ncclResult_t state = ncclInProgress;
        ncclResult_t queried = ncclCommGetAsyncError(handle, &state);
        last = queried != ncclSuccess ? queried : state;
        return poll_state(last);
    };
    detail::Backoff backoff;
    detail::Teardown how = detail::finalize_then_destroy(finalize, poll, steady_now,
                                                         detail::deadline_in(timeout_seconds_),
                                                         [&] { backoff.pause(); }, destroy, abort_now);
    if (how == detail::Teardown::AbortedAfterError)
        std::fprintf(stderr, "minipipe comm: rank %d (cuda:%d): ncclCommFinalize failed (%s): aborted the NCCL "
                     "communicator (ncclCommAbort) instead of destroying it\n",
                     rank_, device_, ncclGetErrorString(last));
    if (how == detail::Teardown::AbortedAfterDeadline)
        std::fprintf(stderr, "minipipe comm: rank %d (cuda:%d): ncclCommFinalize did not complete within %g s (a peer "
                     "that never tears down?): aborted the NCCL communicator (ncclCommAbort)\n", rank_, device_,
                     timeout_seconds_);
#else
    destroy();
#endif
}

void NcclCommunicator::release(bool abort) noexcept {
    end_nccl(abort);
    if (comm_done_ != nullptr) check_teardown(rank_, "cudaEventDestroy", cudaEventDestroy(comm_done_));
    if (compute_ready_ != nullptr) check_teardown(rank_, "cudaEventDestroy", cudaEventDestroy(compute_ready_));
    // Returns at once; CUDA frees the stream when the work queued on it is done.
    if (comm_stream_ != nullptr) check_teardown(rank_, "cudaStreamDestroy", cudaStreamDestroy(comm_stream_));
    comm_done_ = nullptr;
    compute_ready_ = nullptr;
    comm_stream_ = nullptr;
}

void NcclCommunicator::abandon(const std::string& reason) noexcept {
    if (nccl_ == nullptr) return;
    try {
        abandoned_ = reason;
    } catch (...) {
        // out of memory for the message: require_usable still refuses, with less detail
    }
    end_nccl(/*abort=*/true);
    // The aborted kernels leave the stream; once it is drained no NCCL work touches the
    // caller's tensors or the staged buffers the caching allocator is about to get back.
    if (comm_stream_ != nullptr) check_teardown(rank_, "cudaStreamSynchronize", cudaStreamSynchronize(comm_stream_));
}

void NcclCommunicator::require_usable(const char* op) const {
    if (nccl_ != nullptr) return;
    throw RuntimeError(str("NcclCommunicator (rank ", rank_, ", cuda:", device_, "): ", op,
                           ": the NCCL communicator was aborted after an earlier error (",
                           abandoned_.empty() ? "unknown" : abandoned_, "); create a new communicator"));
}

void NcclCommunicator::check(ncclResult_t result, const char* call, const std::string& what) {
    if (result == ncclInProgress) {
        wait_until_ready(what);
        return;
    }
    if (result != ncclSuccess) comm_detail::throw_nccl(result, str(call, " (", what, ")").c_str(), __FILE__, __LINE__);
}

void NcclCommunicator::wait_until_ready(const std::string& what) {
    // A call that returned ncclInProgress: the communicator's state says when it is done, and
    // no other NCCL call may be made on it before then.
    ncclResult_t state = ncclInProgress;
    auto poll = [&] {
        NCCL_CHECK(ncclCommGetAsyncError(nccl_, &state));
        return poll_state(state);
    };
    detail::Backoff backoff;
    detail::WaitResult result =
        detail::wait_with_deadline(poll, steady_now, detail::deadline_in(timeout_seconds_), [&] { backoff.pause(); });
    if (result == detail::WaitResult::Failed) comm_detail::throw_nccl(state, what.c_str(), __FILE__, __LINE__);
    if (result == detail::WaitResult::TimedOut) detail::abort_job_on_timeout(what, timeout_seconds_);
}

void* NcclCommunicator::device_pointer(const Tensor& tensor, bool fill, std::vector<Tensor>& staged) {
    if (tensor.device().is_cuda()) return tensor.raw_data();
    // A CPU tensor: a byte buffer on this GPU (int32 words, since float64 tensors are CPU-only).
    // It comes from the caching allocator, which reuses blocks in compute-stream order; NCCL
    // uses it on comm_stream_, so it must stay alive until that work is done: `staged` lives
    // until the host has waited for it (or abandon() has drained the stream).
    int64_t words = static_cast<int64_t>((tensor.nbytes() + 3) / 4);
    staged.push_back(Tensor::empty({words}, DType::Int32, Device::cuda(device_)));
    void* data = staged.back().raw_data();
    if (fill && tensor.nbytes() > 0) {
        cudaStream_t stream = compute_stream(device_);
        CUDA_CHECK(cudaMemcpyAsync(data, tensor.raw_data(), tensor.nbytes(), cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(cudaStreamSynchronize(stream));  // the host memory is pageable
    }
    return data;
}

void NcclCommunicator::copy_back(const Tensor& tensor, const void* device_data) {
    if (tensor.device().is_cuda() || tensor.nbytes() == 0) return;
    // On the compute stream, which finish_and_wait ordered after the NCCL work.
    cudaStream_t stream = compute_stream(device_);
    CUDA_CHECK(cudaMemcpyAsync(tensor.raw_data(), device_data, tensor.nbytes(), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
}

void NcclCommunicator::order_after_compute() {
    CUDA_CHECK(cudaEventRecord(compute_ready_, compute_stream(device_)));
    CUDA_CHECK(cudaStreamWaitEvent(comm_stream_, compute_ready_, 0));
}

void NcclCommunicator::finish_and_wait(const std::string& what) {
    CUDA_CHECK(cudaEventRecord(comm_done_, comm_stream_));
    CUDA_CHECK(cudaStreamWaitEvent(compute_stream(device_), comm_done_, 0));
    ncclResult_t state = ncclSuccess;
    auto poll = [&] {
        cudaError_t status = cudaEventQuery(comm_done_);
        if (status == cudaSuccess) return PollState::Done;
        if (status != cudaErrorNotReady) CUDA_CHECK(status);
        NCCL_CHECK(ncclCommGetAsyncError(nccl_, &state));
        return state == ncclSuccess || state == ncclInProgress ? PollState::Pending : PollState::Failed;
    };
    detail::Backoff backoff;
    detail::WaitResult result =
        detail::wait_with_deadline(poll, steady_now, detail::deadline_in(timeout_seconds_), [&] { backoff.pause(); });
    if (result == detail::WaitResult::Failed) comm_detail::throw_nccl(state, what.c_str(), __FILE__, __LINE__);
    if (result == detail::WaitResult::TimedOut)
        detail::abort_job_on_timeout(what + ": waiting for NCCL to complete", timeout_seconds_);
}

void NcclCommunicator::run_on_comm_stream(const std::string& what, const std::function<void()>& enqueue) {
    try {
        order_after_compute();
        enqueue();
        finish_and_wait(what);
    } catch (const std::exception& e) {
        abandon(e.what());
        throw;
    } catch (...) {
        abandon(what + ": unknown exception");
        throw;
    }
}

void NcclCommunicator::exchange(const std::vector<Transfer>& batch) {
    require_usable("exchange");
    validate_batch(batch, "exchange");
    for (const Transfer& t : batch)
        MP_REQUIRE(t.tensor.device().is_cpu() || t.tensor.device() == Device::cuda(device_), "exchange: ",
                   describe(t), ": this rank's NCCL communicator works on cuda:", device_);
    std::vector<std::string> errors = detail::handshake(mpi_->mpi_comm(), rank_, batch, timeout_seconds_);

    set_current_device(device_);  // before staging: its copies run on this GPU's compute stream
    std::vector<Tensor> staged;
    std::vector<void*> pointers(batch.size(), nullptr);
    for (size_t i = 0; i < batch.size(); ++i)
        if (errors[i].empty() && batch[i].tensor.nbytes() > 0)
            pointers[i] = device_pointer(batch[i].tensor, batch[i].kind == Transfer::Kind::Send, staged);

    std::string what = describe_batch(batch);
    run_on_comm_stream(what, [&] {
        check(ncclGroupStart(), "ncclGroupStart", what);
        ncclResult_t issued = ncclSuccess;
        const char* failed_call = "";
        // NCCL has no tags: (peer, tag) order on both ranks pairs each send with its receive.
        for (size_t i : detail::nccl_issue_order(batch)) {
            if (pointers[i] == nullptr) continue;  // mismatched (on both ranks), or nothing to move
            const Transfer& t = batch[i];
            bool is_send = t.kind == Transfer::Kind::Send;
            issued = is_send ? ncclSend(pointers[i], t.tensor.nbytes(), ncclUint8, t.peer, nccl_, comm_stream_)
                             : ncclRecv(pointers[i], t.tensor.nbytes(), ncclUint8, t.peer, nccl_, comm_stream_);
            if (issued != ncclSuccess && issued != ncclInProgress) {
                failed_call = is_send ? "ncclSend" : "ncclRecv";
                break;
            }
        }
        // The group is closed even after a failed call: an open group would hold back every
        // later NCCL call of this thread, on any communicator.
        ncclResult_t ended = ncclGroupEnd();
        if (issued != ncclSuccess && issued != ncclInProgress)
            comm_detail::throw_nccl(issued, str(failed_call, " (", what, ")").c_str(), __FILE__, __LINE__);
        check(ended, "ncclGroupEnd", what);
    });
    for (size_t i = 0; i < batch.size(); ++i)
        if (pointers[i] != nullptr && batch[i].kind == Transfer::Kind::Recv) copy_back(batch[i].tensor, pointers[i]);
    detail::throw_if_mismatched(errors, "exchange");
}

void NcclCommunicator::all_reduce(const Tensor& tensor, ReduceOp op) {
    require_usable("all_reduce");
    MP_REQUIRE(tensor.defined(), "all_reduce: the tensor is undefined");
    MP_REQUIRE(tensor.device().is_cpu() || tensor.device() == Device::cuda(device_), "all_reduce: ",
               tensor.describe(), ": this rank's NCCL communicator works on cuda:", device_);
    std::string what = str("all_reduce(", reduce_op_name(op), ")");
    detail::check_collective_agreement(mpi_->mpi_comm(), rank_, size_, tensor, static_cast<int>(op), what,
                                       timeout_seconds_);
    if (tensor.numel() == 0) return;
    set_current_device(device_);
    std::vector<Tensor> staged;
    void* data = device_pointer(tensor, true, staged);
    what = str(what, " ", tensor.describe(), " (", tensor.nbytes(), " bytes) over a group of ", size_, " ranks");
    run_on_comm_stream(what, [&] {
        check(ncclAllReduce(data, data, static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()),
                            op == ReduceOp::Sum ? ncclSum : ncclMax, nccl_, comm_stream_),
              "ncclAllReduce", what);
    });
    copy_back(tensor, data);
}

void NcclCommunicator::broadcast(const Tensor& tensor, int root) {
    require_usable("broadcast");
    MP_REQUIRE(tensor.defined(), "broadcast: the tensor is undefined");
    MP_REQUIRE(root >= 0 && root < size_, "broadcast: root ", root, " is out of range for a group of ", size_,
               " ranks");
    MP_REQUIRE(tensor.device().is_cpu() || tensor.device() == Device::cuda(device_), "broadcast: ",
               tensor.describe(), ": this rank's NCCL communicator works on cuda:", device_);
    detail::check_collective_agreement(mpi_->mpi_comm(), rank_, size_, tensor, root, "broadcast", timeout_seconds_);
    if (tensor.nbytes() == 0) return;
    set_current_device(device_);
    std::vector<Tensor> staged;
    void* data = device_pointer(tensor, rank_ == root, staged);
    std::string what = str("broadcast ", tensor.describe(), " (", tensor.nbytes(), " bytes) from root ", root,
                           " over a group of ", size_, " ranks");
    run_on_comm_stream(what, [&] {
        check(ncclBroadcast(data, data, tensor.nbytes(), ncclUint8, root, nccl_, comm_stream_), "ncclBroadcast", what);
    });
    if (rank_ != root) copy_back(tensor, data);
}

void NcclCommunicator::barrier() { mpi_->barrier(); }

std::unique_ptr<Communicator> NcclCommunicator::split(int color, std::optional<int> key,
                                                      std::optional<Backend> backend) {
    return split_communicator(mpi_->mpi_comm(), rank_, color, key, backend.value_or(Backend::Nccl), timeout_seconds_);
}

}  // namespace mp::comm

#endif  // MP_NCCL && MP_CUDA
