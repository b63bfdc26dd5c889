// The schedule simulator and the text rendering: every registered schedule's bubble against its
// closed form and its stash against its peak_stashed (K in 1..8, M in 1..16), the classic ones by
// hand too, a step timed by hand with transfers, and literal renderings.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "pipeline/communication.h"
#include "pipeline/render.h"
#include "pipeline/schedule.h"
#include "pipeline/simulate.h"
#include "tests/support/test_util.h"

using namespace mp::pipeline;
using mp::testing::expect_invalid_argument;

namespace {

constexpr int kMaxStages = 8;
constexpr int kMaxMicroBatches = 16;

// With integer costs every simulated time is a small integer, exact in double; the only rounding
// is in 1 - busy / step_time against (K-1)/(M+K-1), a few ulps of numbers below 1.
constexpr double kBubbleTolerance = 1e-12;

// Forward and backward times tried for the closed forms: equal, and Megatron's usual 1 : 2.
const std::vector<std::pair<double, double>> kForwardBackwardTimes = {{1.0, 1.0}, {1.0, 2.0}};

}  // namespace

TEST(Simulate, GpipeAnd1f1bBubbleIsTheTheory) {
    for (const std::string kind : {"gpipe", "1f1b"}) {
        for (const auto& [forward, backward] : kForwardBackwardTimes) {
            for (int stages = 1; stages <= kMaxStages; ++stages) {
                for (int micro_batches = 1; micro_batches <= kMaxMicroBatches; ++micro_batches) {
                    SimulationResult result =
                        simulate(make_schedule(kind, stages, micro_batches), equal_costs(stages, forward, backward));
                    const double theory = double(stages - 1) / double(micro_batches + stages - 1);
                    EXPECT_DOUBLE_EQ(result.step_time, (micro_batches + stages - 1) * (forward + backward));
                    for (int stage = 0; stage < stages; ++stage) {
                        EXPECT_NEAR(result.bubble_fraction[stage], theory, kBubbleTolerance)
                            << kind << " K=" << stages << " M=" << micro_batches << " stage " << stage;
                        EXPECT_DOUBLE_EQ(result.busy[stage], micro_batches * (forward + backward));
                    }
                }
            }
        }
    }
}

// One stage busy at a time: each stage works 1/K of the step.
TEST(Simulate, NaiveBubbleIsOneMinusOneOverK) {
    for (int stages = 1; stages <= kMaxStages; ++stages) {
        for (int micro_batches = 1; micro_batches <= kMaxMicroBatches; ++micro_batches) {
            SimulationResult result = simulate(make_schedule("naive", stages, micro_batches), equal_costs(stages));
            EXPECT_DOUBLE_EQ(result.step_time, 2.0 * stages * micro_batches);
            for (int stage = 0; stage < stages; ++stage)
                EXPECT_NEAR(result.bubble_fraction[stage], double(stages - 1) / stages, kBubbleTolerance)
                    << "K=" << stages << " M=" << micro_batches << " stage " << stage;
        }
    }
}

// 1F1B's memory bound: stage s never stashes more than min(K - s, M) micro-batches, and reaches
// it; gpipe stashes all M; naive one at a time.
TEST(Simulate, PeakStashedMicroBatches) {
    for (int stages = 1; stages <= kMaxStages; ++stages) {
        for (int micro_batches = 1; micro_batches <= kMaxMicroBatches; ++micro_batches) {
            const Costs costs = equal_costs(stages, 1.0, 2.0);
            SimulationResult one_f_one_b = simulate(make_schedule("1f1b", stages, micro_batches), costs);
            SimulationResult gpipe = simulate(make_schedule("gpipe", stages, micro_batches), costs);
            SimulationResult naive = simulate(make_schedule("naive", stages, micro_batches), costs);
            for (int stage = 0; stage < stages; ++stage) {
                SCOPED_TRACE("K=" + std::to_string(stages) + " M=" + std::to_string(micro_batches) + " stage " +
                             std::to_string(stage));
                EXPECT_EQ(one_f_one_b.peak_stashed[stage], std::min(stages - stage, micro_batches));
                EXPECT_EQ(gpipe.peak_stashed[stage], micro_batches);
                EXPECT_EQ(naive.peak_stashed[stage], 1);
            }
        }
    }
}

