// The simulator: the validator's replay driven by real costs, then the per-stage numbers
// (busy time, bubble fraction, peak stashed micro-batches) read off the resulting timeline.
#include "pipeline/simulate.h"

#include <algorithm>
#include <cmath>

#include "kernels/common/error.h"

namespace mp::pipeline {

Costs equal_costs(int stages, double forward, double backward, double transfer) {
    MP_REQUIRE(stages >= 1, "equal_costs: stages must be >= 1, got ", stages);
    Costs costs;
    costs.forward.assign(stages, forward);
    costs.backward.assign(stages, backward);
    costs.transfer = transfer;
    return costs;
}

namespace {

void check_costs(const Schedule& schedule, const Costs& costs) {
    MP_REQUIRE(static_cast<int>(costs.forward.size()) == schedule.stages, "simulate: ", costs.forward.size(),
               " forward costs for ", schedule.stages, " stages");
    MP_REQUIRE(static_cast<int>(costs.backward.size()) == schedule.stages, "simulate: ", costs.backward.size(),
               " backward costs for ", schedule.stages, " stages");
    for (int stage = 0; stage < schedule.stages; ++stage) {
        MP_REQUIRE(std::isfinite(costs.forward[stage]) && costs.forward[stage] >= 0.0, "simulate: forward cost of stage ",
                   stage, " is ", costs.forward[stage], " (need a finite time >= 0)");
        MP_REQUIRE(std::isfinite(costs.backward[stage]) && costs.backward[stage] >= 0.0,
                   "simulate: backward cost of stage ", stage, " is ", costs.backward[stage], " (need a finite time >= 0)");
    }
    MP_REQUIRE(std::isfinite(costs.transfer) && costs.transfer >= 0.0, "simulate: transfer cost is ", costs.transfer,
               " (need a finite time >= 0)");
}

}  // namespace

SimulationResult simulate(const Schedule& schedule, const Costs& costs) {
    ValidationResult stages_ok = check_stages(schedule);
    MP_REQUIRE(stages_ok.ok, "simulate: invalid schedule: ", stages_ok.error);
    check_costs(schedule, costs);

    auto compute_time = [&costs](int stage, const Action& action) {
        if (action.kind == ActionKind::Forward) return costs.forward[stage];
        if (action.kind == ActionKind::Backward) return costs.backward[stage];
        return 0.0;  // the optimizer step
    };
    ReplayResult replayed = replay(schedule, compute_time, costs.transfer);
    MP_REQUIRE(replayed.ok, "simulate: invalid schedule: ", replayed.error);

    SimulationResult result;
    result.timeline = std::move(replayed.timeline);
    const int stages = schedule.stages;
    result.busy.assign(stages, 0.0);
    result.bubble_fraction.assign(stages, 0.0);
    result.peak_stashed.assign(stages, 0);
    for (int stage = 0; stage < stages; ++stage) {
        int stashed = 0;
        for (const TimedAction& timed : result.timeline[stage]) {
            result.step_time = std::max(result.step_time, timed.end);
            if (!is_compute(timed.action.kind)) continue;
            result.busy[stage] += timed.end - timed.start;
            // Actions of a stage run one after another, so the running count in list order is
            // the count over time.
            stashed += timed.action.kind == ActionKind::Forward ? 1 : -1;
            result.peak_stashed[stage] = std::max(result.peak_stashed[stage], stashed);
        }
    }
    for (int stage = 0; stage < stages; ++stage)
        result.bubble_fraction[stage] = result.step_time > 0.0 ? 1.0 - result.busy[stage] / result.step_time : 0.0;
    return result;
}

}  // namespace mp::pipeline
