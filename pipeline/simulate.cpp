// The simulator: the validator's replay driven by real costs (F, B, I, W priced per stage), then
// the per-rank numbers (busy time, bubble fraction, peak stashed micro-batches) read off the timeline.
#include "pipeline/simulate.h"

#include <algorithm>
#include <cmath>

#include "base/error.h"

namespace mp::pipeline {

Costs equal_costs(int stages, double forward, double backward, double transfer) {
    MP_REQUIRE(stages >= 1, "equal_costs: stages must be >= 1, got ", stages);
    Costs costs;
    costs.forward.assign(stages, forward);
    costs.backward.assign(stages, backward);
    costs.input_backward.assign(stages, backward / 2);
    costs.weight_backward.assign(stages, backward / 2);
    costs.transfer = transfer;
    return costs;
}

namespace {

void check_cost_list(const std::vector<double>& times, const char* what, int stages) {
    MP_REQUIRE(static_cast<int>(times.size()) == stages, "simulate: ", times.size(), " ", what, " costs for ", stages,
               " stages");
    for (int stage = 0; stage < stages; ++stage)
        MP_REQUIRE(std::isfinite(times[stage]) && times[stage] >= 0.0, "simulate: ", what, " cost of stage ", stage,
                   " is ", times[stage], " (need a finite time >= 0)");
}

void check_costs(const Schedule& schedule, const Costs& costs) {
    check_cost_list(costs.forward, "forward", schedule.stages);
    check_cost_list(costs.backward, "backward", schedule.stages);
    check_cost_list(costs.input_backward, "input_backward", schedule.stages);
    check_cost_list(costs.weight_backward, "weight_backward", schedule.stages);
    MP_REQUIRE(std::isfinite(costs.transfer) && costs.transfer >= 0.0, "simulate: transfer cost is ", costs.transfer,
               " (need a finite time >= 0)");
}

double compute_cost(const Costs& costs, const Action& action) {
    switch (action.kind) {
        case ActionKind::Forward: return costs.forward[action.stage];
        case ActionKind::Backward: return costs.backward[action.stage];
        case ActionKind::InputBackward: return costs.input_backward[action.stage];
        case ActionKind::WeightBackward: return costs.weight_backward[action.stage];
        case ActionKind::OptimizerStep: return 0.0;
        case ActionKind::SendActivation:
        case ActionKind::RecvActivation:
        case ActionKind::SendGradient:
        case ActionKind::RecvGradient: break;
    }
    throw std::logic_error("simulate: compute_cost of a communication action");
}

// How a compute action changes the number of micro-batches whose activations are held: F stashes
// one, B or I releases it (W needs only the weight-gradient inputs kept by I).
int stash_change(ActionKind kind) {
    switch (kind) {
        case ActionKind::Forward: return 1;
        case ActionKind::Backward:
        case ActionKind::InputBackward: return -1;
        case ActionKind::WeightBackward:
        case ActionKind::SendActivation:
        case ActionKind::RecvActivation:
        case ActionKind::SendGradient:
        case ActionKind::RecvGradient:
        case ActionKind::OptimizerStep: return 0;
    }
    return 0;
}

}  // namespace

SimulationResult simulate(const Schedule& schedule, const Costs& costs) {
    ValidationResult lists_ok = check_rank_lists(schedule);
    MP_REQUIRE(lists_ok.ok, "simulate: invalid schedule: ", lists_ok.error);
    check_costs(schedule, costs);

    auto compute_time = [&costs](int, const Action& action) { return compute_cost(costs, action); };
    ReplayResult replayed = replay(schedule, compute_time, costs.transfer);
    MP_REQUIRE(replayed.ok, "simulate: invalid schedule: ", replayed.error);

    SimulationResult result;
    result.timeline = std::move(replayed.timeline);
    const int ranks = schedule.ranks;
    result.busy.assign(ranks, 0.0);
    result.bubble_fraction.assign(ranks, 0.0);
    result.peak_stashed.assign(ranks, 0);
    result.peak_held.assign(ranks, 0);
    for (int rank = 0; rank < ranks; ++rank) {
        int stashed = 0, held = 0;
        for (const TimedAction& timed : result.timeline[rank]) {
            result.step_time = std::max(result.step_time, timed.end);
            if (!is_compute(timed.action.kind)) continue;
            result.busy[rank] += timed.end - timed.start;
            // Actions of a rank run one after another, so the running count in list order is
            // the count over time.
            stashed += stash_change(timed.action.kind);
            result.peak_stashed[rank] = std::max(result.peak_stashed[rank], stashed);
            held += timed.action.kind == ActionKind::Forward ? 1
                    : timed.action.kind == ActionKind::Backward || timed.action.kind == ActionKind::WeightBackward ? -1
                                                                                                                  : 0;
            result.peak_held[rank] = std::max(result.peak_held[rank], held);
        }
    }
    for (int rank = 0; rank < ranks; ++rank)
        result.bubble_fraction[rank] = result.step_time > 0.0 ? 1.0 - result.busy[rank] / result.step_time : 0.0;

    // Two steps in a row: each rank's list twice, the second step's micro-batches numbered after
    // the first's (so their messages never match the first step's). The first optimizer step is
    // dropped (it is free, and the lists must keep one step, at the end).
    Schedule two_steps = schedule;
    two_steps.micro_batches = 2 * schedule.micro_batches;
    for (std::vector<Action>& list : two_steps.actions) {
        std::vector<Action> first_step;
        for (const Action& action : list)
            if (action.kind != ActionKind::OptimizerStep) first_step.push_back(action);
        std::vector<Action> both = first_step;
        for (Action action : list) {
            if (action.kind != ActionKind::OptimizerStep) action.micro_batch += schedule.micro_batches;
            both.push_back(action);
        }
        list = std::move(both);
    }
    ReplayResult twice = replay(two_steps, compute_time, costs.transfer);
    MP_REQUIRE(twice.ok, "simulate: two steps of the schedule do not replay: ", twice.error);
    double two_step_time = 0.0;
    for (const std::vector<TimedAction>& list : twice.timeline)
        for (const TimedAction& timed : list) two_step_time = std::max(two_step_time, timed.end);
    result.steady_step_time = two_step_time - result.step_time;
    result.steady_bubble_fraction.assign(ranks, 0.0);
    for (int rank = 0; rank < ranks; ++rank)
        result.steady_bubble_fraction[rank] =
            result.steady_step_time > 0.0 ? 1.0 - result.busy[rank] / result.steady_step_time : 0.0;
    return result;
}

}  // namespace mp::pipeline