// 1f1b, K = 2, M = 2, forward = backward = 1, transfer 0.5, worked by hand under the strict model
// (a message completes 0.5 after both sides have posted it):
//   stage 0: F0 [0,1]; SendAct0 meets stage 1's RecvAct0 (posted at 0) -> 1.5; F1 [1.5,2.5];
//            [SendAct1 RecvGrad0] posted 2.5, stage 1 posts its group at 3.5 -> 4; B0 [4,5];
//            RecvGrad1 posted 5, SendGrad1 posted 6 -> 6.5; B1 [6.5,7.5].
//   stage 1: F0 [1.5,2.5]; B0 [2.5,3.5]; [SendGrad0 RecvAct1] -> 4; F1 [4,5]; B1 [5,6]; SendGrad1 -> 6.5.
TEST(Simulate, StepTimeWithTransfersWorkedByHand) {
    Schedule schedule = make_schedule("1f1b", 2, 2);
    SimulationResult free = simulate(schedule, equal_costs(2, 1.0, 1.0, 0.0));
    EXPECT_DOUBLE_EQ(free.step_time, 6.0);
    SimulationResult with_transfer = simulate(schedule, equal_costs(2, 1.0, 1.0, 0.5));
    EXPECT_DOUBLE_EQ(with_transfer.step_time, 7.5);
    EXPECT_DOUBLE_EQ(with_transfer.busy[0], 4.0);
    EXPECT_DOUBLE_EQ(with_transfer.bubble_fraction[0], 1.0 - 4.0 / 7.5);

    // Stage 0's timeline, action by action.
    const std::vector<std::pair<double, double>> expected = {
        {0.0, 1.0}, {1.0, 1.5}, {1.5, 2.5}, {2.5, 4.0}, {2.5, 4.0}, {4.0, 5.0}, {5.0, 6.5}, {6.5, 7.5}, {7.5, 7.5}};
    ASSERT_EQ(with_transfer.timeline[0].size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
        EXPECT_EQ(with_transfer.timeline[0][i].index, static_cast<int>(i));
        EXPECT_DOUBLE_EQ(with_transfer.timeline[0][i].start, expected[i].first) << "action " << i;
        EXPECT_DOUBLE_EQ(with_transfer.timeline[0][i].end, expected[i].second) << "action " << i;
    }
}

TEST(Simulate, TransfersMakeTheStepLonger) {
    for (const ScheduleInfo& info : schedule_registry()) {
        for (int ranks = 2; ranks <= kMaxStages; ++ranks) {
            for (int micro_batches : {1, 3, 8, 16}) {
                const int v = info.default_virtual_stages;
                if (!info.rule(ranks, micro_batches, v).empty()) continue;
                Schedule schedule = make_schedule(info.name, ranks, micro_batches, v);
                double free = simulate(schedule, equal_costs(schedule.stages, 1.0, 2.0, 0.0)).step_time;
                double slow = simulate(schedule, equal_costs(schedule.stages, 1.0, 2.0, 0.25)).step_time;
                EXPECT_GT(slow, free) << info.name << " K=" << ranks << " M=" << micro_batches;
            }
        }
    }
}

