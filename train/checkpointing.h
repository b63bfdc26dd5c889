// The trainer's checkpoints: resuming from checkpoint.dir (refused when it holds nothing, was
// saved under another stage placement or learning-rate curve, or has nothing left to train) and
// saving every stage's file with the index, with how long each took.
#pragma once

#include <cstdint>

#include "train/run.h"

namespace mp::train {

// Loads this rank's stages and optimizer state from config.checkpoint.dir; returns the step to
// continue from. Collective (a barrier once every rank has loaded).
int64_t resume_from_checkpoint(Run& run);

// Saves the state after `step` steps (replica 0's ranks write; the others return at once).
// Collective over the pipeline.
void save_checkpoint(Run& run, int64_t step);

}  // namespace mp::train
