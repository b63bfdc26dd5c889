// NcclCommunicator: MPI bootstrap of the NCCL communicator (non-blocking, so initialisation
// has a deadline too), batched ncclSend/ncclRecv in one group issued in (peer, tag) order (NCCL
// matches by order, not tag), collectives, on a stream fenced with events, a polled host wait.
#if MP_NCCL && MP_CUDA

#include "comm/nccl_communicator.h"

#include <chrono>

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

    set_current_device(device_);
    std::string init_what = str("ncclCommInitRank (rank ", rank_, " of ", size_, ", cuda:", device_, ")");
#if MP_NCCL_NONBLOCKING
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    check(ncclCommInitRankConfig(&nccl_, size_, id, rank_, &config), "ncclCommInitRankConfig", init_what);
#else
    NCCL_CHECK(ncclCommInitRank(&nccl_, size_, id, rank_));
#endif
    abort_hook_ = detail::add_abort_hook([comm = nccl_] { ncclCommAbort(comm); });

    CUDA_CHECK(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&comm_done_, cudaEventDisableTiming));
}

NcclCommunicator::~NcclCommunicator() {
    // No throwing from a destructor: failures here are ignored, the process is ending its use.
    detail::remove_abort_hook(abort_hook_);
    if (nccl_ != nullptr) {
#if MP_NCCL_NONBLOCKING
        ncclResult_t state = ncclCommFinalize(nccl_);
        detail::Backoff backoff;
        while (state == ncclInProgress) {
            if (ncclCommGetAsyncError(nccl_, &state) != ncclSuccess) break;
            backoff.pause();
        }
#endif
        ncclCommDestroy(nccl_);
    }
    if (comm_done_ != nullptr) cudaEventDestroy(comm_done_);
    if (compute_ready_ != nullptr) cudaEventDestroy(compute_ready_);
    if (comm_stream_ != nullptr) cudaStreamDestroy(comm_stream_);
}

void NcclCommunicator::check(ncclResult_t result, const char* call, const std::string& what) {
    if (result == ncclInProgress) {
        wait_until_ready(what);
        return;
    }
    if (result != ncclSuccess) comm_detail::throw_nccl(result, call, __FILE__, __LINE__);
}

void NcclCommunicator::wait_until_ready(const std::string& what) {
    auto start = std::chrono::steady_clock::now();
    detail::Backoff backoff;
    while (true) {
        ncclResult_t state = ncclSuccess;
        NCCL_CHECK(ncclCommGetAsyncError(nccl_, &state));
        if (state == ncclSuccess) return;
        if (state != ncclInProgress) comm_detail::throw_nccl(state, what.c_str(), __FILE__, __LINE__);
        double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (waited > timeout_seconds_) detail::abort_job_on_timeout(what, timeout_seconds_);
        backoff.pause();
    }
}

void* NcclCommunicator::device_pointer(const Tensor& tensor, bool fill, std::vector<Tensor>& staged) {
    if (tensor.device().is_cuda()) return tensor.raw_data();
    // A CPU tensor: a byte buffer on this GPU (int32 words, since float64 tensors are CPU-only).
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
    auto start = std::chrono::steady_clock::now();
    detail::Backoff backoff;
    while (true) {
        cudaError_t status = cudaEventQuery(comm_done_);
        if (status == cudaSuccess) return;
        if (status != cudaErrorNotReady) CUDA_CHECK(status);
        ncclResult_t state = ncclSuccess;
        NCCL_CHECK(ncclCommGetAsyncError(nccl_, &state));
        if (state != ncclSuccess && state != ncclInProgress) comm_detail::throw_nccl(state, what.c_str(), __FILE__, __LINE__);
        double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (waited > timeout_seconds_) detail::abort_job_on_timeout(what + ": waiting for NCCL to complete", timeout_seconds_);
        backoff.pause();
    }
}

