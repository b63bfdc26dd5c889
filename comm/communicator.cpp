// The backend-independent parts of Communicator: names, the timeout default (and its
// environment variable), send/recv as one-transfer batches, and the batch argument checks.
#include "comm/communicator.h"

#include <cmath>
#include <set>
#include <tuple>

#include "comm/deadline.h"

namespace mp::comm {

const char* reduce_op_name(ReduceOp op) { return op == ReduceOp::Sum ? "sum" : "max"; }

std::string describe(const Transfer& transfer) {
    bool is_send = transfer.kind == Transfer::Kind::Send;
    std::string tensor = transfer.tensor.defined() ? transfer.tensor.describe() : "<undefined tensor>";
    size_t bytes = transfer.tensor.defined() ? transfer.tensor.nbytes() : 0;
    return str(is_send ? "send " : "recv ", tensor, is_send ? " to rank " : " from rank ", transfer.peer, " tag ",
               transfer.tag, " (", bytes, " bytes)");
}

double default_timeout_seconds() { return detail::timeout_seconds_from_environment().value_or(300.0); }

void Communicator::set_timeout_seconds(double seconds) {
    MP_REQUIRE(std::isfinite(seconds) && seconds > 0 && seconds <= detail::kMaxTimeoutSeconds, "set_timeout_seconds: ",
               seconds, " s is not a duration in (0, ", detail::kMaxTimeoutSeconds, "] s");
    timeout_seconds_ = seconds;
}

void Communicator::send(const Tensor& tensor, int peer, int tag) { exchange({Transfer::send(tensor, peer, tag)}); }

void Communicator::recv(const Tensor& tensor, int peer, int tag) { exchange({Transfer::recv(tensor, peer, tag)}); }

void Communicator::validate_batch(const std::vector<Transfer>& batch, const char* op) const {
    std::set<std::tuple<int, int, int>> seen;  // (kind, peer, tag)
    for (const Transfer& t : batch) {
        MP_REQUIRE(t.tensor.defined(), op, ": ", describe(t), ": the tensor is undefined");
        MP_REQUIRE(t.peer >= 0 && t.peer < size(), op, ": ", describe(t), ": peer ", t.peer,
                   " is out of range for a group of ", size(), " ranks");
        MP_REQUIRE(t.tag >= 0 && t.tag <= max_tag_, op, ": ", describe(t), ": tag ", t.tag,
                   " is out of range [0, ", max_tag_, "]");
        bool fresh = seen.insert({static_cast<int>(t.kind), t.peer, t.tag}).second;
        MP_REQUIRE(fresh, op, ": ", describe(t), ": the batch already has a ",
                   t.kind == Transfer::Kind::Send ? "send to" : "recv from", " rank ", t.peer, " with tag ", t.tag,
                   "; give each one its own tag");
    }
}

}  // namespace mp::comm
