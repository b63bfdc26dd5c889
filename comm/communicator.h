// The Communicator interface that pipeline/ and data parallelism talk to: point-to-point
// transfers of tensors (alone or as a batch that progresses together), all_reduce, broadcast,
// barrier and split. Two backends implement it: MpiCommunicator and NcclCommunicator.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/enum_names.h"
#include "tensor/tensor.h"

namespace mp::comm {

enum class Backend { Auto, Nccl, Mpi };

// Header-only, so that a config can name a backend in a build without MPI (no comm/ library).
inline const EnumNames<Backend>& enum_names(Backend) {
    static const EnumNames<Backend> names{{Backend::Auto, "auto"}, {Backend::Nccl, "nccl"}, {Backend::Mpi, "mpi"}};
    return names;
}

enum class ReduceOp { Sum, Max };
const char* reduce_op_name(ReduceOp op);

// One half of a point-to-point transfer. A send's tensor is read; a receive's tensor is
// written and its shape and dtype are what the receiver expects: the sender's must match,
// otherwise both ranks throw std::invalid_argument naming both shapes.
struct Transfer {
    enum class Kind { Send, Recv };
    Kind kind = Kind::Send;
    Tensor tensor;
    int peer = 0;  // rank in this communicator
    int tag = 0;   // 0 <= tag <= Communicator::max_tag(); matches a send with a receive

    static Transfer send(const Tensor& tensor, int peer, int tag = 0) { return {Kind::Send, tensor, peer, tag}; }
    static Transfer recv(const Tensor& tensor, int peer, int tag = 0) { return {Kind::Recv, tensor, peer, tag}; }
};
std::string describe(const Transfer& transfer);  // "send float32(4, 8) to rank 1 tag 3 (128 bytes)"

// The per-communicator wait limit in seconds: MINIPIPE_COMM_TIMEOUT_S when set, else 300.
double default_timeout_seconds();

class Communicator {
  public:
    virtual ~Communicator() = default;

    virtual int rank() const = 0;        // rank in this group
    virtual int size() const = 0;        // ranks in this group
    virtual int local_rank() const = 0;  // rank among the processes of this host (whole job)
    virtual Backend backend() const = 0;  // Mpi or Nccl, never Auto
    // The GPU this rank's communicator uses (NCCL), or -1 when it moves tensors through MPI.
    virtual int device_index() const = 0;

    // Blocking point-to-point: returns when this rank's side is complete. Every transfer is
    // matched by a header handshake, so a send also waits for the receiver to post its
    // receive (like NCCL, unlike an eager MPI_Send): a schedule that deadlocks under NCCL
    // deadlocks here too, and the timeout reports it.
    void send(const Tensor& tensor, int peer, int tag = 0);
    void recv(const Tensor& tensor, int peer, int tag = 0);
    // A batch of sends and receives that progress together and all complete before it returns
    // (ncclGroupStart/End; Isend/Irecv + wait). 1F1B's "send activation forward, receive
    // gradient from the next stage" must be one batch: issued one after the other, both stages
    // would wait in their send. At most one transfer per (direction, peer, tag) in a batch.
    virtual void exchange(const std::vector<Transfer>& batch) = 0;

    // In place on every rank; shapes and dtypes must agree across the group (checked; a
    // mismatch throws on every rank naming each rank's shape).
    virtual void all_reduce(const Tensor& tensor, ReduceOp op) = 0;
    virtual void broadcast(const Tensor& tensor, int root) = 0;
    virtual void barrier() = 0;

    // Collective: ranks with the same color form a sub-group, ordered by key (default: this
    // rank). A negative color joins no group and gets nullptr. The sub-group uses this
    // communicator's backend unless `backend` says otherwise (Auto re-decides for the group).
    virtual std::unique_ptr<Communicator> split(int color, std::optional<int> key = std::nullopt,
                                                std::optional<Backend> backend = std::nullopt) = 0;

    // How long a transfer or collective may wait before this rank prints what it was waiting
    // for and aborts the job.
    double timeout_seconds() const { return timeout_seconds_; }
    void set_timeout_seconds(double seconds);

    int max_tag() const { return max_tag_; }

  protected:
    // Argument checks shared by the backends: peers in range, tags in range, tensors defined,
    // no duplicate (direction, peer, tag). Throws std::invalid_argument naming the values.
    void validate_batch(const std::vector<Transfer>& batch, const char* op) const;

    double timeout_seconds_ = 300.0;
    int max_tag_ = 32767 / 3 - 1;  // backends lower it to what their transport allows
};

// The device a tensor is staged on to travel through `communicator`: under NCCL (device_index()
// >= 0) the rank's own device, `rank_device`; under MPI, which moves host memory, the CPU.
inline Device staging_device(const Communicator& communicator, Device rank_device) {
    return communicator.device_index() >= 0 ? rank_device : Device::cpu();
}

}  // namespace mp::comm
