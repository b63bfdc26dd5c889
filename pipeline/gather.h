// Collecting what is spread over the stages: the whole model's parameters on rank 0 (for
// sampling, export and checksums), every stage's trace on rank 0, and one number per stage onto
// every rank (for the logs).
#pragma once

#include <memory>
#include <vector>

#include "comm/communicator.h"
#include "nn/model_spec.h"
#include "pipeline/partition.h"
#include "pipeline/trace.h"

namespace mp::pipeline {

// Collective over the pipeline group: stage s holds layers ranges[s] of `spec` and runs on rank
// placement[s]; `held` are this rank's stage modules in increasing stage order. Rank 0 returns the
// whole model on the CPU with every stage's current parameters; others return null.
std::shared_ptr<nn::Sequential> gather_model(comm::Communicator& pipeline, const nn::ModelSpec& spec,
                                             const std::vector<StageRange>& ranges, const std::vector<int>& placement,
                                             const std::vector<std::shared_ptr<nn::Sequential>>& held);

// Collective over `comm`: every rank sends its trace to rank 0; rank 0 returns all of them in
// stage order (other ranks return only their own).
std::vector<StageTrace> gather_traces(comm::Communicator& comm, const StageTrace& mine);

// Collective: every rank contributes `value`; every rank gets all of them, in rank order.
std::vector<double> all_gather_values(comm::Communicator& comm, double value, Device device);

}  // namespace mp::pipeline