// Unequal stages: each stage's busy time is its own work; the slowest stage has the least bubble,
// and the step is at least its work plus the others' share of the fill and drain.
TEST(Simulate, UnequalStagesAndTimelineConsistency) {
    Costs costs;
    costs.forward = {1.0, 3.0, 1.0};
    costs.backward = {2.0, 6.0, 2.0};
    costs.input_backward = {1.0, 3.0, 1.0};
    costs.weight_backward = {1.0, 3.0, 1.0};
    costs.transfer = 0.0;
    const int micro_batches = 6;
    for (const ScheduleInfo& info : schedule_registry()) {
        if (info.default_virtual_stages != 1) continue;  // the costs are for one stage per rank
        const std::string& kind = info.name;
        SimulationResult result = simulate(make_schedule(kind, 3, micro_batches), costs);
        EXPECT_DOUBLE_EQ(result.busy[0], micro_batches * 3.0) << kind;
        EXPECT_DOUBLE_EQ(result.busy[1], micro_batches * 9.0) << kind;
        EXPECT_LT(result.bubble_fraction[1], result.bubble_fraction[0]) << kind;
        // The fill (stage 0's first F) and the slowest stage's work; a one-piece backward adds the
        // drain (stage 0's last B after the slowest stage's last B), which a split one overlaps
        // with the slowest stage's last W.
        const Schedule plan = make_schedule(kind, 3, micro_batches);
        bool split = false;
        for (const std::vector<Action>& list : plan.actions)
            for (const Action& action : list) split = split || action.kind == ActionKind::InputBackward;
        EXPECT_GE(result.step_time, 1.0 + micro_batches * 9.0 + (split ? 0.0 : 2.0)) << kind;
        for (const std::vector<TimedAction>& timeline : result.timeline) {
            for (size_t i = 0; i < timeline.size(); ++i) {
                EXPECT_LE(timeline[i].start, timeline[i].end);
                if (i > 0) {
                    EXPECT_LE(timeline[i - 1].start, timeline[i].start) << kind;
                }
            }
        }
    }
}

TEST(Simulate, RejectsBadCostsAndInvalidSchedules) {
    Schedule schedule = make_schedule("1f1b", 3, 4);
    expect_invalid_argument([&] { simulate(schedule, equal_costs(2)); }, {"simulate", "2 forward costs for 3 stages"});
    Costs negative = equal_costs(3);
    negative.backward[1] = -1.0;
    expect_invalid_argument([&] { simulate(schedule, negative); }, {"simulate", "backward cost of stage 1", "-1"});
    expect_invalid_argument([&] { simulate(schedule, equal_costs(3, 1.0, 1.0, -0.5)); }, {"transfer", "-0.5"});
    expect_invalid_argument([] { equal_costs(0); }, {"equal_costs", "0"});

    Schedule deadlocked = make_schedule("1f1b", 2, 2);
    for (std::vector<Action>& list : deadlocked.actions)
        for (Action& action : list) action.batched_with_next = false;
    expect_invalid_argument([&] { simulate(deadlocked, equal_costs(2)); },
                            {"simulate: invalid schedule", "stage 0 action 3 (SendAct1): waits forever"});
}

// F, B, I and W are priced separately, per stage: two stages, each F I W per micro-batch, the
// weight backwards left to the end (I of stage 0 waits for I of stage 1 only).
TEST(Simulate, InputAndWeightBackwardArePricedSeparately) {
    Schedule schedule;
    schedule.name = "split";
    schedule.ranks = 2;
    schedule.stages = 2;
    schedule.micro_batches = 1;
    schedule.placement = identity_placement(2);
    for (int stage = 0; stage < 2; ++stage)
        schedule.actions.push_back({{ActionKind::Forward, stage, 0},
                                    {ActionKind::InputBackward, stage, 0},
                                    {ActionKind::WeightBackward, stage, 0},
                                    {ActionKind::OptimizerStep, -1, -1}});
    add_communication(schedule);
    Costs costs = equal_costs(2);
    costs.forward = {1.0, 1.0};
    costs.backward = {100.0, 100.0};  // unused: no B in this schedule
    costs.input_backward = {2.0, 2.0};
    costs.weight_backward = {5.0, 3.0};
    SimulationResult result = simulate(schedule, costs);
    // Stage 1: F at 1..2, I at 2..4, W at 4..7. Stage 0: F 0..1, waits for the gradient until 4,
    // I at 4..6, W at 6..11.
    EXPECT_DOUBLE_EQ(result.step_time, 11.0);
    EXPECT_DOUBLE_EQ(result.busy[0], 1.0 + 2.0 + 5.0);
    EXPECT_DOUBLE_EQ(result.busy[1], 1.0 + 2.0 + 3.0);
    EXPECT_EQ(result.peak_stashed[0], 1);
    // Rendered at one slot per compute action.
    EXPECT_EQ(render(schedule), "stage 0 | F0 .. .. I0 W0\nstage 1 | .. F0 I0 W0 ..\n");
    costs.weight_backward = {1.0};
    expect_invalid_argument([&] { simulate(schedule, costs); }, {"simulate", "1 weight_backward costs for 2 stages"});
}

