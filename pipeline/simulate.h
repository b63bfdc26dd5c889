// The schedule simulator: replays a valid schedule with per-stage forward / backward / input-
// backward / weight-backward times and a per-message transfer time, and predicts the step time,
// each rank's bubble fraction and its peak number of stashed micro-batches — the numbers the
// pipeline's trace is compared against.
#pragma once

#include <vector>

#include "pipeline/schedule.h"
#include "pipeline/validate.h"

namespace mp::pipeline {

// Time of one Forward / Backward / InputBackward / WeightBackward on each (virtual) stage, and of
// one message between ranks. The optimizer step is taken as free.
struct Costs {
    std::vector<double> forward;          // [stage]
    std::vector<double> backward;         // [stage]: the whole backward, B
    std::vector<double> input_backward;   // [stage]: I
    std::vector<double> weight_backward;  // [stage]: W
    double transfer = 0.0;
};

// The same times on every stage; I and W each take half of the backward (B = I + W).
Costs equal_costs(int stages, double forward = 1.0, double backward = 1.0, double transfer = 0.0);

struct SimulationResult {
    double step_time = 0.0;                            // when the last rank finishes its last action
    std::vector<double> busy;                          // [rank]: time spent in compute actions
    std::vector<double> bubble_fraction;               // [rank]: 1 - busy / step_time
    // Steps back to back with no barrier between them (each rank starts its next step as soon as
    // its own optimizer step is done, as the zero-bubble paper's post-validated step allows): the
    // time one more step adds (two steps replayed, minus one step), and each rank's bubble in it,
    // 1 - busy / steady_step_time. With the barrier minipipe's optimizer step has (the global
    // gradient norm and the finite-loss agreement need every stage), step_time is what a step costs.
    double steady_step_time = 0.0;
    std::vector<double> steady_bubble_fraction;        // [rank]
    // [rank]: max over time of the micro-batches whose activations the rank holds (forwarded, not
    // yet through their input backward), summed over its stages.
    std::vector<int> peak_stashed;
    // [rank]: the same until W (or B): micro-batches any of whose tensors the rank still holds —
    // with a split backward, W keeps the inputs of the weight gradients after I has freed the rest.
    std::vector<int> peak_held;
    std::vector<std::vector<TimedAction>> timeline;    // [rank]: every action with its start and end
};

// Simulates one step under the communication model of validate(). Throws std::invalid_argument
// if the costs do not fit the schedule (sizes, negative times) or the schedule is invalid (the
// message carries the validator's error).
SimulationResult simulate(const Schedule& schedule, const Costs& costs);

}  // namespace mp::pipeline
