// The transfer header and its handshake, the collective agreement check, and the timed wait
// shared by MpiCommunicator and NcclCommunicator (which runs its handshakes over MPI too).
#include "comm/protocol.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "comm/check.h"
#include "comm/deadline.h"
#include "comm/mpi_runtime.h"

namespace mp::comm::detail {

namespace {
using Clock = std::chrono::steady_clock;

std::string dtype_str(int32_t dtype) {
    if (dtype < 0 || dtype > static_cast<int32_t>(DType::BFloat16)) return str("dtype#", dtype);
    return dtype_name(static_cast<DType>(dtype));
}

// True when the request has completed (and frees it).
bool test(MPI_Request& request) {
    if (request == MPI_REQUEST_NULL) return true;
    int done = 0;
    MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    return done != 0;
}

std::mutex g_hooks_mutex;
std::map<int, std::function<void()>> g_abort_hooks;
int g_next_hook_id = 1;
}  // namespace

WireHeader make_header(const Tensor& tensor, int rank, int extra, const char* op) {
    MP_REQUIRE(tensor.defined(), op, ": the tensor is undefined");
    MP_REQUIRE(tensor.dim() <= kMaxDims, op, ": tensors of at most ", kMaxDims, " dimensions can be sent; got ",
               tensor.describe());
    WireHeader header;
    header.dtype = static_cast<int32_t>(tensor.dtype());
    header.ndim = static_cast<int32_t>(tensor.dim());
    header.rank = rank;
    header.extra = extra;
    for (int d = 0; d < header.ndim; ++d) header.dims[d] = tensor.shape()[static_cast<size_t>(d)];
    return header;
}

std::string signature_str(const WireHeader& header) {
    if (header.magic != kHeaderMagic) return "<not a minipipe header>";
    std::ostringstream out;
    out << dtype_str(header.dtype) << "(";
    for (int d = 0; d < header.ndim && d < kMaxDims; ++d) out << (d ? ", " : "") << header.dims[d];
    out << ")";
    return out.str();
}

bool same_signature(const WireHeader& a, const WireHeader& b) {
    if (a.magic != kHeaderMagic || b.magic != kHeaderMagic) return false;
    if (a.dtype != b.dtype || a.ndim != b.ndim || a.extra != b.extra) return false;
    for (int d = 0; d < a.ndim; ++d)
        if (a.dims[d] != b.dims[d]) return false;
    return true;
}

int max_user_tag(MPI_Comm comm) {
    void* value = nullptr;
    int found = 0;
    MPI_CHECK(MPI_Comm_get_attr(comm, MPI_TAG_UB, &value, &found));
    int tag_upper_bound = found ? *static_cast<int*>(value) : 32767;  // 32767: the MPI minimum
    return (tag_upper_bound - 2) / 3;
}

std::vector<std::string> handshake(MPI_Comm comm, int rank, const std::vector<Transfer>& batch,
                                   double timeout_seconds) {
    const size_t n = batch.size();
    // Per transfer: what this rank posts (its header or its answer) and what it receives.
    std::vector<WireHeader> outgoing(n), incoming(n);
    std::vector<MPI_Request> send_request(n, MPI_REQUEST_NULL), recv_request(n, MPI_REQUEST_NULL);
    std::vector<bool> answered(n, false);  // receives: the ack has been posted
    std::vector<std::string> errors(n);

    for (size_t i = 0; i < n; ++i) {
        const Transfer& t = batch[i];
        if (t.kind == Transfer::Kind::Send) {
            outgoing[i] = make_header(t.tensor, rank, 0, "send");
            MPI_CHECK(MPI_Isend(&outgoing[i], sizeof(WireHeader), MPI_BYTE, t.peer, header_tag(t.tag), comm,
                                &send_request[i]));
            MPI_CHECK(MPI_Irecv(&incoming[i], sizeof(WireHeader), MPI_BYTE, t.peer, ack_tag(t.tag), comm,
                                &recv_request[i]));
        } else {
            MPI_CHECK(MPI_Irecv(&incoming[i], sizeof(WireHeader), MPI_BYTE, t.peer, header_tag(t.tag), comm,
                                &recv_request[i]));
        }
    }

    const Clock::time_point deadline = deadline_in(timeout_seconds);
    Backoff backoff;
    size_t remaining = n;
    std::vector<bool> finished(n, false);
    while (remaining > 0) {
        bool progressed = false;
        for (size_t i = 0; i < n; ++i) {
            if (finished[i]) continue;
            const Transfer& t = batch[i];
            if (t.kind == Transfer::Kind::Recv && !answered[i] && test(recv_request[i])) {
                // The sender's header arrived: compare with what this rank expects and answer.
                WireHeader expected = make_header(t.tensor, rank, 0, "recv");
                if (!same_signature(incoming[i], expected)) {
                    expected.status = 1;
                    errors[i] = str("recv from rank ", t.peer, " tag ", t.tag, ": this rank (", rank, ") expects ",
                                    signature_str(expected), " but the sender sends ", signature_str(incoming[i]));
                }
                outgoing[i] = expected;
                MPI_CHECK(MPI_Isend(&outgoing[i], sizeof(WireHeader), MPI_BYTE, t.peer, ack_tag(t.tag), comm,
                                    &send_request[i]));
                answered[i] = true;
                progressed = true;
            }
            bool recv_done = t.kind == Transfer::Kind::Recv ? answered[i] : test(recv_request[i]);
            if (recv_done && test(send_request[i])) {
                if (t.kind == Transfer::Kind::Send && incoming[i].status != 0) {
                    errors[i] = str("send to rank ", t.peer, " tag ", t.tag, ": this rank (", rank, ") sends ",
                                    signature_str(outgoing[i]), " but the receiver expects ",
                                    signature_str(incoming[i]));
                }
                finished[i] = true;
                --remaining;
                progressed = true;
            }
        }
        if (remaining == 0) break;
        if (progressed) {
            backoff.reset();
            continue;
        }
        if (Clock::now() > deadline) {
            for (size_t i = 0; i < n; ++i) {
                if (finished[i]) continue;
                const Transfer& t = batch[i];
                std::string stage = t.kind == Transfer::Kind::Send
                                        ? "the receiver to post a matching recv (its answer to our header)"
                                        : "the sender's header (no matching send has arrived)";
                abort_job_on_timeout(str(describe(t), ": waiting for ", stage), timeout_seconds);
            }
        }
        backoff.pause();
    }
    return errors;
}

void throw_if_mismatched(const std::vector<std::string>& errors, const char* op) {
    std::string message;
    for (const std::string& error : errors)
        if (!error.empty()) message += (message.empty() ? "" : "; ") + error;
    if (!message.empty()) throw std::invalid_argument(str(op, ": shape/dtype mismatch: ", message));
}

void post_payload(MPI_Comm comm, const Transfer& transfer, void* buffer, size_t bytes,
                  std::vector<MPI_Request>& requests, std::vector<size_t>& owner, size_t transfer_index) {
    constexpr size_t kChunk = size_t{1} << 30;
    char* base = static_cast<char*>(buffer);
    for (size_t offset = 0; offset < bytes; offset += kChunk) {
        int count = static_cast<int>(std::min(kChunk, bytes - offset));
        MPI_Request request = MPI_REQUEST_NULL;
        if (transfer.kind == Transfer::Kind::Send)
            MPI_CHECK(MPI_Isend(base + offset, count, MPI_BYTE, transfer.peer, payload_tag(transfer.tag), comm,
                                &request));
        else
            MPI_CHECK(MPI_Irecv(base + offset, count, MPI_BYTE, transfer.peer, payload_tag(transfer.tag), comm,
                                &request));
        requests.push_back(request);
        owner.push_back(transfer_index);
    }
}

void check_collective_agreement(MPI_Comm comm, int rank, int size, const Tensor& tensor, int extra,
                                const std::string& op, double timeout_seconds) {
    WireHeader mine = make_header(tensor, rank, extra, op.c_str());
    std::vector<WireHeader> all(static_cast<size_t>(size));
    std::vector<MPI_Request> request(1, MPI_REQUEST_NULL);
    MPI_CHECK(MPI_Iallgather(&mine, sizeof(WireHeader), MPI_BYTE, all.data(), sizeof(WireHeader), MPI_BYTE, comm,
                             &request[0]));
    wait_all(request, timeout_seconds, [&](size_t) {
        return str(op, " ", tensor.describe(), " (", tensor.nbytes(), " bytes) over a group of ", size,
                   " ranks: waiting for every rank of the group to join");
    });
    bool agree = true;
    for (const WireHeader& other : all) agree = agree && same_signature(other, all[0]);
    if (agree) return;
    std::string listing;
    for (int r = 0; r < size; ++r)
        listing += str(r ? ", " : "", "rank ", r, " ", signature_str(all[static_cast<size_t>(r)]),
                       all[static_cast<size_t>(r)].extra != mine.extra ? str(" [op/root ", all[static_cast<size_t>(r)].extra, "]") : "");
    throw std::invalid_argument(str(op, ": the ranks disagree on the tensor (shape, dtype or op/root): ", listing));
}

void wait_all(std::vector<MPI_Request>& requests, double timeout_seconds,
              const std::function<std::string(size_t)>& describe_pending) {
    const Clock::time_point deadline = deadline_in(timeout_seconds);
    Backoff backoff;
    size_t first_pending = 0;
    while (true) {
        while (first_pending < requests.size() && test(requests[first_pending])) {
            ++first_pending;
            backoff.reset();
        }
        if (first_pending == requests.size()) return;
        if (Clock::now() > deadline) abort_job_on_timeout(describe_pending(first_pending), timeout_seconds);
        backoff.pause();
    }
}

void Backoff::pause() {
    // Each MPI_Test also drives MPI's progress (a large message moves fragment by fragment
    // inside these calls), so a wait that is moving data must poll often: yield for the first
    // 50 ms, then sleep 50 us, then 200 us once the wait is clearly a long one (a pipeline bubble).
    if (polls_ == 0) started_ = std::chrono::steady_clock::now();
    ++polls_;
    double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    if (waited < 0.05) {
        std::this_thread::yield();
    } else {
        std::this_thread::sleep_for(std::chrono::microseconds(waited < 1.0 ? 50 : 200));
    }
}

void abort_job_on_timeout(const std::string& waiting_for, double timeout_seconds) {
    int world_rank = -1;
    std::string host = "?";
    if (MpiRuntime::exists()) {
        world_rank = MpiRuntime::instance().world_rank();
        host = MpiRuntime::instance().host();
    }
    std::fprintf(stderr,
                 "minipipe comm: rank %d (host %s): timed out after %g s waiting for %s. Aborting the job "
                 "(timeout: Communicator::set_timeout_seconds or MINIPIPE_COMM_TIMEOUT_S).\n",
                 world_rank, host.c_str(), timeout_seconds, waiting_for.c_str());
    std::fflush(stderr);
    run_abort_hooks();
    MPI_Abort(MPI_COMM_WORLD, 3);
    std::abort();  // MPI_Abort does not return; this only satisfies [[noreturn]]
}

int add_abort_hook(std::function<void()> hook) {
    std::lock_guard<std::mutex> lock(g_hooks_mutex);
    int id = g_next_hook_id++;
    g_abort_hooks[id] = std::move(hook);
    return id;
}

void remove_abort_hook(int id) {
    std::lock_guard<std::mutex> lock(g_hooks_mutex);
    g_abort_hooks.erase(id);
}

void run_abort_hooks() {
    std::map<int, std::function<void()>> hooks;
    {
        std::lock_guard<std::mutex> lock(g_hooks_mutex);
        hooks.swap(g_abort_hooks);
    }
    for (auto& entry : hooks) entry.second();
}

}  // namespace mp::comm::detail
