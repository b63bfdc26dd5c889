// Schedules as data and the validator: the registry, placements and message tags, the generators'
// structure (every registered schedule for K in 1..8 and M in 1..16, boundary stages, 1F1B's phases
// and the groups add_communication makes), the validator accepting all of them, split backwards
// (I, W) and stages sharing a rank, and deliberately broken schedules, each rejected with a
// message naming the action.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "pipeline/communication.h"
#include "pipeline/schedule.h"
#include "pipeline/simulate.h"
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
    ADD_FAILURE() << "no " << short_name(Action{kind, 0, micro_batch}) << " in the list";
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

TEST(Action, NamesCarryStageKindAndMicroBatch) {
    EXPECT_EQ(to_string(Action{ActionKind::Forward, 1, 3}), "1F3");
    EXPECT_EQ(to_string(Action{ActionKind::Backward, 0, 0}), "0B0");
    EXPECT_EQ(to_string(Action{ActionKind::InputBackward, 2, 5}), "2I5");
    EXPECT_EQ(to_string(Action{ActionKind::WeightBackward, 2, 5}), "2W5");
    EXPECT_EQ(to_string(Action{ActionKind::SendActivation, 0, 2}), "0SendAct2");
    EXPECT_EQ(to_string(Action{ActionKind::RecvActivation, 1, 12}), "1RecvAct12");
    EXPECT_EQ(to_string(Action{ActionKind::SendGradient, 3, 4}), "3SendGrad4");
    EXPECT_EQ(to_string(Action{ActionKind::RecvGradient, 0, 1}), "0RecvGrad1");
    EXPECT_EQ(to_string(Action{ActionKind::OptimizerStep, -1, -1}), "Step");
    EXPECT_EQ(short_name(Action{ActionKind::Forward, 1, 3}), "F3");
    EXPECT_EQ(short_name(Action{ActionKind::RecvGradient, 0, 1}), "RecvGrad1");
    EXPECT_EQ(short_name(Action{ActionKind::OptimizerStep, -1, -1}), "Step");
}

TEST(Action, PeersAndMatchingKinds) {
    EXPECT_EQ(peer_stage(Action{ActionKind::SendActivation, 2, 0}), 3);
    EXPECT_EQ(peer_stage(Action{ActionKind::RecvGradient, 2, 0}), 3);
    EXPECT_EQ(peer_stage(Action{ActionKind::RecvActivation, 2, 0}), 1);
    EXPECT_EQ(peer_stage(Action{ActionKind::SendGradient, 2, 0}), 1);
    EXPECT_EQ(matching_kind(ActionKind::SendActivation), ActionKind::RecvActivation);
    EXPECT_EQ(matching_kind(ActionKind::RecvGradient), ActionKind::SendGradient);
    expect_invalid_argument([] { matching_kind(ActionKind::Forward); }, {"matching_kind", "F"});
    expect_invalid_argument([] { peer_stage(Action{ActionKind::OptimizerStep, -1, -1}); }, {"peer_stage", "Step"});
    expect_invalid_argument([] { peer_stage(Action{ActionKind::WeightBackward, 0, 0}); }, {"peer_stage", "W"});
}

TEST(Action, KindPredicates) {
    for (ActionKind kind : {ActionKind::Forward, ActionKind::Backward, ActionKind::InputBackward, ActionKind::WeightBackward}) {
        EXPECT_TRUE(is_compute(kind)) << to_string(kind);
        EXPECT_FALSE(is_communication(kind)) << to_string(kind);
    }
    for (ActionKind kind : {ActionKind::SendActivation, ActionKind::RecvActivation, ActionKind::SendGradient,
                            ActionKind::RecvGradient}) {
        EXPECT_FALSE(is_compute(kind)) << to_string(kind);
        EXPECT_TRUE(is_communication(kind)) << to_string(kind);
    }
    EXPECT_FALSE(is_compute(ActionKind::OptimizerStep));
    EXPECT_FALSE(is_communication(ActionKind::OptimizerStep));
    EXPECT_TRUE(produces_input_gradient(ActionKind::Backward));
    EXPECT_TRUE(produces_input_gradient(ActionKind::InputBackward));
    EXPECT_FALSE(produces_input_gradient(ActionKind::WeightBackward));
}

