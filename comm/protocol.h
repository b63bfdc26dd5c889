// What both backends share under the Communicator interface: the small header that travels
// ahead of every transfer (dtype, sender, shape) and its handshake, the collective agreement
// check, and the timed wait that prints what it waited for and aborts the job instead of hanging.
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.h"

namespace mp::comm::detail {

constexpr int kMaxDims = 8;
constexpr int32_t kHeaderMagic = 0x6d706970;  // "mpip"

// Fixed-size, sent as MPI_BYTE. The sender fills it with what it sends; the receiver answers
// with the same struct holding what it expected and `status` (0: match, 1: mismatch).
struct WireHeader {
    int32_t magic = kHeaderMagic;
    int32_t status = 0;
    int32_t dtype = 0;
    int32_t ndim = 0;
    int32_t rank = 0;   // the rank that filled it in
    int32_t extra = 0;  // collectives: the reduce op / root, so those must agree too
    int64_t dims[kMaxDims] = {0};
};

WireHeader make_header(const Tensor& tensor, int rank, int extra, const char* op);
std::string signature_str(const WireHeader& header);  // "float32(4, 8)"
bool same_signature(const WireHeader& a, const WireHeader& b);

// Tags on the wire: each user tag owns three MPI tags (header, payload, ack).
inline int header_tag(int tag) { return 3 * tag; }
inline int payload_tag(int tag) { return 3 * tag + 1; }
inline int ack_tag(int tag) { return 3 * tag + 2; }
int max_user_tag(MPI_Comm comm);  // from MPI_TAG_UB

// Exchanges headers and acks for every transfer of the batch, all non-blocking, so any pattern
// of sends and receives progresses together. Returns one entry per transfer: empty when the
// receiver's expectation matched the sender's tensor, else the error text (known on both
// ranks). Always completes every message it posted, so the communicator stays usable.
std::vector<std::string> handshake(MPI_Comm comm, int rank, const std::vector<Transfer>& batch,
                                   double timeout_seconds);
// Throws std::invalid_argument with every mismatch of the batch, if any.
void throw_if_mismatched(const std::vector<std::string>& errors, const char* op);

// Posts the payload of one transfer as Isend/Irecv of `bytes` from/to `buffer` (in chunks of
// at most 1 GiB, since MPI counts are int), appending to `requests`.
void post_payload(MPI_Comm comm, const Transfer& transfer, void* buffer, size_t bytes,
                  std::vector<MPI_Request>& requests, std::vector<size_t>& owner, size_t transfer_index);

// Collective agreement: every rank contributes its header; all ranks then throw the same
// std::invalid_argument when shapes, dtypes or `extra` differ (naming each rank's), so a
// mismatched all_reduce fails loudly instead of hanging or mixing bytes.
void check_collective_agreement(MPI_Comm comm, int rank, int size, const Tensor& tensor, int extra,
                                const std::string& op, double timeout_seconds);

// Waits for all requests, polling MPI_Test with a growing pause. Past the deadline it prints
// `describe(index of the first request still pending)` and aborts the job.
void wait_all(std::vector<MPI_Request>& requests, double timeout_seconds,
              const std::function<std::string(size_t)>& describe);

// Pauses a polling loop: yields the core for the first 50 ms of a wait, then sleeps, so ranks
// oversubscribing a core leave it to the rank that has work. reset() when progress is made.
class Backoff {
  public:
    void pause();
    void reset() { polls_ = 0; }

  private:
    long polls_ = 0;
    std::chrono::steady_clock::time_point started_;
};

// Prints "minipipe comm: rank R (host H): timed out after S s waiting for <what>" on stderr,
// runs the registered abort hooks (ncclCommAbort), then MPI_Abort(MPI_COMM_WORLD). The one
// deliberate job-wide exit in the library: a hung peer cannot be recovered from.
[[noreturn]] void abort_job_on_timeout(const std::string& waiting_for, double timeout_seconds);

// Hooks run before MPI_Abort (NcclCommunicator registers ncclCommAbort). Returns an id.
int add_abort_hook(std::function<void()> hook);
void remove_abort_hook(int id);
void run_abort_hooks();  // each registered hook once (they are removed as they run)

}  // namespace mp::comm::detail
