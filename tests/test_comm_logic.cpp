// The NCCL backend's GPU-free decisions (comm/nccl_logic.h): the (peer, tag) issue order that
// makes tag-less NCCL match a batch's transfers right, and the polled wait with a deadline that
// ends init and teardown, driven here by fake poll functions and a fake clock.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <stdexcept>
#include <thread>
#include <vector>

#include "comm/nccl_logic.h"

namespace mp::comm::detail {
namespace {

Transfer send_to(int peer, int tag) { return Transfer::send(Tensor(), peer, tag); }
Transfer recv_from(int peer, int tag) { return Transfer::recv(Tensor(), peer, tag); }

// The tags of the transfers of one direction with one peer, in issue order: what NCCL matches
// against the other rank's list for the opposite direction.
std::vector<int> issued_tags(const std::vector<Transfer>& batch, Transfer::Kind kind, int peer) {
    std::vector<int> tags;
    for (size_t i : nccl_issue_order(batch))
        if (batch[i].kind == kind && batch[i].peer == peer) tags.push_back(batch[i].tag);
    return tags;
}

TEST(NcclIssueOrder, ReceivesListedInReverseAreIssuedInTagOrder) {
    // The bug: rank 0 sends tags 1, 2; rank 1 lists its receives as 2, 1 in one batch.
    std::vector<Transfer> sender = {send_to(1, 1), send_to(1, 2)};
    std::vector<Transfer> receiver = {recv_from(0, 2), recv_from(0, 1)};
    EXPECT_EQ(nccl_issue_order(sender), (std::vector<size_t>{0, 1}));
    EXPECT_EQ(nccl_issue_order(receiver), (std::vector<size_t>{1, 0}));
    EXPECT_EQ(issued_tags(sender, Transfer::Kind::Send, 1), issued_tags(receiver, Transfer::Kind::Recv, 0));
}

TEST(NcclIssueOrder, BothSidesAgreeWhateverOrderEitherListsTheirTransfers) {
    // Every listing of three sends against every listing of the three matching receives.
    std::vector<int> tags = {7, 0, 3};
    std::vector<int> send_listing = tags;
    std::sort(send_listing.begin(), send_listing.end());
    int pairs = 0;
    do {
        std::vector<int> recv_listing = tags;
        std::sort(recv_listing.begin(), recv_listing.end());
        do {
            std::vector<Transfer> sender, receiver;
            for (int tag : send_listing) sender.push_back(send_to(1, tag));
            for (int tag : recv_listing) receiver.push_back(recv_from(0, tag));
            EXPECT_EQ(issued_tags(sender, Transfer::Kind::Send, 1), (std::vector<int>{0, 3, 7}));
            EXPECT_EQ(issued_tags(receiver, Transfer::Kind::Recv, 0), (std::vector<int>{0, 3, 7}));
            ++pairs;
        } while (std::next_permutation(recv_listing.begin(), recv_listing.end()));
    } while (std::next_permutation(send_listing.begin(), send_listing.end()));
    EXPECT_EQ(pairs, 36);
}

TEST(NcclIssueOrder, GroupsByPeerThenTagWithSendBeforeRecv) {
    // A 1F1B steady-state batch of a middle stage (rank 1 of 3), listed as the engine might.
    std::vector<Transfer> batch = {send_to(2, 5), recv_from(2, 6), send_to(0, 6), recv_from(0, 5),
                                   recv_from(2, 4), send_to(2, 4)};
    std::vector<size_t> order = nccl_issue_order(batch);
    EXPECT_EQ(order, (std::vector<size_t>{3, 2, 5, 4, 0, 1}));
    // A permutation of the batch: nothing lost, nothing issued twice.
    std::vector<size_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, (std::vector<size_t>{0, 1, 2, 3, 4, 5}));
}

TEST(NcclIssueOrder, SelfSendsAndReceivesPairUpByTag) {
    // A one-rank communicator: the sends to itself and the receives from itself are matched in
    // issue order, so the n-th send must carry the tag of the n-th receive.
    std::vector<Transfer> batch = {send_to(0, 1), send_to(0, 2), recv_from(0, 2), recv_from(0, 1)};
    EXPECT_EQ(issued_tags(batch, Transfer::Kind::Send, 0), (std::vector<int>{1, 2}));
    EXPECT_EQ(issued_tags(batch, Transfer::Kind::Recv, 0), (std::vector<int>{1, 2}));
    EXPECT_TRUE(nccl_issue_order({}).empty());
}

// A clock that only moves when the wait pauses: one tick per pause.
struct FakeClock {
    int ticks = 0;
    int polls = 0;
    int pauses = 0;
    auto now() { return [this] { return ticks; }; }
    auto pause() {
        return [this] {
            ++pauses;
            ++ticks;
        };
    }
};

TEST(WaitWithDeadline, ReturnsDoneWhenThePollFinishes) {
    FakeClock clock;
    auto finishes_on_third_poll = [&] { return ++clock.polls == 3 ? PollState::Done : PollState::Pending; };
    EXPECT_EQ(wait_with_deadline(finishes_on_third_poll, clock.now(), 100, clock.pause()), WaitResult::Done);
    EXPECT_EQ(clock.polls, 3);
    EXPECT_EQ(clock.pauses, 2);
}

TEST(WaitWithDeadline, ReturnsFailedOnAnError) {
    FakeClock clock;
    auto fails_on_second_poll = [&] { return ++clock.polls == 2 ? PollState::Failed : PollState::Pending; };
    EXPECT_EQ(wait_with_deadline(fails_on_second_poll, clock.now(), 100, clock.pause()), WaitResult::Failed);
    EXPECT_EQ(clock.polls, 2);
}

TEST(WaitWithDeadline, NeverFinishingEndsAtTheDeadline) {
    FakeClock clock;
    auto never = [&] {
        ++clock.polls;
        return PollState::Pending;
    };
    const int deadline = 5;
    EXPECT_EQ(wait_with_deadline(never, clock.now(), deadline, clock.pause()), WaitResult::TimedOut);
    // Polled at ticks 0..5 (not yet past the deadline) and once more at tick 6, then stopped.
    EXPECT_EQ(clock.polls, deadline + 2);
    EXPECT_EQ(clock.ticks, deadline + 1);
}

TEST(WaitWithDeadline, APassedDeadlineStillPollsOnce) {
    FakeClock late;
    auto done = [&] {
        ++late.polls;
        return PollState::Done;
    };
    late.ticks = 10;
    EXPECT_EQ(wait_with_deadline(done, late.now(), 5, late.pause()), WaitResult::Done);
    EXPECT_EQ(late.polls, 1);

    FakeClock stuck;
    stuck.ticks = 10;
    auto pending = [&] {
        ++stuck.polls;
        return PollState::Pending;
    };
    EXPECT_EQ(wait_with_deadline(pending, stuck.now(), 5, stuck.pause()), WaitResult::TimedOut);
    EXPECT_EQ(stuck.polls, 1);
    EXPECT_EQ(stuck.pauses, 0);
}

TEST(WaitWithDeadline, AnExceptionFromThePollPropagates) {
    FakeClock clock;
    auto throws = []() -> PollState { throw std::runtime_error("ncclCommGetAsyncError failed"); };
    EXPECT_THROW(wait_with_deadline(throws, clock.now(), 5, clock.pause()), std::runtime_error);
}

TEST(WaitWithDeadline, RealClockDeadline) {
    // 20 ms on the steady clock with 1 ms pauses: the wait ends no earlier than the deadline.
    auto start = std::chrono::steady_clock::now();
    auto never = [] { return PollState::Pending; };
    auto now = [] { return std::chrono::steady_clock::now(); };
    auto sleep = [] { std::this_thread::sleep_for(std::chrono::milliseconds(1)); };
    WaitResult result = wait_with_deadline(never, now, deadline_in(0.02), sleep);
    EXPECT_EQ(result, WaitResult::TimedOut);
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(20));
}

