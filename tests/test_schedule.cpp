// Schedules as data and the validator: the generators' structure (naive, gpipe, 1f1b for every
// K in 1..8 and M in 1..16, boundary stages, 1F1B's phases and groups), the validator accepting
// all of them, and deliberately broken schedules, each rejected with a message naming the action.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pipeline/schedule.h"
#include "pipeline/validate.h"
#include "tests/support/test_util.h"

using namespace mp::pipeline;
using mp::testing::expect_invalid_argument;

namespace {

constexpr int kMaxStages = 8;
constexpr int kMaxMicroBatches = 16;

// Position of the first `kind` action on micro-batch `micro_batch` in `list`; fails the test if absent.
size_t index_of(const std::vector<Action>& list, ActionKind kind, int micro_batch) {
    for (size_t index = 0; index < list.size(); ++index)
        if (list[index].kind == kind && list[index].micro_batch == micro_batch) return index;
    ADD_FAILURE() << "no " << to_string(Action{kind, micro_batch}) << " in the list";
    return 0;
}

int count_of(const std::vector<Action>& list, ActionKind kind) {
    int count = 0;
    for (const Action& action : list) count += action.kind == kind ? 1 : 0;
    return count;
}

// Expects validate() to fail with exactly `expected`.
void expect_rejected(const Schedule& schedule, const std::string& expected) {
    ValidationResult result = validate(schedule);
    EXPECT_FALSE(result.ok) << describe(schedule);
    EXPECT_EQ(result.error, expected) << describe(schedule);
}

}  // namespace

TEST(Action, ToStringNamesKindAndMicroBatch) {
    EXPECT_EQ(to_string(Action{ActionKind::Forward, 3}), "F3");
    EXPECT_EQ(to_string(Action{ActionKind::Backward, 0}), "B0");
    EXPECT_EQ(to_string(Action{ActionKind::SendActivation, 2}), "SendAct2");
    EXPECT_EQ(to_string(Action{ActionKind::RecvActivation, 12}), "RecvAct12");
    EXPECT_EQ(to_string(Action{ActionKind::SendGradient, 4}), "SendGrad4");
    EXPECT_EQ(to_string(Action{ActionKind::RecvGradient, 1}), "RecvGrad1");
    EXPECT_EQ(to_string(Action{ActionKind::OptimizerStep, -1}), "Step");
}

TEST(Action, PeersAndMatchingKinds) {
    EXPECT_EQ(peer_stage(2, ActionKind::SendActivation), 3);
    EXPECT_EQ(peer_stage(2, ActionKind::RecvGradient), 3);
    EXPECT_EQ(peer_stage(2, ActionKind::RecvActivation), 1);
    EXPECT_EQ(peer_stage(2, ActionKind::SendGradient), 1);
    EXPECT_EQ(matching_kind(ActionKind::SendActivation), ActionKind::RecvActivation);
    EXPECT_EQ(matching_kind(ActionKind::RecvGradient), ActionKind::SendGradient);
    expect_invalid_argument([] { matching_kind(ActionKind::Forward); }, {"matching_kind", "F"});
    expect_invalid_argument([] { peer_stage(0, ActionKind::OptimizerStep); }, {"peer_stage", "Step"});
}

TEST(MakeSchedule, RejectsBadKindAndCounts) {
    expect_invalid_argument([] { make_schedule("zigzag", 4, 8); }, {"make_schedule", "'zigzag'"});
    expect_invalid_argument([] { make_schedule("1f1b", 0, 8); }, {"make_schedule", "stages", "0"});
    expect_invalid_argument([] { make_schedule("gpipe", 4, 0); }, {"make_schedule", "micro_batches", "0"});
    expect_invalid_argument([] { make_schedule("naive", -2, 1); }, {"stages", "-2"});
}

TEST(MakeSchedule, KindAndSizesAreRecorded) {
    for (const std::string& kind : schedule_kinds()) {
        Schedule schedule = make_schedule(kind, 3, 5);
        EXPECT_EQ(schedule.kind, kind);
        EXPECT_EQ(schedule.stages, 3);
        EXPECT_EQ(schedule.micro_batches, 5);
        EXPECT_EQ(schedule.actions.size(), 3u);
    }
}