// Where a rank holds several stages, rows are ranks and labels carry the stage; a rank's busy time
// sums its stages.
TEST(Render, SeveralStagesPerRank) {
    Schedule schedule;
    schedule.name = "looped";
    schedule.ranks = 2;
    schedule.stages = 4;
    schedule.micro_batches = 1;
    schedule.placement = looped_placement(2, 2);
    schedule.actions = {{{ActionKind::Forward, 0, 0}, {ActionKind::Forward, 2, 0}, {ActionKind::Backward, 2, 0},
                         {ActionKind::Backward, 0, 0}, {ActionKind::OptimizerStep, -1, -1}},
                        {{ActionKind::Forward, 1, 0}, {ActionKind::Forward, 3, 0}, {ActionKind::Backward, 3, 0},
                         {ActionKind::Backward, 1, 0}, {ActionKind::OptimizerStep, -1, -1}}};
    add_communication(schedule);
    EXPECT_EQ(render(schedule), "rank 0 | 0F0 ..  2F0 ..  ..  2B0 ..  0B0\n"
                                "rank 1 | ..  1F0 ..  3F0 3B0 ..  1B0 ..\n");
    SimulationResult result = simulate(schedule, equal_costs(4, 1.0, 2.0));
    EXPECT_DOUBLE_EQ(result.busy[0], 2 * (1.0 + 2.0));
    EXPECT_EQ(result.peak_stashed[0], 2);  // micro-batch 0 of stages 0 and 2
}

TEST(Render, GpipeTwoStagesTwoMicroBatches) {
    EXPECT_EQ(render(make_schedule("gpipe", 2, 2)),
              "stage 0 | F0 F1 .. .. B0 B1\n"
              "stage 1 | .. F0 F1 B0 B1 ..\n");
}

TEST(Render, OneFOneBFourStagesEightMicroBatches) {
    EXPECT_EQ(render(make_schedule("1f1b", 4, 8)),
              "stage 0 | F0 F1 F2 F3 .. .. .. B0 F4 B1 F5 B2 F6 B3 F7 B4 .. B5 .. B6 .. B7\n"
              "stage 1 | .. F0 F1 F2 .. .. B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 .. B6 .. B7 ..\n"
              "stage 2 | .. .. F0 F1 .. B0 F2 B1 F3 B2 F4 B3 F5 B4 F6 B5 F7 B6 .. B7 .. ..\n"
              "stage 3 | .. .. .. F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7 .. .. ..\n");
}

// Two-digit micro-batches widen every column so that the rows stay aligned.
TEST(Render, WideLabelsKeepColumnsAligned) {
    EXPECT_EQ(render(make_schedule("gpipe", 2, 11)),
              "stage 0 | F0  F1  F2  F3  F4  F5  F6  F7  F8  F9  F10 ..  ..  B0  B1  B2  B3  B4  B5  B6  B7  B8  B9  B10\n"
              "stage 1 | ..  F0  F1  F2  F3  F4  F5  F6  F7  F8  F9  F10 B0  B1  B2  B3  B4  B5  B6  B7  B8  B9  B10 ..\n");
}