TEST(MakeSchedule, RejectsBadNameAndCounts) {
    expect_invalid_argument([] { make_schedule("zigzag", 4, 8); }, {"make_schedule", "'zigzag'"});
    expect_invalid_argument([] { make_schedule("1f1b", 0, 8); }, {"make_schedule", "stages", "0"});
    expect_invalid_argument([] { make_schedule("gpipe", 4, 0); }, {"make_schedule", "micro_batches", "0"});
    expect_invalid_argument([] { make_schedule("naive", -2, 1); }, {"stages", "-2"});
}

TEST(MakeSchedule, NameAndSizesAreRecorded) {
    for (const std::string& name : schedule_kinds()) {
        const int v = schedule_info(name).default_virtual_stages;
        Schedule schedule = make_schedule(name, 3, 6, v);
        EXPECT_EQ(schedule.name, name);
        EXPECT_EQ(schedule.ranks, 3);
        EXPECT_EQ(schedule.stages, 3 * v);
        EXPECT_EQ(schedule.micro_batches, 6);
        EXPECT_EQ(schedule.placement.size(), static_cast<size_t>(3 * v));
        EXPECT_EQ(schedule.actions.size(), 3u);
    }
}

// Every rank forwards and backwards each micro-batch once on every stage it holds, sends and
// receives exactly what the placement implies (nothing between stages on one rank), and ends with
// its one optimizer step.
TEST(MakeSchedule, EveryStageDoesEachMicroBatchOnceAndStepsLast) {
    for (const ScheduleInfo& info : schedule_registry()) {
        for (int ranks = 1; ranks <= kMaxStages; ++ranks) {
            for (int micro_batches = 1; micro_batches <= kMaxMicroBatches; ++micro_batches) {
                const int v = info.default_virtual_stages;
                if (!info.rule(ranks, micro_batches, v).empty()) continue;
                Schedule schedule = make_schedule(info.name, ranks, micro_batches, v);
                ASSERT_EQ(schedule.stages, ranks * v);
                for (int rank = 0; rank < ranks; ++rank) {
                    const std::vector<Action>& list = schedule.actions[rank];
                    for (int stage : schedule.stages_of(rank)) {
                        SCOPED_TRACE(info.name + " K=" + std::to_string(ranks) + " M=" + std::to_string(micro_batches) +
                                     " stage " + std::to_string(stage));
                        auto count = [&](ActionKind kind) {
                            int n = 0;
                            for (const Action& action : list) n += action.kind == kind && action.stage == stage ? 1 : 0;
                            return n;
                        };
                        const bool input_from_other_rank = stage > 0 && schedule.rank_of(stage - 1) != rank;
                        const bool output_to_other_rank = stage < schedule.stages - 1 && schedule.rank_of(stage + 1) != rank;
                        EXPECT_EQ(count(ActionKind::Forward), micro_batches);
                        // Each backward once: in one piece (B) or as its two halves (I and W).
                        EXPECT_EQ(count(ActionKind::Backward) + count(ActionKind::InputBackward), micro_batches);
                        EXPECT_EQ(count(ActionKind::InputBackward), count(ActionKind::WeightBackward));
                        EXPECT_EQ(count(ActionKind::RecvActivation), input_from_other_rank ? micro_batches : 0);
                        EXPECT_EQ(count(ActionKind::SendGradient), input_from_other_rank ? micro_batches : 0);
                        EXPECT_EQ(count(ActionKind::SendActivation), output_to_other_rank ? micro_batches : 0);
                        EXPECT_EQ(count(ActionKind::RecvGradient), output_to_other_rank ? micro_batches : 0);
                    }
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
                        EXPECT_EQ(action, (Action{ActionKind::Forward, stage, next_forward++}));
                    } else if (next_forward < micro_batches) {
                        // Steady state: B then F, starting with a backward.
                        const bool backward_slot = (i - in_flight) % 2 == 0;
                        if (backward_slot)
                            EXPECT_EQ(action, (Action{ActionKind::Backward, stage, next_backward++}));
                        else
                            EXPECT_EQ(action, (Action{ActionKind::Forward, stage, next_forward++}));
                    } else {
                        EXPECT_EQ(action, (Action{ActionKind::Backward, stage, next_backward++}));
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
                    EXPECT_EQ(peer_stage(send), peer_stage(receive));
                }
            }
        }
    }
}

