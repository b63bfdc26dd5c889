// The trainer: runs a whole training job described by a TrainConfig on the ranks of a
// communicator — pipeline stages × data-parallel replicas — and prints what a person wants to
// see: the per-stage report, the schedule, step / loss / tokens/s / bubble / memory lines, where
// the trace, timeline and checkpoints went, and samples. The examples are thin mains around it.
#pragma once

#include <string>
#include <vector>

#include "comm/communicator.h"
#include "nn/model_spec.h"
#include "nn/models.h"
#include "pipeline/config.h"
#include "pipeline/summary.h"
#include "pipeline/trace.h"

namespace mp::pipeline {

struct TrainResult {
    RunSummary summary;                   // on every rank (bubble and memory for every stage)
    std::vector<StageTrace> last_traces;  // world rank 0: the last step's traces of replica 0, by stage
    std::vector<double> losses;           // the mean loss of every step run
};

// The model a config describes (the same on every rank; nothing allocated).
nn::ModelSpec model_spec(const TrainConfig& config);
// The GPT a config describes (model.kind gpt).
nn::GPTConfig gpt_config(const TrainConfig& config);

// Collective over `world`: trains config.steps steps (resuming from config.checkpoint.dir when
// asked). `gpu` is the GPU this rank is bound to (-1: none). Logs go to stdout on world rank 0
// (only the final line when not verbose).
TrainResult train(const TrainConfig& config, comm::Communicator& world, int gpu, bool verbose = true);

// Before training: the files the run will write at its end (trace.path, trace.svg, summary.path)
// and checkpoint.dir must be writable places, so that a typo is refused at start-up, naming the
// key and the path, not after the whole run. Throws std::invalid_argument. (World rank 0 writes
// them; the trainers call this there, inside the start-up agreement.)
void check_output_paths(const TrainConfig& config);

}  // namespace mp::pipeline
