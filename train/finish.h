// The end of a run: the summary (timings, every stage's bubble and memory, the checksum on every
// rank), the outputs (trace, timeline, whole-model export, Hugging Face export, summary file) and
// the closing lines (final loss, held-out sums or samples).
#pragma once

#include "train/run.h"
#include "train/step_loop.h"

namespace mp::train {

// Collective: fills run.result.summary, writes the outputs and prints the closing lines.
void finish_run(Run& run, const LoopOutcome& outcome);

}  // namespace mp::train
