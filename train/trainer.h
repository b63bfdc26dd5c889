// The trainer: runs a whole training job described by a TrainConfig on the ranks of a communicator
// (pipeline stages × data-parallel replicas), printing the stage report, step lines, outputs and
// samples (train/report.h, train/finish.h). The examples are thin mains around it.
#pragma once

#include <vector>

#include "comm/communicator.h"
#include "pipeline/trace.h"
#include "train/config.h"
#include "train/summary.h"

namespace mp::train {

struct TrainResult {
    RunSummary summary;                             // on every rank (bubble and memory for every stage)
    std::vector<pipeline::StageTrace> last_traces;  // world rank 0: the last step's traces of replica 0, by stage
    std::vector<double> losses;                     // the mean loss of every step run
};

// Collective over `world`: trains config.steps steps (resuming from config.checkpoint.dir when
// asked). `gpu` is the GPU this rank is bound to (-1: none). Logs go to stdout on world rank 0
// (only the final line when not verbose).
TrainResult train(const TrainConfig& config, comm::Communicator& world, int gpu, bool verbose = true);

}  // namespace mp::train