TEST(Render, RejectsAnInvalidSchedule) {
    Schedule schedule = make_schedule("gpipe", 2, 2);
    schedule.actions[0].pop_back();
    expect_invalid_argument([&] { render(schedule); }, {"no OptimizerStep"});
}

// 1f1b-split: the input half goes upstream before the weight half, so at F = I = W = 1 the
// bubble is (K - 1)(F + I) = 2(K - 1) instead of 1F1B's (K - 1)(F + B) = 3(K - 1), with the same
// peak of stashed micro-batches.
TEST(Simulate, SplitBackwardShrinksTheBubbleToFPlusI) {
    for (int K = 1; K <= 8; ++K)
        for (int M = 1; M <= 16; ++M) {
            const Costs costs = equal_costs(K, 1.0, 2.0, 0.0);  // F = 1, B = 2, I = W = 1
            SimulationResult plain = simulate(make_schedule("1f1b", K, M), costs);
            SimulationResult split = simulate(make_schedule("1f1b-split", K, M), costs);
            EXPECT_NEAR(plain.step_time - 3.0 * M, 3.0 * (K - 1), 1e-12) << "1f1b K=" << K << " M=" << M;
            EXPECT_NEAR(split.step_time - 3.0 * M, 2.0 * (K - 1), 1e-12) << "1f1b-split K=" << K << " M=" << M;
            EXPECT_EQ(split.peak_stashed, plain.peak_stashed) << "K=" << K << " M=" << M;
        }
}

// ZB-H1 at F = I = W = 1: the input backward reaches stage 0 after (K - 1) I instead of (K - 1) B,
// and every rank fills the rest with held-back Ws, so each rank idles (K - 1)(F + I - W) = K - 1
// per step against 1F1B's (K - 1)(F + B) = 3(K - 1): a third (for M >= K). Same peak stash as
// 1F1B (to I), and no stage holds more than 1F1B's first stage does (K, to W).
TEST(Simulate, ZeroBubbleH1IdlesAThirdOf1f1b) {
    for (int K = 1; K <= kMaxStages; ++K)
        for (int M = 1; M <= kMaxMicroBatches; ++M) {
            const Costs costs = equal_costs(K, 1.0, 2.0, 0.0);  // F = 1, B = 2, I = W = 1
            SimulationResult one_f_one_b = simulate(make_schedule("1f1b", K, M), costs);
            SimulationResult h1 = simulate(make_schedule("zb-h1", K, M), costs);
            EXPECT_EQ(h1.peak_stashed, one_f_one_b.peak_stashed) << "K=" << K << " M=" << M;
            for (int rank = 0; rank < K; ++rank) EXPECT_LE(h1.peak_held[rank], std::min(K, M)) << "K=" << K << " M=" << M;
            EXPECT_LE(h1.step_time, one_f_one_b.step_time) << "K=" << K << " M=" << M;
            if (M < K) continue;
            for (int rank = 0; rank < K; ++rank) {
                EXPECT_NEAR(h1.step_time - h1.busy[rank], (K - 1) * (1.0 + 1.0 - 1.0), kBubbleTolerance)
                    << "K=" << K << " M=" << M << " rank " << rank;
                EXPECT_NEAR(3.0 * (h1.step_time - h1.busy[rank]), one_f_one_b.step_time - one_f_one_b.busy[rank],
                            kBubbleTolerance)
                    << "K=" << K << " M=" << M << " rank " << rank;
            }
        }
}

