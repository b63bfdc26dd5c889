// The decisions of the NCCL backend that need no GPU: the order in which a batch's sends and
// receives are issued (NCCL has no tags), and the polled wait with a deadline that ends init,
// finalize and teardown. Header-only and free of NCCL/MPI/CUDA headers, so CPU tests check it.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <numeric>
#include <tuple>
#include <vector>

#include "comm/communicator.h"
#include "comm/deadline.h"

namespace mp::comm::detail {

// NCCL matches the sends and receives between one pair of ranks in the order they are issued
// (inside a group, "point-to-point calls ... targeting the same peer ... are executed in
// order"). Issuing every batch sorted by (peer, tag) gives both ranks the same order for each
// direction, whatever order the caller listed them in, because a batch holds at most one
// transfer per (direction, peer, tag). Returns the indices of `batch` in issue order; within a
// (peer, tag) a send comes before a receive (the order of the two directions does not matter).
inline std::vector<size_t> nccl_issue_order(const std::vector<Transfer>& batch) {
    std::vector<size_t> order(batch.size());
    std::iota(order.begin(), order.end(), size_t{0});
    auto key = [&](size_t i) {
        const Transfer& t = batch[i];
        return std::make_tuple(t.peer, t.tag, t.kind == Transfer::Kind::Send ? 0 : 1);
    };
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
    return order;
}

// What one poll of an asynchronous operation saw.
enum class PollState { Pending, Done, Failed };
// How a wait ended.
enum class WaitResult { Done, Failed, TimedOut };

// Polls until `poll()` reports Done or Failed, or `now()` is past `deadline`; `pause()` runs
// between polls. The operation is polled before the clock is read, so one that finished by the
// deadline counts as Done even when the wait itself ran late. `poll` may throw.
template <typename Poll, typename Now, typename TimePoint, typename Pause>
WaitResult wait_with_deadline(Poll&& poll, Now&& now, TimePoint deadline, Pause&& pause) {
    while (true) {
        PollState state = poll();
        if (state == PollState::Done) return WaitResult::Done;
        if (state == PollState::Failed) return WaitResult::Failed;
        if (now() > deadline) return WaitResult::TimedOut;
        pause();
    }
}

// How a communicator was torn down.
enum class Teardown {
    Destroyed,              // finalize completed: destroyed (ncclCommDestroy)
    AbortedAfterError,      // finalize failed or an asynchronous error showed: ncclCommAbort
    AbortedAfterDeadline,   // finalize did not complete by the deadline: ncclCommAbort
};

// Teardown of a communicator: `finalize()` starts it (Done when it completed at once, Pending
// when it continues asynchronously, Failed on an error); a Pending finalize is polled with
// `poll()` until `deadline`. Only a completed finalize ends in `destroy()`; an error or the
// deadline ends in `abort()`, which also stops whatever still runs on the device. Exactly one
// of `destroy` and `abort` is called.
template <typename Finalize, typename Poll, typename Now, typename TimePoint, typename Pause, typename Destroy,
          typename Abort>
Teardown finalize_then_destroy(Finalize&& finalize, Poll&& poll, Now&& now, TimePoint deadline, Pause&& pause,
                               Destroy&& destroy, Abort&& abort) {
    PollState started = finalize();
    WaitResult result = started == PollState::Done     ? WaitResult::Done
                        : started == PollState::Failed ? WaitResult::Failed
                                                       : wait_with_deadline(poll, now, deadline, pause);
    if (result == WaitResult::Done) {
        destroy();
        return Teardown::Destroyed;
    }
    abort();
    return result == WaitResult::Failed ? Teardown::AbortedAfterError : Teardown::AbortedAfterDeadline;
}

}  // namespace mp::comm::detail