// The headline property: every schedule of the registry, after add_communication, runs to
// completion under the strict model, for every size its rule allows.
TEST(Validate, AcceptsEveryRegisteredScheduleAfterAddCommunication) {
    for (const ScheduleInfo& info : schedule_registry()) {
        int accepted = 0;
        for (int ranks = 1; ranks <= kMaxStages; ++ranks) {
            for (int micro_batches = 1; micro_batches <= kMaxMicroBatches; ++micro_batches) {
                const int v = info.default_virtual_stages;
                if (!info.rule(ranks, micro_batches, v).empty()) continue;
                Schedule schedule = make_schedule(info.name, ranks, micro_batches, v);
                ValidationResult result = validate(schedule);
                EXPECT_TRUE(result.ok) << info.name << " K=" << ranks << " M=" << micro_batches << ": " << result.error
                                       << "\n"
                                       << describe(schedule);
                accepted += result.ok ? 1 : 0;
            }
        }
        EXPECT_GT(accepted, 0) << info.name;
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
                    "stage 1 action 2 (RecvAct1): waits forever: stage 0 never posts the matching SendAct1 "
                    "(it posts 1 send to stage 1 in all, this is the 2nd receive from stage 0)");
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
    schedule.actions[1] = {{ActionKind::RecvActivation, 1, 1}, {ActionKind::RecvActivation, 1, 0},
                           {ActionKind::Forward, 1, 0},        {ActionKind::Forward, 1, 1},
                           {ActionKind::Backward, 1, 0},       {ActionKind::SendGradient, 1, 0},
                           {ActionKind::Backward, 1, 1},       {ActionKind::SendGradient, 1, 1},
                           {ActionKind::OptimizerStep, -1, -1}};
    expect_rejected(schedule,
                    "stage 1 action 0 (RecvAct1): receives micro-batch 1, but messages arrive in FIFO order and "
                    "the oldest unmatched activation from stage 0 is stage 0 action 1 (SendAct0)");
}

// Gradients sent out of order: the receive side is named, whichever side sees the mismatch.
TEST(ValidateBroken, FifoOrderViolationOfGradients) {
    Schedule schedule = make_schedule("gpipe", 2, 2);
    std::vector<Action>& stage1 = schedule.actions[1];
    stage1 = {{ActionKind::RecvActivation, 1, 0}, {ActionKind::Forward, 1, 0},      {ActionKind::RecvActivation, 1, 1},
              {ActionKind::Forward, 1, 1},        {ActionKind::Backward, 1, 1},     {ActionKind::SendGradient, 1, 1},
              {ActionKind::Backward, 1, 0},       {ActionKind::SendGradient, 1, 0}, {ActionKind::OptimizerStep, -1, -1}};
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
                    "(no earlier B0 or I0)");
}

TEST(ValidateBroken, OptimizerStepPlacement) {
    Schedule schedule = make_schedule("gpipe", 1, 2);  // F0 F1 B0 B1 Step
    std::swap(schedule.actions[0][3], schedule.actions[0][4]);
    expect_rejected(schedule, "stage 0 action 3 (Step): optimizer step before the backward of micro-batch 1");

    schedule = make_schedule("gpipe", 1, 2);
    schedule.actions[0].push_back({ActionKind::OptimizerStep, -1, -1});
    expect_rejected(schedule, "stage 0 action 5 (Step): comes after the optimizer step");

    schedule = make_schedule("gpipe", 1, 2);
    schedule.actions[0].pop_back();
    expect_rejected(schedule, "stage 0: no OptimizerStep at the end of its 4 actions");

    schedule = make_schedule("gpipe", 1, 2);
    schedule.actions[0] = {{ActionKind::Forward, 0, 0}, {ActionKind::Backward, 0, 0}};
    expect_rejected(schedule, "stage 0: micro-batch 1 is never forwarded");
}