// Every stage forwards and backwards each micro-batch once, sends and receives exactly what its
// position in the pipeline implies, and ends with its one optimizer step.
TEST(MakeSchedule, EveryStageDoesEachMicroBatchOnceAndStepsLast) {
    for (const std::string& kind : schedule_kinds()) {
        for (int stages = 1; stages <= kMaxStages; ++stages) {
            for (int micro_batches = 1; micro_batches <= kMaxMicroBatches; ++micro_batches) {
                Schedule schedule = make_schedule(kind, stages, micro_batches);
                for (int stage = 0; stage < stages; ++stage) {
                    SCOPED_TRACE(kind + " K=" + std::to_string(stages) + " M=" + std::to_string(micro_batches) +
                                 " stage " + std::to_string(stage));
                    const std::vector<Action>& list = schedule.actions[stage];
                    const bool first = stage == 0;
                    const bool last = stage == stages - 1;
                    EXPECT_EQ(count_of(list, ActionKind::Forward), micro_batches);
                    EXPECT_EQ(count_of(list, ActionKind::Backward), micro_batches);
                    EXPECT_EQ(count_of(list, ActionKind::RecvActivation), first ? 0 : micro_batches);
                    EXPECT_EQ(count_of(list, ActionKind::SendGradient), first ? 0 : micro_batches);
                    EXPECT_EQ(count_of(list, ActionKind::SendActivation), last ? 0 : micro_batches);
                    EXPECT_EQ(count_of(list, ActionKind::RecvGradient), last ? 0 : micro_batches);
                    EXPECT_EQ(count_of(list, ActionKind::OptimizerStep), 1);
                    ASSERT_FALSE(list.empty());
                    EXPECT_EQ(list.back().kind, ActionKind::OptimizerStep);
                }
            }
        }
    }
}

// Under the strict model naive and gpipe need no groups: in each phase messages flow one way.
TEST(MakeSchedule, NaiveAndGpipeNeedNoBatchedGroups) {
    for (const std::string& kind : {std::string("naive"), std::string("gpipe")})
        for (int stages = 1; stages <= kMaxStages; ++stages)
            for (int micro_batches = 1; micro_batches <= kMaxMicroBatches; ++micro_batches)
                for (const std::vector<Action>& list : make_schedule(kind, stages, micro_batches).actions)
                    for (const Action& action : list) EXPECT_FALSE(action.batched_with_next) << kind;
}

TEST(MakeSchedule, GpipeDoesAllForwardsThenAllBackwards) {
    Schedule schedule = make_schedule("gpipe", 3, 4);
    EXPECT_EQ(describe(schedule),
              "stage 0: F0 SendAct0 F1 SendAct1 F2 SendAct2 F3 SendAct3 RecvGrad0 B0 RecvGrad1 B1 RecvGrad2 B2 "
              "RecvGrad3 B3 Step\n"
              "stage 1: RecvAct0 F0 SendAct0 RecvAct1 F1 SendAct1 RecvAct2 F2 SendAct2 RecvAct3 F3 SendAct3 "
              "RecvGrad0 B0 SendGrad0 RecvGrad1 B1 SendGrad1 RecvGrad2 B2 SendGrad2 RecvGrad3 B3 SendGrad3 Step\n"
              "stage 2: RecvAct0 F0 RecvAct1 F1 RecvAct2 F2 RecvAct3 F3 B0 SendGrad0 B1 SendGrad1 B2 SendGrad2 B3 "
              "SendGrad3 Step\n");
}

TEST(MakeSchedule, NaiveTakesOneMicroBatchAllTheWayThrough) {
    Schedule schedule = make_schedule("naive", 2, 2);
    EXPECT_EQ(describe(schedule),
              "stage 0: F0 SendAct0 RecvGrad0 B0 F1 SendAct1 RecvGrad1 B1 Step\n"
              "stage 1: RecvAct0 F0 B0 SendGrad0 RecvAct1 F1 B1 SendGrad1 Step\n");
}

