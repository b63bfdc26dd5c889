// One rank's training run: where the rank sits (pipeline rank × replica), the model, data and
// schedule the config describes, the stages it holds, its optimizer and engine. Built in one
// order on every rank, because some steps are collectives (the time partition, ties, the MFU basis).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "nn/additions.h"
#include "nn/hf_gpt2.h"
#include "nn/model_spec.h"
#include "nn/optim.h"
#include "pipeline/engine.h"
#include "pipeline/partition.h"
#include "pipeline/schedule.h"
#include "train/config.h"
#include "train/data.h"
#include "train/log.h"
#include "train/mfu.h"
#include "train/trainer.h"

namespace mp::train {

// Where this rank sits: stage ranks × data-parallel replicas, with the communicators of its
// pipeline and, with several replicas, of its pipeline rank across the replicas.
struct RankPlace {
    int ranks_per_pipeline = 0;  // K = pipeline.stages
    int virtual_stages = 0;      // v: stages per rank
    int replicas = 0;
    int pipeline_rank = 0, replica = 0;
    int64_t shard = 0;  // rows of each global batch this replica trains on
    std::unique_ptr<comm::Communicator> pipeline, replica_group;

    // This replica's rows of a global batch.
    Tensor shard_of(const Tensor& global) const { return global.slice(replica * shard, (replica + 1) * shard); }
};

// The stages this rank holds, built on its device with their ties.
struct HeldStages {
    std::vector<pipeline::StageRange> ranges;              // every stage's layers, by stage
    std::vector<std::shared_ptr<nn::Sequential>> modules;  // this rank's stages, in stage order
    std::shared_ptr<nn::Sequential> checkpoint_module;     // its one stage, or all the layers of its several
    std::vector<Tensor> parameters;                        // distinct (a tied parameter once)
    std::string placement;                                 // "0,1,1,0": the rank of stages 0, 1, ...
    std::optional<nn::HfGpt2Config> hf;                    // model.init_from
};

struct Run {
    // Builds everything, in member order (collective: every rank of `world` calls it alike).
    Run(const TrainConfig& config, comm::Communicator& world, Device device, bool verbose);

    const TrainConfig& config;
    comm::Communicator& world;
    const Device device;
    const RunLog log;        // world rank 0, when verbose
    const RunLog final_log;  // world rank 0: the final line
    RankPlace place;
    const nn::ModelSpec spec;
    const DataSource data;
    const pipeline::Schedule schedule;
    HeldStages stages;
    std::unique_ptr<nn::Optimizer> optimizer;
    std::unique_ptr<pipeline::Engine> engine;
    MfuBasis mfu;
    std::vector<nn::AdditionProblem> held_out;  // eval.accuracy's sums; empty without
    TrainResult result;

    bool has_validation() const { return !config.data.val_path.empty(); }
    double tokens_per_step() const;
    // How a log line names a pipeline rank: "stage", or "rank" where it holds several stages.
    const char* stage_word() const { return place.virtual_stages == 1 ? "stage" : "rank"; }
};

}  // namespace mp::train