TEST(ValidateBroken, CommunicationWithAStageThatDoesNotExist) {
    Schedule schedule = make_schedule("gpipe", 2, 1);
    schedule.actions[0].insert(schedule.actions[0].begin(), {ActionKind::RecvActivation, 0, 0});
    expect_rejected(schedule, "stage 0 action 0 (RecvAct0): stage 0 has no previous stage to receive from");

    schedule = make_schedule("gpipe", 2, 1);  // stage 1: RecvAct0 F0 B0 SendGrad0 Step
    schedule.actions[1].insert(schedule.actions[1].begin() + 2, {ActionKind::SendActivation, 1, 0});
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

// ---- the registry -----------------------------------------------------------------------------

TEST(Registry, NamesAreUniqueAndDescribed) {
    std::vector<std::string> names = schedule_kinds();
    ASSERT_EQ(names.size(), schedule_registry().size());
    for (size_t i = 0; i < names.size(); ++i) {
        EXPECT_FALSE(schedule_registry()[i].description.empty()) << names[i];
        EXPECT_EQ(schedule_info(names[i]).name, names[i]);
        for (size_t j = i + 1; j < names.size(); ++j) EXPECT_NE(names[i], names[j]);
    }
    expect_invalid_argument([] { schedule_info("zigzag"); }, {"'zigzag'", "naive", "gpipe", "1f1b", "interleaved-1f1b"});
}

// Every entry is complete — a rule, a generator and a peak stash, at least one stage per rank by
// default — and its rule accepts its default stages per rank for some sizes.
TEST(Registry, EntriesAreComplete) {
    for (const ScheduleInfo& info : schedule_registry()) {
        EXPECT_TRUE(info.rule) << info.name;
        EXPECT_TRUE(info.generate) << info.name;
        EXPECT_TRUE(info.peak_stashed) << info.name;
        EXPECT_TRUE(info.unit_cost_bubble) << info.name;  // no_closed_form where there is none
        EXPECT_GE(info.default_virtual_stages, 1) << info.name;
        bool accepted = false;
        for (int ranks = 1; ranks <= kMaxStages && !accepted; ++ranks)
            for (int micro_batches = 1; micro_batches <= kMaxMicroBatches && !accepted; ++micro_batches)
                accepted = info.rule(ranks, micro_batches, info.default_virtual_stages).empty();
        EXPECT_TRUE(accepted) << info.name << " accepts no size at its default virtual_stages";
    }
}

// The --help text of the default stages per rank ("interleaved-1f1b and zbv 2, the others 1") is
// made from the registry: it ends with the most common default, and names every schedule whose
// default differs.
TEST(Registry, DefaultVirtualStagesAreDescribedFromTheRegistry) {
    const std::string text = describe_default_virtual_stages();
    std::map<int, int> count;
    for (const ScheduleInfo& info : schedule_registry()) ++count[info.default_virtual_stages];
    int most_common = count.begin()->first;
    for (const auto& [stages, schedules] : count)
        if (schedules > count[most_common]) most_common = stages;
    const std::string end = count.size() == 1 ? " for every schedule" : "the others " + std::to_string(most_common);
    ASSERT_GE(text.size(), end.size()) << text;
    EXPECT_EQ(text.substr(text.size() - end.size()), end) << text;
    for (const ScheduleInfo& info : schedule_registry()) {
        if (info.default_virtual_stages != most_common) {
            EXPECT_NE(text.find(info.name), std::string::npos) << text;
        }
    }
}

TEST(Registry, RulesAreChecked) {
    expect_invalid_argument([] { make_schedule("1f1b", 4, 8, 2); }, {"make_schedule(1f1b", "virtual_stages must be 1", "2"});
    expect_invalid_argument([] { make_schedule("gpipe", 4, 8, 0); }, {"virtual_stages must be >= 1"});
    expect_invalid_argument([] { make_schedule("interleaved-1f1b", 4, 6, 2); },
                            {"interleaved-1f1b", "multiple of the ranks (4)", "6"});
    expect_invalid_argument([] { make_schedule("interleaved-1f1b", 4, 8, 1); }, {"virtual_stages >= 2", "use 1f1b"});
}

// Megatron-LM's interleaved order on K = 2, v = 2, M = 4: rank 0 warms up with 2 (K - 1) + (v - 1) K
// = 4 forwards (two micro-batches on each chunk), rank 1 with 2.
TEST(Interleaved, MegatronOrderOnTwoRanks) {
    Schedule compute = make_compute_schedule("interleaved-1f1b", 2, 4, 2);
    EXPECT_EQ(compute.placement, (std::vector<int>{0, 1, 0, 1}));
    EXPECT_EQ(describe(compute),
              "rank 0: 0F0 0F1 2F0 2F1 0F2 2B0 0F3 2B1 2F2 0B0 2F3 0B1 2B2 2B3 0B2 0B3 Step\n"
              "rank 1: 1F0 1F1 3F0 3B0 3F1 3B1 1F2 1B0 1F3 1B1 3F2 3B2 3F3 3B3 1B2 1B3 Step\n");
    Schedule schedule = make_schedule("interleaved-1f1b", 2, 4, 2);
    EXPECT_TRUE(validate(schedule).ok) << validate(schedule).error << "\n" << describe(schedule);
}

// Every v in 2..4 validates for K = 1..8 and every M that is a multiple of K up to 16; with equal
// costs per stage the bubble is Megatron's (K - 1) / (v M + K - 1) of the step.
TEST(Interleaved, ValidForManyVirtualStagesWithTheExpectedBubble) {
    for (int v = 2; v <= 4; ++v) {
        for (int ranks = 1; ranks <= kMaxStages; ++ranks) {
            for (int micro_batches = ranks; micro_batches <= kMaxMicroBatches; micro_batches += ranks) {
                Schedule schedule = make_schedule("interleaved-1f1b", ranks, micro_batches, v);
                ValidationResult result = validate(schedule);
                ASSERT_TRUE(result.ok) << "K=" << ranks << " M=" << micro_batches << " v=" << v << ": " << result.error
                                       << "\n" << describe(schedule);
                SimulationResult simulated = simulate(schedule, equal_costs(schedule.stages, 1.0, 1.0));
                const double theory = double(ranks - 1) / double(v * micro_batches + ranks - 1);
                for (int rank = 0; rank < ranks; ++rank)
                    EXPECT_NEAR(simulated.bubble_fraction[rank], theory, 1e-12)
                        << "K=" << ranks << " M=" << micro_batches << " v=" << v << " rank " << rank;
            }
        }
    }
}

// make_schedule is the generator's compute actions with add_communication applied, and the
// generators write no communication themselves.
TEST(AddCommunication, GeneratorsWriteComputeOnly) {
    for (const ScheduleInfo& info : schedule_registry()) {
        for (int ranks = 1; ranks <= 4; ++ranks) {
            const int v = info.default_virtual_stages;
            if (!info.rule(ranks, 4, v).empty()) continue;
            Schedule compute = make_compute_schedule(info.name, ranks, 4, v);
            for (const std::vector<Action>& list : compute.actions)
                for (const Action& action : list) EXPECT_FALSE(is_communication(action.kind)) << info.name;
            Schedule with_transfers = compute;
            add_communication(with_transfers, info.exchange);
            EXPECT_EQ(describe(with_transfers), describe(make_schedule(info.name, ranks, 4, v)));
        }
    }
    Schedule twice = make_schedule("gpipe", 2, 2);
    expect_invalid_argument([&] { add_communication(twice); }, {"add_communication", "already holds communication"});
}

// ---- placements, tags, and several stages on one rank -----------------------------------------

TEST(Placement, IdentityLoopedAndVShape) {
    EXPECT_EQ(identity_placement(3), (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(looped_placement(2, 3), (std::vector<int>{0, 1, 0, 1, 0, 1}));
    EXPECT_EQ(v_shape_placement(3), (std::vector<int>{0, 1, 2, 2, 1, 0}));
    Schedule schedule;
    schedule.ranks = 2;
    schedule.stages = 4;
    schedule.placement = looped_placement(2, 2);
    EXPECT_EQ(schedule.stages_of(1), (std::vector<int>{1, 3}));
    EXPECT_FALSE(schedule.one_stage_per_rank());
    EXPECT_TRUE(make_schedule("1f1b", 3, 2).one_stage_per_rank());
}

namespace {

// A GPipe order over any placement: on each rank, every forward of its stages in stage order,
// then every backward in reverse stage order, then the step (compute actions only).
Schedule gpipe_over(std::vector<int> placement, int ranks, int micro_batches) {
    Schedule schedule;
    schedule.name = "test";
    schedule.ranks = ranks;
    schedule.stages = static_cast<int>(placement.size());
    schedule.micro_batches = micro_batches;
    schedule.placement = std::move(placement);
    schedule.actions.resize(ranks);
    for (int rank = 0; rank < ranks; ++rank) {
        std::vector<int> held = schedule.stages_of(rank);
        for (int stage : held)
            for (int m = 0; m < micro_batches; ++m) schedule.actions[rank].push_back({ActionKind::Forward, stage, m});
        for (auto stage = held.rbegin(); stage != held.rend(); ++stage)
            for (int m = 0; m < micro_batches; ++m) schedule.actions[rank].push_back({ActionKind::Backward, *stage, m});
        schedule.actions[rank].push_back({ActionKind::OptimizerStep, -1, -1});
    }
    return schedule;
}

}  // namespace

// The same (boundary, micro-batch, direction) gives the same tag on both ends; no two different
// messages of a schedule share one, however many stages a rank holds.
TEST(MessageTag, MatchingEndsAgreeAndMessagesNeverCollide) {
    for (const std::vector<int>& placement : {looped_placement(2, 3), v_shape_placement(3), identity_placement(4)}) {
        const int ranks = *std::max_element(placement.begin(), placement.end()) + 1;
        const int micro_batches = 3;
        Schedule schedule = gpipe_over(placement, ranks, micro_batches);
        add_communication(schedule);
        ASSERT_TRUE(validate(schedule).ok) << validate(schedule).error << "\n" << describe(schedule);
        std::map<int, std::string> send_of_tag, receive_of_tag;
        for (const std::vector<Action>& list : schedule.actions) {
            for (const Action& action : list) {
                if (!is_communication(action.kind)) continue;
                const int tag = message_tag(action, micro_batches);
                EXPECT_GE(tag, 0);
                EXPECT_LT(tag, tags_needed(schedule.stages, micro_batches));
                std::map<int, std::string>& seen = is_send(action.kind) ? send_of_tag : receive_of_tag;
                EXPECT_TRUE(seen.emplace(tag, to_string(action)).second)
                    << to_string(action) << " reuses the tag of " << seen[tag];
                // The matching end computes the same tag.
                const Action partner{matching_kind(action.kind), peer_stage(action), action.micro_batch};
                EXPECT_EQ(message_tag(partner, micro_batches), tag) << to_string(action);
            }
        }
        EXPECT_EQ(send_of_tag.size(), receive_of_tag.size());
    }
    expect_invalid_argument([] { message_tag(Action{ActionKind::Forward, 0, 0}, 2); }, {"message_tag", "0F0"});
}

// Stages on one rank hand over locally: a looped placement gets transfers only across ranks, and
// the V shape none at its turning point (stages K - 1 and K on the last rank).
TEST(AddCommunication, StagesOnOneRankHandOverLocally) {
    Schedule looped = gpipe_over(looped_placement(2, 2), 2, 1);
    add_communication(looped);
    EXPECT_EQ(describe(looped),
              "rank 0: 0F0 0SendAct0 2RecvAct0 2F0 2SendAct0 2RecvGrad0 2B0 2SendGrad0 0RecvGrad0 0B0 Step\n"
              "rank 1: 1RecvAct0 1F0 1SendAct0 3RecvAct0 3F0 3B0 3SendGrad0 1RecvGrad0 1B0 1SendGrad0 Step\n");
    EXPECT_TRUE(validate(looped).ok) << validate(looped).error;

    Schedule v_shape = gpipe_over(v_shape_placement(2), 2, 1);
    add_communication(v_shape);
    EXPECT_EQ(describe(v_shape),
              "rank 0: 0F0 0SendAct0 3RecvAct0 3F0 3B0 3SendGrad0 0RecvGrad0 0B0 Step\n"
              "rank 1: 1RecvAct0 1F0 2F0 2SendAct0 2RecvGrad0 2B0 1B0 1SendGrad0 Step\n");
    EXPECT_TRUE(validate(v_shape).ok) << validate(v_shape).error;
}

// Transfers that wait for each other round a ring: GPipe order over a looped placement with
// M = K. Rank 0 still sends micro-batch 2 of stage 0 when the last rank already sends stage 2's
// output round to rank 0 for stage 3, and each send waits for the next rank's receive, which comes
// after that rank's own send. Posted one by one they deadlock in a cycle of all K ranks;
// add_communication batches each rank's send with the receive that follows it, as Megatron's
// interleaved schedule does (send_forward_recv_forward).
TEST(AddCommunication, BatchesARingOfSends) {
    Schedule schedule = gpipe_over(looped_placement(3, 2), 3, 3);
    add_communication(schedule);
    ASSERT_TRUE(validate(schedule).ok) << validate(schedule).error << "\n" << describe(schedule);
    int groups = 0;
    for (const std::vector<Action>& list : schedule.actions)
        for (const Action& action : list) groups += action.batched_with_next ? 1 : 0;
    EXPECT_GT(groups, 0) << describe(schedule);

    for (std::vector<Action>& list : schedule.actions)
        for (Action& action : list) action.batched_with_next = false;
    ValidationResult result = validate(schedule);
    EXPECT_FALSE(result.ok);
    EXPECT_EQ(result.error,
              "rank 0 action 5 (0SendAct2): waits forever: rank 1 is blocked at action 5 (1SendAct1), which waits for "
              "rank 2, blocked at action 2 (2SendAct0), which waits for rank 0")
        << describe(schedule);
}

// ---- split backwards: I and W -------------------------------------------------------------------

namespace {

Schedule one_rank(std::vector<Action> actions, int micro_batches) {
    Schedule schedule;
    schedule.name = "split";
    schedule.ranks = 1;
    schedule.stages = 1;
    schedule.micro_batches = micro_batches;
    schedule.placement = identity_placement(1);
    schedule.actions = {std::move(actions)};
    return schedule;
}

const Action kStep{ActionKind::OptimizerStep, -1, -1};

}  // namespace

TEST(SplitBackward, InputThenWeightIsValid) {
    using K = ActionKind;
    EXPECT_TRUE(validate(one_rank({{K::Forward, 0, 0}, {K::InputBackward, 0, 0}, {K::WeightBackward, 0, 0}, kStep}, 1)).ok);
    // Two stages: I of stage 0 needs the gradient that stage 1's I sends; W can come at the end.
    Schedule two;
    two.name = "split";
    two.ranks = 2;
    two.stages = 2;
    two.micro_batches = 2;
    two.placement = identity_placement(2);
    for (int stage = 0; stage < 2; ++stage) {
        two.actions.push_back({{K::Forward, stage, 0}, {K::Forward, stage, 1}, {K::InputBackward, stage, 0},
                               {K::InputBackward, stage, 1}, {K::WeightBackward, stage, 0}, {K::WeightBackward, stage, 1},
                               kStep});
    }
    add_communication(two);
    EXPECT_EQ(describe(two),
              "stage 0: F0 SendAct0 F1 SendAct1 RecvGrad0 I0 RecvGrad1 I1 W0 W1 Step\n"
              "stage 1: RecvAct0 F0 RecvAct1 F1 I0 SendGrad0 I1 SendGrad1 W0 W1 Step\n");
    EXPECT_TRUE(validate(two).ok) << validate(two).error;
}

TEST(SplitBackward, BrokenOrdersAreRejected) {
    using K = ActionKind;
    expect_rejected(one_rank({{K::Forward, 0, 0}, {K::WeightBackward, 0, 0}, kStep}, 1),
                    "stage 0 action 1 (W0): weight backward of micro-batch 0 before its input backward (no earlier I0)");
    expect_rejected(one_rank({{K::InputBackward, 0, 0}, kStep}, 1),
                    "stage 0 action 0 (I0): input backward of micro-batch 0 before its forward (no earlier F0)");
    expect_rejected(one_rank({{K::Forward, 0, 0}, {K::InputBackward, 0, 0}, {K::Backward, 0, 0}, kStep}, 1),
                    "stage 0 action 2 (B0): backwards micro-batch 0 a second time");
    expect_rejected(one_rank({{K::Forward, 0, 0}, {K::Backward, 0, 0}, {K::WeightBackward, 0, 0}, kStep}, 1),
                    "stage 0 action 2 (W0): computes the weight gradients of micro-batch 0 a second time");
    expect_rejected(one_rank({{K::Forward, 0, 0}, {K::InputBackward, 0, 0}, kStep}, 1),
                    "stage 0 action 2 (Step): optimizer step before the weight backward of micro-batch 0");
}

// ---- several stages on one rank: the per-rank checks ---------------------------------------------

TEST(ValidateBroken, StagesOnTheWrongRankOrHandedOverOutOfOrder) {
    Schedule schedule = gpipe_over(looped_placement(2, 2), 2, 1);
    add_communication(schedule);
    Schedule wrong_rank = schedule;
    wrong_rank.actions[0][0].stage = 1;
    expect_rejected(wrong_rank, "rank 0 action 0 (1F0): stage 1 runs on rank 1, not on rank 0");

    Schedule local_transfer = gpipe_over(v_shape_placement(2), 2, 1);
    add_communication(local_transfer);
    // rank 1: 1RecvAct0 1F0 2F0 ...: a transfer between its own stages 1 and 2 is refused.
    local_transfer.actions[1].insert(local_transfer.actions[1].begin() + 2, {ActionKind::SendActivation, 1, 0});
    expect_rejected(local_transfer,
                    "rank 1 action 2 (1SendAct0): stage 2 is on this rank too: neighbouring stages on one rank hand "
                    "over locally, without a transfer");

    Schedule early = gpipe_over(v_shape_placement(2), 2, 1);
    add_communication(early);
    std::swap(early.actions[1][1], early.actions[1][2]);  // 2F0 before 1F0
    expect_rejected(early, "rank 1 action 1 (2F0): forward of micro-batch 0 before stage 1 on this rank forwards it "
                           "(no earlier 1F0)");
}

// Messages from one rank to another match in order, whatever stage they are for: rank 0 sends
// stage 0's output before stage 2's, so rank 1 may not receive stage 3's input first (with MPI the
// tags would keep them apart; with NCCL the first send would land in the wrong buffer).
TEST(ValidateBroken, MessagesOfTwoStagesOutOfOrderOnOneChannel) {
    Schedule schedule = gpipe_over(looped_placement(2, 2), 2, 1);
    add_communication(schedule);
    // rank 1: 1RecvAct0 1F0 1SendAct0 3RecvAct0 ... -> 3RecvAct0 1RecvAct0 1F0 1SendAct0 ...
    std::vector<Action>& rank1 = schedule.actions[1];
    ASSERT_EQ(to_string(rank1[3]), "3RecvAct0");
    const Action early = rank1[3];
    rank1.erase(rank1.begin() + 3);
    rank1.insert(rank1.begin(), early);
    expect_rejected(schedule,
                    "rank 1 action 0 (3RecvAct0): receives the activation of stage 3, micro-batch 0, but messages "
                    "arrive in FIFO order and the oldest unmatched activation from rank 0 is rank 0 action 1 (0SendAct0)");
}