// Megatron's three phases on K = 3, M = 4: stage s warms up with K - s - 1 forwards; the steady
// state pairs [SendAct m + RecvGrad k] and [SendGrad k + RecvAct m+1]; the last steady
// iteration sends its gradient alone; the cool-down receives, backwards and sends.
TEST(OneFOneB, ThreePhasesAndBatchedGroups) {
    Schedule schedule = make_schedule("1f1b", 3, 4);
    EXPECT_EQ(describe(schedule),
              "stage 0: F0 SendAct0 F1 SendAct1 F2 [SendAct2 RecvGrad0] B0 F3 [SendAct3 RecvGrad1] B1 "
              "RecvGrad2 B2 RecvGrad3 B3 Step\n"
              "stage 1: RecvAct0 F0 SendAct0 RecvAct1 F1 [SendAct1 RecvGrad0] B0 [SendGrad0 RecvAct2] F2 "
              "[SendAct2 RecvGrad1] B1 [SendGrad1 RecvAct3] F3 [SendAct3 RecvGrad2] B2 SendGrad2 RecvGrad3 B3 "
              "SendGrad3 Step\n"
              "stage 2: RecvAct0 F0 B0 [SendGrad0 RecvAct1] F1 B1 [SendGrad1 RecvAct2] F2 B2 [SendGrad2 RecvAct3] "
              "F3 B3 SendGrad3 Step\n");
}

// With M < K the early stages never reach a steady state: all forwards, then all backwards.
TEST(OneFOneB, FewerMicroBatchesThanStages) {
    Schedule schedule = make_schedule("1f1b", 4, 2);
    EXPECT_EQ(describe(schedule),
              "stage 0: F0 SendAct0 F1 SendAct1 RecvGrad0 B0 RecvGrad1 B1 Step\n"
              "stage 1: RecvAct0 F0 SendAct0 RecvAct1 F1 SendAct1 RecvGrad0 B0 SendGrad0 RecvGrad1 B1 SendGrad1 Step\n"
              "stage 2: RecvAct0 F0 SendAct0 RecvAct1 F1 [SendAct1 RecvGrad0] B0 SendGrad0 RecvGrad1 B1 SendGrad1 Step\n"
              "stage 3: RecvAct0 F0 B0 [SendGrad0 RecvAct1] F1 B1 SendGrad1 Step\n");
}

// Stage s runs min(K - s, M) forwards before its first backward (warm-up plus the first steady
// forward), then strictly alternates while forwards remain; backwards come in micro-batch order.
TEST(OneFOneB, WarmupLengthAndAlternation) {
    for (int stages = 1; stages <= kMaxStages; ++stages) {
        for (int micro_batches = 1; micro_batches <= kMaxMicroBatches; ++micro_batches) {
            Schedule schedule = make_schedule("1f1b", stages, micro_batches);
            for (int stage = 0; stage < stages; ++stage) {
                SCOPED_TRACE("K=" + std::to_string(stages) + " M=" + std::to_string(micro_batches) + " stage " +
                             std::to_string(stage));
                std::vector<Action> compute;
                for (const Action& action : schedule.actions[stage])
                    if (is_compute(action.kind)) compute.push_back(action);
                const int in_flight = std::min(stages - stage, micro_batches);
                int next_forward = 0, next_backward = 0;
                for (size_t i = 0; i < compute.size(); ++i) {
                    const Action& action = compute[i];
                    const bool in_warmup = static_cast<int>(i) < in_flight;
                    if (in_warmup) {
                        EXPECT_EQ(action, (Action{ActionKind::Forward, next_forward++}));
                    } else if (next_forward < micro_batches) {
                        // Steady state: B then F, starting with a backward.
                        const bool backward_slot = (i - in_flight) % 2 == 0;
                        if (backward_slot)
                            EXPECT_EQ(action, (Action{ActionKind::Backward, next_backward++}));
                        else
                            EXPECT_EQ(action, (Action{ActionKind::Forward, next_forward++}));
                    } else {
                        EXPECT_EQ(action, (Action{ActionKind::Backward, next_backward++}));
                    }
                }
                EXPECT_EQ(next_forward, micro_batches);
                EXPECT_EQ(next_backward, micro_batches);
            }
        }
    }
}

