// What the multi-rank pipeline tests share: one-process SGD training of a whole model (the
// reference every schedule must equal), a rank's stages built and tied as the trainer builds them,
// and the walk over pipeline sizes (ranks × schedule × micro-batches) that the tests sweep.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tape.h"
#include "comm/communicator.h"
#include "nn/layers.h"
#include "nn/model_spec.h"
#include "nn/optim.h"
#include "pipeline/loss.h"
#include "pipeline/partition.h"
#include "pipeline/schedule.h"

namespace mp::testing {

// One process's training: every parameter by name after the last step, and every step's loss.
struct OneProcessTraining {
    std::map<std::string, Tensor> parameters;
    std::vector<double> losses;
};

// `steps` SGD steps of the whole model of `spec` on one batch (on `device`), dropout masks keyed
// by the step as the engine keys them, gradients clipped to `grad_clip` when it is positive.
inline OneProcessTraining train_one_process(const nn::ModelSpec& spec, const pipeline::LossFunction& loss,
                                            const Tensor& inputs, const Tensor& targets,
                                            const nn::SGDOptions& options, int steps, double grad_clip = 0,
                                            Device device = Device::cpu()) {
    auto model = spec.build_all();
    model->to(device);
    nn::SGD sgd(model->parameters(), options);
    OneProcessTraining reference;
    for (int step = 0; step < steps; ++step) {
        sgd.zero_grad();
        autograd::Tape tape;
        autograd::TapeScope scope(tape);
        nn::DropoutReplayScope masks(static_cast<uint64_t>(step), 0);
        Tensor step_loss = loss.mean_loss(model->forward(inputs.to(device)), targets.to(device));
        tape.backward(step_loss);
        reference.losses.push_back(step_loss.item());
        if (grad_clip > 0) nn::clip_grad_norm(model->parameters(), grad_clip);
        sgd.step();
    }
    for (auto& [name, parameter] : model->named_parameters()) reference.parameters[name] = parameter;
    return reference;
}

// Rank `rank`'s stages of `ranges` under the schedule, in stage order, tied across as the trainer
// ties them (a rank holding the first and the last stage of a tied GPT holds one embedding).
inline std::vector<std::shared_ptr<nn::Sequential>> build_rank_stages(const nn::ModelSpec& spec,
                                                                      const pipeline::Schedule& schedule,
                                                                      const std::vector<pipeline::StageRange>& ranges,
                                                                      int rank) {
    std::vector<std::shared_ptr<nn::Sequential>> modules;
    for (int stage : schedule.stages_of(rank)) {
        const pipeline::StageRange& range = ranges.at(static_cast<size_t>(stage));
        modules.push_back(spec.build(range.begin, range.end));
    }
    nn::tie_across(spec, modules);
    return modules;
}

// One pipeline size of a sweep: a group of K ranks, a registered schedule with its own stages per
// rank (v), and M micro-batches that the schedule's rule allows.
struct PipelineSize {
    comm::Communicator& group;
    const pipeline::ScheduleInfo& schedule;
    int ranks = 0, virtual_stages = 0, micro_batches = 0;
    int stages() const { return ranks * virtual_stages; }
};

// Calls `body` for every K from `min_ranks` to min(world size, 4) (the group of world ranks 0..K-1),
// every registered schedule whose K · v stages each get a layer of the `layers`, and every M of
// `micro_batch_counts` its rule allows. Collective: every world rank calls it, and a rank outside
// the group sits that K out.
inline void for_each_pipeline_size(comm::Communicator& world, int min_ranks, int64_t layers,
                                   const std::vector<int>& micro_batch_counts,
                                   const std::function<void(const PipelineSize&)>& body) {
    for (int ranks = min_ranks; ranks <= std::min(world.size(), 4); ++ranks) {
        std::unique_ptr<comm::Communicator> group = world.split(world.rank() < ranks ? 0 : -1);
        if (!group) continue;  // this rank sits out a pipeline smaller than the job
        for (const pipeline::ScheduleInfo& info : pipeline::schedule_registry()) {
            const int v = info.default_virtual_stages;
            if (ranks * v > layers) continue;  // every stage needs a layer
            for (int micro_batches : micro_batch_counts)
                if (info.rule(ranks, micro_batches, v).empty()) body({*group, info, ranks, v, micro_batches});
        }
    }
}

}  // namespace mp::testing