// Records which of destroy and abort a teardown called.
struct FakeComm {
    FakeClock clock;
    int destroyed = 0;
    int aborted = 0;
    Teardown tear_down(PollState finalize_returns, std::function<PollState(int)> poll_number, int deadline = 5) {
        return finalize_then_destroy([&] { return finalize_returns; }, [&] { return poll_number(++clock.polls); },
                                     clock.now(), deadline, clock.pause(), [&] { ++destroyed; }, [&] { ++aborted; });
    }
};

TEST(FinalizeThenDestroy, AFinalizeThatCompletesAtOnceIsDestroyed) {
    FakeComm comm;
    EXPECT_EQ(comm.tear_down(PollState::Done, [](int) { return PollState::Failed; }), Teardown::Destroyed);
    EXPECT_EQ(comm.clock.polls, 0);
    EXPECT_EQ(comm.destroyed, 1);
    EXPECT_EQ(comm.aborted, 0);
}

TEST(FinalizeThenDestroy, AFinalizeThatCompletesLaterIsDestroyed) {
    FakeComm comm;
    auto quiet_on_fourth = [](int n) { return n == 4 ? PollState::Done : PollState::Pending; };
    EXPECT_EQ(comm.tear_down(PollState::Pending, quiet_on_fourth), Teardown::Destroyed);
    EXPECT_EQ(comm.clock.polls, 4);
    EXPECT_EQ(comm.destroyed, 1);
    EXPECT_EQ(comm.aborted, 0);
}

TEST(FinalizeThenDestroy, AnAsynchronousErrorAborts) {
    FakeComm comm;
    auto error_on_second = [](int n) { return n == 2 ? PollState::Failed : PollState::Pending; };
    EXPECT_EQ(comm.tear_down(PollState::Pending, error_on_second), Teardown::AbortedAfterError);
    EXPECT_EQ(comm.destroyed, 0);
    EXPECT_EQ(comm.aborted, 1);
}

TEST(FinalizeThenDestroy, AFailedFinalizeAbortsWithoutPolling) {
    FakeComm comm;
    EXPECT_EQ(comm.tear_down(PollState::Failed, [](int) { return PollState::Done; }), Teardown::AbortedAfterError);
    EXPECT_EQ(comm.clock.polls, 0);
    EXPECT_EQ(comm.destroyed, 0);
    EXPECT_EQ(comm.aborted, 1);
}

TEST(FinalizeThenDestroy, AFinalizeThatNeverCompletesAbortsAtTheDeadline) {
    FakeComm comm;
    EXPECT_EQ(comm.tear_down(PollState::Pending, [](int) { return PollState::Pending; }, 3),
              Teardown::AbortedAfterDeadline);
    EXPECT_EQ(comm.clock.ticks, 4);
    EXPECT_EQ(comm.destroyed, 0);
    EXPECT_EQ(comm.aborted, 1);
}

}  // namespace
}  // namespace mp::comm::detail
