// The trainer's step loop: every step from the start (or resume) step to config.steps, each with
// what is due before it (validation) and after it (the step line, held-out sums, a checkpoint),
// and what the loop hands over to the end of the run (train/finish.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/engine.h"
#include "train/run.h"

namespace mp::train {

// What the step loop hands over to the end of the run.
struct LoopOutcome {
    pipeline::StepResult last;                  // the last step's result on this rank
    double seconds_per_step = 0;                // mean over the timed steps (not the first, warm-up one)
    std::vector<std::string> held_out_answers;  // world rank 0: the last held-out answers
};

// Steps start_step .. config.steps - 1, then the final checkpoint (when checkpoint.dir is set) and
// the final validation loss (with validation data). Collective: every rank runs the same steps.
LoopOutcome run_steps(Run& run, int64_t start_step);

}  // namespace mp::train
