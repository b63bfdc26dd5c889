// The schedule simulator: replays a valid schedule with per-stage forward/backward times and a
// per-message transfer time, and predicts the step time, each stage's bubble fraction and its
// peak number of stashed micro-batches — the numbers the pipeline's trace is compared against.
#pragma once

#include <vector>

#include "pipeline/schedule.h"
#include "pipeline/validate.h"

namespace mp::pipeline {

// Time of one Forward / Backward on each stage, and of one message between neighbours.
// The optimizer step is taken as free.
struct Costs {
    std::vector<double> forward;   // [stage]
    std::vector<double> backward;  // [stage]
    double transfer = 0.0;
};

// The same forward and backward time on every stage.
Costs equal_costs(int stages, double forward = 1.0, double backward = 1.0, double transfer = 0.0);

struct SimulationResult {
    double step_time = 0.0;                            // when the last stage finishes its last action
    std::vector<double> busy;                          // [stage]: time spent in Forward and Backward
    std::vector<double> bubble_fraction;               // [stage]: 1 - busy / step_time
    std::vector<int> peak_stashed;                     // [stage]: max over time of forwards - backwards done
    std::vector<std::vector<TimedAction>> timeline;    // [stage]: every action with its start and end
};

// Simulates one step under the communication model of validate(). Throws std::invalid_argument
// if the costs do not fit the schedule (sizes, negative times) or the schedule is invalid (the
// message carries the validator's error).
SimulationResult simulate(const Schedule& schedule, const Costs& costs);

}  // namespace mp::pipeline