// Every group is a send and a receive with the same neighbour, the send first.
TEST(OneFOneB, GroupsAreOneSendAndOneReceiveWithTheSameNeighbour) {
    for (int stages = 1; stages <= kMaxStages; ++stages) {
        for (int micro_batches = 1; micro_batches <= kMaxMicroBatches; ++micro_batches) {
            Schedule schedule = make_schedule("1f1b", stages, micro_batches);
            for (int stage = 0; stage < stages; ++stage) {
                const std::vector<Action>& list = schedule.actions[stage];
                for (size_t i = 0; i < list.size(); ++i) {
                    if (!list[i].batched_with_next) continue;
                    ASSERT_LT(i + 1, list.size());
                    const Action& send = list[i];
                    const Action& receive = list[i + 1];
                    EXPECT_TRUE(is_send(send.kind)) << to_string(send);
                    EXPECT_TRUE(is_communication(receive.kind) && !is_send(receive.kind)) << to_string(receive);
                    EXPECT_FALSE(receive.batched_with_next);
                    EXPECT_EQ(peer_stage(stage, send.kind), peer_stage(stage, receive.kind));
                }
            }
        }
    }
}

// The headline property: every generated schedule runs to completion under the strict model.
TEST(Validate, AcceptsEveryGeneratedSchedule) {
    for (const std::string& kind : schedule_kinds()) {
        for (int stages = 1; stages <= kMaxStages; ++stages) {
            for (int micro_batches = 1; micro_batches <= kMaxMicroBatches; ++micro_batches) {
                Schedule schedule = make_schedule(kind, stages, micro_batches);
                ValidationResult result = validate(schedule);
                EXPECT_TRUE(result.ok) << kind << " K=" << stages << " M=" << micro_batches << ": " << result.error
                                       << "\n"
                                       << describe(schedule);
            }
        }
    }
}

// Two unbatched sends facing each other: stage 0 sends activation 1 while stage 1 sends
// gradient 0, and neither send completes until the other side posts its receive.
TEST(ValidateBroken, FacingUnbatchedSendsDeadlock) {
    Schedule schedule = make_schedule("1f1b", 2, 2);
    for (std::vector<Action>& list : schedule.actions)
        for (Action& action : list) action.batched_with_next = false;
    expect_rejected(schedule,
                    "stage 0 action 3 (SendAct1): waits forever: stage 1 is blocked at action 3 (SendGrad0), "
                    "which waits for stage 0");
}

// The deadlock is found between the two stages that wait for each other, not at stage 0, which
// only waits for them.
TEST(ValidateBroken, DeadlockDeepInThePipelineNamesTheFacingPair) {
    Schedule schedule = make_schedule("1f1b", 4, 8);
    for (Action& action : schedule.actions[2])
        if (action.kind == ActionKind::SendActivation) action.batched_with_next = false;
    for (Action& action : schedule.actions[3]) action.batched_with_next = false;
    expect_rejected(schedule,
                    "stage 2 action 5 (SendAct1): waits forever: stage 3 is blocked at action 3 (SendGrad0), "
                    "which waits for stage 2");
}

// A group posts all of its operations at once, so batching one side of the facing pair is enough.
TEST(ValidateBroken, BatchingOneSideOfTheFacingPairIsEnough) {
    Schedule schedule = make_schedule("1f1b", 2, 2);
    for (Action& action : schedule.actions[1]) action.batched_with_next = false;
    EXPECT_TRUE(validate(schedule).ok) << validate(schedule).error;
}

TEST(ValidateBroken, MissingSendWaitsForever) {
    Schedule schedule = make_schedule("gpipe", 2, 2);
    std::vector<Action>& stage0 = schedule.actions[0];
    stage0.erase(stage0.begin() + index_of(stage0, ActionKind::SendActivation, 1));
    expect_rejected(schedule,
                    "stage 1 action 2 (RecvAct1): waits forever: stage 0 never posts the matching SendAct "
                    "(it has 1 SendAct in all, this is the 2nd RecvAct)");
}

