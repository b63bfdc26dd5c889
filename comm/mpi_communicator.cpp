// MpiCommunicator: header handshake, then Isend/Irecv of the payloads and a timed wait for all
// of them; collectives as MPI_Iallreduce / MPI_Ibcast / MPI_Ibarrier behind the same timed
// wait. CUDA tensors travel through pinned host buffers, ordered on the device's compute stream.
#include "comm/mpi_communicator.h"

#include <climits>

#include "comm/check.h"
#include "comm/make_communicator.h"
#include "comm/mpi_runtime.h"
#include "comm/protocol.h"
#include "tensor/device_context.h"

#if MP_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#endif

namespace mp::comm {

// Page-locked host memory that grows to the largest size asked of it (never shrinks), so the
// steady state of a training loop allocates nothing.
class MpiCommunicator::PinnedBuffer {
  public:
    PinnedBuffer() = default;
    ~PinnedBuffer() {
#if MP_CUDA
        if (data_ != nullptr) cudaFreeHost(data_);  // nothing to report to in a destructor
#endif
    }
    PinnedBuffer(const PinnedBuffer&) = delete;
    PinnedBuffer& operator=(const PinnedBuffer&) = delete;

    void* reserve(size_t bytes) {
#if MP_CUDA
        if (bytes > capacity_) {
            if (data_ != nullptr) CUDA_CHECK(cudaFreeHost(data_));
            data_ = nullptr;
            capacity_ = 0;
            CUDA_CHECK(cudaMallocHost(&data_, bytes));
            capacity_ = bytes;
        }
        return data_;
#else
        (void)bytes;
        throw RuntimeError("MpiCommunicator: a CUDA tensor in a build without CUDA");
#endif
    }

