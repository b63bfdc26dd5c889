// What the trainer prints while it runs: the start-up report (model, layout, data, the partition
// with each stage's parameters and activations, the schedule) and the step lines (loss, lr, norm,
// tokens/s, MFU, bubble per stage, memory per stage). Both hold collectives: every rank calls them.
#pragma once

#include <cstdint>

#include "pipeline/engine.h"
#include "train/run.h"

namespace mp::train {

// Before the first step. Collective over the pipeline (the stages' activation estimates).
void report_start(Run& run);

// The line of `step`, whose result is `last` and which took `seconds`. Collective over the pipeline.
void report_step(Run& run, int64_t step, const pipeline::StepResult& last, double seconds);

}  // namespace mp::train