TEST(ValidateBroken, MissingReceiveOfActivation) {
    Schedule schedule = make_schedule("gpipe", 2, 2);
    std::vector<Action>& stage1 = schedule.actions[1];
    stage1.erase(stage1.begin() + index_of(stage1, ActionKind::RecvActivation, 1));
    expect_rejected(schedule,
                    "stage 1 action 2 (F1): forward of micro-batch 1 before its activation is received "
                    "(no earlier RecvAct1)");
}

TEST(ValidateBroken, MissingReceiveOfGradient) {
    Schedule schedule = make_schedule("1f1b", 3, 4);
    std::vector<Action>& stage1 = schedule.actions[1];
    stage1.erase(stage1.begin() + index_of(stage1, ActionKind::RecvGradient, 3));
    expect_rejected(schedule,
                    "stage 1 action 21 (B3): backward of micro-batch 3 before its gradient is received "
                    "(no earlier RecvGrad3)");
}

// Stage 1 receives micro-batch 1 first, but stage 0 sends micro-batch 0 first.
TEST(ValidateBroken, FifoOrderViolation) {
    Schedule schedule = make_schedule("gpipe", 2, 2);
    schedule.actions[1] = {{ActionKind::RecvActivation, 1}, {ActionKind::RecvActivation, 0},
                           {ActionKind::Forward, 0},        {ActionKind::Forward, 1},
                           {ActionKind::Backward, 0},       {ActionKind::SendGradient, 0},
                           {ActionKind::Backward, 1},       {ActionKind::SendGradient, 1},
                           {ActionKind::OptimizerStep, -1}};
    expect_rejected(schedule,
                    "stage 1 action 0 (RecvAct1): receives micro-batch 1, but messages arrive in FIFO order and "
                    "the oldest unmatched activation from stage 0 is stage 0 action 1 (SendAct0)");
}

// Gradients sent out of order: the receive side is named, whichever side sees the mismatch.
TEST(ValidateBroken, FifoOrderViolationOfGradients) {
    Schedule schedule = make_schedule("gpipe", 2, 2);
    std::vector<Action>& stage1 = schedule.actions[1];
    stage1 = {{ActionKind::RecvActivation, 0}, {ActionKind::Forward, 0},      {ActionKind::RecvActivation, 1},
              {ActionKind::Forward, 1},        {ActionKind::Backward, 1},     {ActionKind::SendGradient, 1},
              {ActionKind::Backward, 0},       {ActionKind::SendGradient, 0}, {ActionKind::OptimizerStep, -1}};
    expect_rejected(schedule,
                    "stage 0 action 4 (RecvGrad0): receives micro-batch 0, but messages arrive in FIFO order and "
                    "the oldest unmatched gradient from stage 1 is stage 1 action 5 (SendGrad1)");
}

TEST(ValidateBroken, BackwardBeforeForward) {
    Schedule schedule = make_schedule("gpipe", 1, 2);  // F0 F1 B0 B1 Step
    std::swap(schedule.actions[0][0], schedule.actions[0][2]);
    expect_rejected(schedule, "stage 0 action 0 (B0): backward of micro-batch 0 before its forward (no earlier F0)");
}

TEST(ValidateBroken, DuplicateForward) {
    Schedule schedule = make_schedule("1f1b", 2, 3);
    std::vector<Action>& stage0 = schedule.actions[0];
    stage0[index_of(stage0, ActionKind::Forward, 1)].micro_batch = 0;
    expect_rejected(schedule, "stage 0 action 2 (F0): forwards micro-batch 0 a second time");
}

TEST(ValidateBroken, DuplicateBackwardAndDuplicateMessages) {
    Schedule schedule = make_schedule("gpipe", 1, 2);
    schedule.actions[0][3].micro_batch = 0;  // F0 F1 B0 B0
    expect_rejected(schedule, "stage 0 action 3 (B0): backwards micro-batch 0 a second time");

    schedule = make_schedule("gpipe", 2, 2);
    schedule.actions[0][3].micro_batch = 0;  // F0 SendAct0 F1 SendAct0
    expect_rejected(schedule, "stage 0 action 3 (SendAct0): sends the activation of micro-batch 0 a second time");
}