void NcclCommunicator::exchange(const std::vector<Transfer>& batch) {
    validate_batch(batch, "exchange");
    for (const Transfer& t : batch)
        MP_REQUIRE(t.tensor.device().is_cpu() || t.tensor.device() == Device::cuda(device_), "exchange: ",
                   describe(t), ": this rank's NCCL communicator works on cuda:", device_);
    std::vector<std::string> errors = detail::handshake(mpi_->mpi_comm(), rank_, batch, timeout_seconds_);

    std::vector<Tensor> staged;
    std::vector<void*> pointers(batch.size(), nullptr);
    for (size_t i = 0; i < batch.size(); ++i)
        if (errors[i].empty() && batch[i].tensor.nbytes() > 0)
            pointers[i] = device_pointer(batch[i].tensor, batch[i].kind == Transfer::Kind::Send, staged);

    set_current_device(device_);
    order_after_compute();
    std::string what = describe_batch(batch);
    check(ncclGroupStart(), "ncclGroupStart", what);
    // NCCL has no tags: (peer, tag) order on both ranks pairs each send with its receive.
    for (size_t i : detail::nccl_issue_order(batch)) {
        if (pointers[i] == nullptr) continue;  // mismatched (on both ranks), or nothing to move
        const Transfer& t = batch[i];
        if (t.kind == Transfer::Kind::Send)
            check(ncclSend(pointers[i], t.tensor.nbytes(), ncclUint8, t.peer, nccl_, comm_stream_), "ncclSend", what);
        else
            check(ncclRecv(pointers[i], t.tensor.nbytes(), ncclUint8, t.peer, nccl_, comm_stream_), "ncclRecv", what);
    }
    check(ncclGroupEnd(), "ncclGroupEnd", what);
    finish_and_wait(what);
    for (size_t i = 0; i < batch.size(); ++i)
        if (pointers[i] != nullptr && batch[i].kind == Transfer::Kind::Recv) copy_back(batch[i].tensor, pointers[i]);
    detail::throw_if_mismatched(errors, "exchange");
}

void NcclCommunicator::all_reduce(const Tensor& tensor, ReduceOp op) {
    MP_REQUIRE(tensor.defined(), "all_reduce: the tensor is undefined");
    MP_REQUIRE(tensor.device().is_cpu() || tensor.device() == Device::cuda(device_), "all_reduce: ",
               tensor.describe(), ": this rank's NCCL communicator works on cuda:", device_);
    std::string what = str("all_reduce(", reduce_op_name(op), ")");
    detail::check_collective_agreement(mpi_->mpi_comm(), rank_, size_, tensor, static_cast<int>(op), what,
                                       timeout_seconds_);
    if (tensor.numel() == 0) return;
    std::vector<Tensor> staged;
    void* data = device_pointer(tensor, true, staged);
    set_current_device(device_);
    order_after_compute();
    what = str(what, " ", tensor.describe(), " (", tensor.nbytes(), " bytes) over a group of ", size_, " ranks");
    check(ncclAllReduce(data, data, static_cast<size_t>(tensor.numel()), nccl_type(tensor.dtype()),
                        op == ReduceOp::Sum ? ncclSum : ncclMax, nccl_, comm_stream_),
          "ncclAllReduce", what);
    finish_and_wait(what);
    copy_back(tensor, data);
}

void NcclCommunicator::broadcast(const Tensor& tensor, int root) {
    MP_REQUIRE(tensor.defined(), "broadcast: the tensor is undefined");
    MP_REQUIRE(root >= 0 && root < size_, "broadcast: root ", root, " is out of range for a group of ", size_,
               " ranks");
    MP_REQUIRE(tensor.device().is_cpu() || tensor.device() == Device::cuda(device_), "broadcast: ",
               tensor.describe(), ": this rank's NCCL communicator works on cuda:", device_);
    detail::check_collective_agreement(mpi_->mpi_comm(), rank_, size_, tensor, root, "broadcast", timeout_seconds_);
    if (tensor.nbytes() == 0) return;
    std::vector<Tensor> staged;
    void* data = device_pointer(tensor, rank_ == root, staged);
    set_current_device(device_);
    order_after_compute();
    std::string what = str("broadcast ", tensor.describe(), " (", tensor.nbytes(), " bytes) from root ", root,
                           " over a group of ", size_, " ranks");
    check(ncclBroadcast(data, data, tensor.nbytes(), ncclUint8, root, nccl_, comm_stream_), "ncclBroadcast", what);
    finish_and_wait(what);
    if (rank_ != root) copy_back(tensor, data);
}

void NcclCommunicator::barrier() { mpi_->barrier(); }

std::unique_ptr<Communicator> NcclCommunicator::split(int color, std::optional<int> key,
                                                      std::optional<Backend> backend) {
    return split_communicator(mpi_->mpi_comm(), rank_, color, key, backend.value_or(Backend::Nccl), timeout_seconds_);
}

}  // namespace mp::comm

#endif  // MP_NCCL && MP_CUDA