// ZB-H2 at F = I = W = 1: stage s stashes up to 2(K - s) - 1 micro-batches (at most twice 1F1B's
// K - s) and holds at most 2K - 1, and for M >= 2K - 1 no rank idles between its first and last
// action: steps that follow each other without a barrier cost exactly the 3M units of work (zero
// bubble). Within one step (minipipe's optimizer step is a barrier) the ramp of K - 1 remains.
TEST(Simulate, ZeroBubbleH2HasNoBubbleBetweenSteps) {
    for (int K = 1; K <= kMaxStages; ++K)
        for (int M = 1; M <= kMaxMicroBatches; ++M) {
            const Costs costs = equal_costs(K, 1.0, 2.0, 0.0);
            SimulationResult h2 = simulate(make_schedule("zb-h2", K, M), costs);
            for (int stage = 0; stage < K; ++stage) {
                EXPECT_EQ(h2.peak_stashed[stage], std::min(2 * (K - stage) - 1, M)) << "K=" << K << " M=" << M;
                EXPECT_LE(h2.peak_stashed[stage], 2 * std::min(K - stage, M));
                EXPECT_LE(h2.peak_held[stage], std::min(2 * K - 1, M)) << "K=" << K << " M=" << M;
            }
            if (M < 2 * K - 1) continue;
            EXPECT_NEAR(h2.steady_step_time, 3.0 * M, kBubbleTolerance) << "K=" << K << " M=" << M;
            EXPECT_NEAR(h2.step_time, 3.0 * M + (K - 1), kBubbleTolerance) << "K=" << K << " M=" << M;
            for (int stage = 0; stage < K; ++stage)
                EXPECT_NEAR(h2.steady_bubble_fraction[stage], 0.0, kBubbleTolerance) << "K=" << K << " M=" << M;
        }
}

// ZBV at chunk costs F = I = W = 1 (each chunk is half a stage, so a rank's work is 1F1B's): for
// M >= 2K - 1 no rank idles between its first and last action, so steps back to back without a
// barrier cost exactly the 6M units of work (zero bubble); within one step each rank idles K - 1
// — half of ZB-H1's 2(K - 1) on the same model (whose stages cost F = I = W = 2), and the least
// possible with a barrier at the step (rank K - 1's first forward cannot start before K - 1) —
// and no rank ever holds more than 2K chunks, 1F1B's K whole stages.
TEST(Simulate, ZeroBubbleVHasNoBubbleBetweenStepsAtOneFOneBsMemory) {
    for (int K = 1; K <= kMaxStages; ++K)
        for (int M = K; M <= kMaxMicroBatches; ++M) {
            Schedule schedule = make_schedule("zbv", K, M, 2);
            ASSERT_EQ(schedule.stages, 2 * K);
            SimulationResult zbv = simulate(schedule, equal_costs(2 * K, 1.0, 2.0, 0.0));
            SimulationResult h1 = simulate(make_schedule("zb-h1", K, M), equal_costs(K, 2.0, 4.0, 0.0));
            for (int rank = 0; rank < K; ++rank) {
                EXPECT_LE(zbv.peak_stashed[rank], 2 * K) << "K=" << K << " M=" << M;
                EXPECT_LE(zbv.peak_held[rank], 2 * K) << "K=" << K << " M=" << M;
            }
            if (M < 2 * K - 1) continue;
            EXPECT_NEAR(zbv.step_time, 6.0 * M + (K - 1), kBubbleTolerance) << "K=" << K << " M=" << M;
            EXPECT_NEAR(2.0 * (zbv.step_time - 6.0 * M), h1.step_time - 6.0 * M, kBubbleTolerance) << "K=" << K;
            EXPECT_NEAR(zbv.steady_step_time, 6.0 * M, kBubbleTolerance) << "K=" << K << " M=" << M;
            for (int rank = 0; rank < K; ++rank)
                EXPECT_NEAR(zbv.steady_bubble_fraction[rank], 0.0, kBubbleTolerance) << "K=" << K << " M=" << M;
        }
    expect_invalid_argument([] { make_schedule("zbv", 4, 3, 2); }, {"zbv needs micro_batches >= ranks (4), got 3"});
}