TEST(ValidateBroken, SendBeforeItsComputation) {
    Schedule schedule = make_schedule("gpipe", 2, 1);  // stage 0: F0 SendAct0 RecvGrad0 B0 Step
    std::swap(schedule.actions[0][0], schedule.actions[0][1]);
    expect_rejected(schedule,
                    "stage 0 action 0 (SendAct0): sends the activation of micro-batch 0 before its forward "
                    "(no earlier F0)");

    schedule = make_schedule("gpipe", 2, 1);  // stage 1: RecvAct0 F0 B0 SendGrad0 Step
    std::swap(schedule.actions[1][2], schedule.actions[1][3]);
    expect_rejected(schedule,
                    "stage 1 action 2 (SendGrad0): sends the gradient of micro-batch 0 before its backward "
                    "(no earlier B0)");
}

TEST(ValidateBroken, OptimizerStepPlacement) {
    Schedule schedule = make_schedule("gpipe", 1, 2);  // F0 F1 B0 B1 Step
    std::swap(schedule.actions[0][3], schedule.actions[0][4]);
    expect_rejected(schedule, "stage 0 action 3 (Step): optimizer step before the backward of micro-batch 1");

    schedule = make_schedule("gpipe", 1, 2);
    schedule.actions[0].push_back({ActionKind::OptimizerStep, -1});
    expect_rejected(schedule, "stage 0 action 5 (Step): comes after the optimizer step");

    schedule = make_schedule("gpipe", 1, 2);
    schedule.actions[0].pop_back();
    expect_rejected(schedule, "stage 0: no OptimizerStep at the end of its 4 actions");

    schedule = make_schedule("gpipe", 1, 2);
    schedule.actions[0] = {{ActionKind::Forward, 0}, {ActionKind::Backward, 0}};
    expect_rejected(schedule, "stage 0: micro-batch 1 is never forwarded");
}

TEST(ValidateBroken, CommunicationWithAStageThatDoesNotExist) {
    Schedule schedule = make_schedule("gpipe", 2, 1);
    schedule.actions[0].insert(schedule.actions[0].begin(), {ActionKind::RecvActivation, 0});
    expect_rejected(schedule, "stage 0 action 0 (RecvAct0): stage 0 has no previous stage to receive from");

    schedule = make_schedule("gpipe", 2, 1);  // stage 1: RecvAct0 F0 B0 SendGrad0 Step
    schedule.actions[1].insert(schedule.actions[1].begin() + 2, {ActionKind::SendActivation, 0});
    expect_rejected(schedule, "stage 1 action 2 (SendAct0): the last stage (1) has no next stage to send to");
}

TEST(ValidateBroken, MalformedGroupsAndRanges) {
    Schedule schedule = make_schedule("gpipe", 2, 1);
    schedule.actions[0][0].batched_with_next = true;  // F0 chained to SendAct0
    expect_rejected(schedule, "stage 0 action 0 (F0): batched_with_next is set on an action that is not communication");

    schedule = make_schedule("gpipe", 2, 1);  // stage 0: F0 SendAct0 RecvGrad0 B0 Step
    schedule.actions[0][2].batched_with_next = true;
    expect_rejected(schedule, "stage 0 action 2 (RecvGrad0): batched_with_next chains to B0, which is not communication");

    schedule = make_schedule("gpipe", 2, 1);
    schedule.actions[0][0].micro_batch = 1;
    expect_rejected(schedule, "stage 0 action 0 (F1): micro-batch 1 is out of range [0, 1)");

    schedule = make_schedule("gpipe", 2, 1);
    schedule.actions.pop_back();
    expect_rejected(schedule, "schedule 'gpipe' has 1 action lists for 2 stages");
}

// replay() refuses a schedule that fails the per-stage checks instead of running off its end.
TEST(Replay, RequiresStageChecks) {
    Schedule schedule = make_schedule("gpipe", 2, 1);
    schedule.actions[1].pop_back();
    expect_invalid_argument([&] { replay(schedule, [](int, const Action&) { return 1.0; }, 0.0); },
                            {"replay", "no OptimizerStep"});
}
