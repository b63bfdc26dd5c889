// The end of a run: the summary (timings, every stage's bubble and memory, the checksum on every
// rank), the outputs (trace, timeline, whole-model export, Hugging Face export, summary file) and
// the closing lines (final loss, held-out sums or samples).
#pragma once

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

// Collective: fills run.result.summary, writes the outputs and prints the closing lines.
void finish_run(Run& run, const LoopOutcome& outcome);

}  // namespace mp::train
