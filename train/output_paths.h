// Before training: the files a run will write at its end must be writable places, so that a typo
// is refused at start-up, naming the key and the path, not after the whole run.
#pragma once

#include "train/config.h"

namespace mp::train {

// trace.path, trace.svg, summary.path, export.hf and checkpoint.dir, each when set. Throws
// std::invalid_argument. World rank 0 writes them; the trainers call this there, inside the
// start-up agreement.
void check_output_paths(const TrainConfig& config);

}  // namespace mp::train