// Without a barrier, 1F1B still pays its bubble: the next step's forwards cannot fill stage 0's
// wait for the first backward, so one more step costs as much as the first.
TEST(Simulate, OneFOneBSteadyStepEqualsItsStep) {
    for (int K = 1; K <= kMaxStages; ++K)
        for (int M = K; M <= kMaxMicroBatches; ++M) {
            SimulationResult result = simulate(make_schedule("1f1b", K, M), equal_costs(K, 1.0, 2.0, 0.0));
            EXPECT_NEAR(result.steady_step_time, result.step_time, kBubbleTolerance) << "K=" << K << " M=" << M;
        }
}

// Every registered schedule's closed form, where it has one (a number, not NaN), is what the
// simulator finds at F = I = W = 1 (B = 2) with free transfers, for K = 1..8, M = 1..16 and
// v = 1..4 where allowed. A schedule without one (no_closed_form) is simply not compared.
TEST(Simulate, EveryScheduleMatchesItsClosedForm) {
    int compared = 0;
    for (const ScheduleInfo& info : schedule_registry()) {
        for (int v = 1; v <= 4; ++v)
            for (int K = 1; K <= kMaxStages; ++K)
                for (int M = 1; M <= kMaxMicroBatches; ++M) {
                    if (!info.rule(K, M, v).empty()) continue;
                    const double theory = info.unit_cost_bubble(K, M, v);
                    if (std::isnan(theory)) continue;
                    Schedule schedule = make_schedule(info.name, K, M, v);
                    SimulationResult result = simulate(schedule, equal_costs(schedule.stages, 1.0, 2.0));
                    for (int rank = 0; rank < K; ++rank)
                        EXPECT_NEAR(result.bubble_fraction[rank], theory, kBubbleTolerance)
                            << info.name << " K=" << K << " M=" << M << " v=" << v << " rank " << rank;
                    ++compared;
                }
    }
    EXPECT_GT(compared, 0);
    EXPECT_TRUE(std::isnan(no_closed_form(4, 8, 1)));
}

// Every registered schedule's peak_stashed is, on every rank, the simulator's peak of stashed
// activations (forwarded, not yet through B or I), for K = 1..8, M = 1..16 and v = 1..4 where
// allowed. (The order of a rank's own list decides it, so any costs would do.)
TEST(Simulate, EveryScheduleStashesItsPeak) {
    for (const ScheduleInfo& info : schedule_registry()) {
        ASSERT_TRUE(info.peak_stashed) << info.name << " has no peak_stashed";
        int compared = 0;
        for (int v = 1; v <= 4; ++v)
            for (int K = 1; K <= kMaxStages; ++K)
                for (int M = 1; M <= kMaxMicroBatches; ++M) {
                    if (!info.rule(K, M, v).empty()) continue;
                    Schedule schedule = make_schedule(info.name, K, M, v);
                    SimulationResult result = simulate(schedule, equal_costs(schedule.stages, 1.0, 2.0));
                    for (int rank = 0; rank < K; ++rank)
                        EXPECT_EQ(result.peak_stashed[rank], info.peak_stashed(K, M, v, rank))
                            << info.name << " K=" << K << " M=" << M << " v=" << v << " rank " << rank;
                    ++compared;
                }
        EXPECT_GT(compared, 0) << info.name;
    }
}

// Interleaved 1F1B's stash: Megatron's warm-up forwards, (v-1)K + 2(K-r-1), plus the steady
// state's one, on rank r (all vM when M = K: every forward is warm-up).
TEST(Simulate, InterleavedPeakStashIsItsWarmUpPlusOne) {
    for (int v = 2; v <= 4; ++v)
        for (int K = 1; K <= kMaxStages; ++K)
            for (int M = K; M <= kMaxMicroBatches; M += K) {
                SimulationResult result =
                    simulate(make_schedule("interleaved-1f1b", K, M, v), equal_costs(K * v, 1.0, 2.0));
                for (int r = 0; r < K; ++r) {
                    const int bound = M == K ? v * M : std::min((v - 1) * K + 2 * (K - r - 1) + 1, v * M);
                    EXPECT_EQ(result.peak_stashed[r], bound) << "K=" << K << " M=" << M << " v=" << v << " rank " << r;
                }
            }
}