  private:
    void* data_ = nullptr;
    size_t capacity_ = 0;
};

namespace {

// Copies between a CUDA tensor and host memory on the device's compute stream (so it is
// ordered after the kernels that wrote the tensor) and waits for the copy.
void copy_device_host(const Tensor& tensor, void* host, bool to_host) {
    if (tensor.nbytes() == 0) return;
#if MP_CUDA
    cudaStream_t stream = compute_stream(tensor.device().index);
    if (to_host)
        CUDA_CHECK(cudaMemcpyAsync(host, tensor.raw_data(), tensor.nbytes(), cudaMemcpyDeviceToHost, stream));
    else
        CUDA_CHECK(cudaMemcpyAsync(tensor.raw_data(), host, tensor.nbytes(), cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
#else
    (void)host;
    (void)to_host;
    throw RuntimeError("MpiCommunicator: a CUDA tensor in a build without CUDA");
#endif
}

MPI_Datatype mpi_type_for_reduction(DType dtype) {
    switch (dtype) {
        case DType::Float32: return MPI_FLOAT;
        case DType::Float64: return MPI_DOUBLE;
        case DType::Int32: return MPI_INT32_T;
        case DType::BFloat16: break;
    }
    throw std::invalid_argument(str("all_reduce: ", dtype_name(dtype), " is not supported by the MPI backend"));
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, double timeout_seconds) {
    MpiRuntime::instance();  // throws when MPI is not initialised
    set_timeout_seconds(timeout_seconds);
    MPI_CHECK(MPI_Comm_dup(comm, &comm_));
    MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size_));
    max_tag_ = detail::max_user_tag(comm_);
}

MpiCommunicator::~MpiCommunicator() {
    int finalized = 0;
    if (comm_ != MPI_COMM_NULL && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Comm_free(&comm_);
}

int MpiCommunicator::local_rank() const { return MpiRuntime::instance().local_rank(); }

void* MpiCommunicator::host_buffer(const Tensor& tensor, size_t slot) {
    if (tensor.device().is_cpu()) return tensor.raw_data();
    while (staging_.size() <= slot) staging_.push_back(std::make_unique<PinnedBuffer>());
    return staging_[slot]->reserve(tensor.nbytes());
}

void MpiCommunicator::exchange(const std::vector<Transfer>& batch) {
    validate_batch(batch, "exchange");
    std::vector<std::string> errors = detail::handshake(comm_, rank_, batch, timeout_seconds_);

    // Payloads of the transfers both sides agreed on (the others are skipped on both sides).
    std::vector<void*> buffers(batch.size(), nullptr);
    std::vector<MPI_Request> requests;
    std::vector<size_t> owner;
    for (size_t i = 0; i < batch.size(); ++i) {
        if (!errors[i].empty()) continue;
        const Transfer& t = batch[i];
        buffers[i] = host_buffer(t.tensor, i);
        if (t.kind == Transfer::Kind::Send && t.tensor.device().is_cuda()) copy_device_host(t.tensor, buffers[i], true);
        detail::post_payload(comm_, t, buffers[i], t.tensor.nbytes(), requests, owner, i);
    }
    detail::wait_all(requests, timeout_seconds_, [&](size_t pending) {
        return str(describe(batch[owner[pending]]), ": waiting for the payload (group of ", size_, " ranks, rank ",
                   rank_, ")");
    });
    for (size_t i = 0; i < batch.size(); ++i) {
        const Transfer& t = batch[i];
        if (errors[i].empty() && t.kind == Transfer::Kind::Recv && t.tensor.device().is_cuda())
            copy_device_host(t.tensor, buffers[i], false);
    }
    detail::throw_if_mismatched(errors, "exchange");
}

void MpiCommunicator::all_reduce(const Tensor& tensor, ReduceOp op) {
    MP_REQUIRE(tensor.defined(), "all_reduce: the tensor is undefined");
    MPI_Datatype type = mpi_type_for_reduction(tensor.dtype());
    MP_REQUIRE(tensor.numel() <= INT_MAX, "all_reduce: ", tensor.describe(), " has more than INT_MAX elements");
    std::string what = str("all_reduce(", reduce_op_name(op), ")");
    detail::check_collective_agreement(comm_, rank_, size_, tensor, static_cast<int>(op), what, timeout_seconds_);
    if (tensor.numel() == 0) return;
    void* buffer = host_buffer(tensor, 0);
    if (tensor.device().is_cuda()) copy_device_host(tensor, buffer, true);
    std::vector<MPI_Request> request(1, MPI_REQUEST_NULL);
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buffer, static_cast<int>(tensor.numel()), type,
                             op == ReduceOp::Sum ? MPI_SUM : MPI_MAX, comm_, &request[0]));
    detail::wait_all(request, timeout_seconds_, [&](size_t) {
        return str(what, " ", tensor.describe(), " (", tensor.nbytes(), " bytes) over a group of ", size_,
                   " ranks: waiting for the reduction");
    });
    if (tensor.device().is_cuda()) copy_device_host(tensor, buffer, false);
}

void MpiCommunicator::broadcast(const Tensor& tensor, int root) {
    MP_REQUIRE(tensor.defined(), "broadcast: the tensor is undefined");
    MP_REQUIRE(root >= 0 && root < size_, "broadcast: root ", root, " is out of range for a group of ", size_,
               " ranks");
    detail::check_collective_agreement(comm_, rank_, size_, tensor, root, "broadcast", timeout_seconds_);
    if (tensor.nbytes() == 0) return;
    void* buffer = host_buffer(tensor, 0);
    if (rank_ == root && tensor.device().is_cuda()) copy_device_host(tensor, buffer, true);
    constexpr size_t kChunk = size_t{1} << 30;
    std::vector<MPI_Request> requests;
    for (size_t offset = 0; offset < tensor.nbytes(); offset += kChunk) {
        int count = static_cast<int>(std::min(kChunk, tensor.nbytes() - offset));
        requests.push_back(MPI_REQUEST_NULL);
        MPI_CHECK(MPI_Ibcast(static_cast<char*>(buffer) + offset, count, MPI_BYTE, root, comm_, &requests.back()));
    }
    detail::wait_all(requests, timeout_seconds_, [&](size_t) {
        return str("broadcast ", tensor.describe(), " (", tensor.nbytes(), " bytes) from root ", root,
                   " over a group of ", size_, " ranks");
    });
    if (rank_ != root && tensor.device().is_cuda()) copy_device_host(tensor, buffer, false);
}

void MpiCommunicator::barrier() {
    std::vector<MPI_Request> request(1, MPI_REQUEST_NULL);
    MPI_CHECK(MPI_Ibarrier(comm_, &request[0]));
    detail::wait_all(request, timeout_seconds_,
                     [&](size_t) { return str("barrier over a group of ", size_, " ranks (rank ", rank_, ")"); });
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, std::optional<int> key,
                                                     std::optional<Backend> backend) {
    return split_communicator(comm_, rank_, color, key, backend.value_or(Backend::Mpi), timeout_seconds_);
}

}  // namespace mp::comm
