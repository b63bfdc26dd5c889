// What the multi-rank pipeline tests compare against and build from: one-process SGD training of
// a whole model (the reference every schedule must equal), and a rank's stages built and tied as
// the trainer builds them.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tape.h"
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

}  // namespace mp::testing
