// Setting up one rank's run: its place in the world, the partition every rank agrees on, a check
// that its stages can fit in the device's memory, the stages themselves, the optimizer and engine.
#include "train/run.h"

#include <algorithm>

#include "tensor/device_context.h"
#include "train/build.h"
#include "train/config_rules.h"

namespace mp::train {

namespace {

RankPlace place_rank(const TrainConfig& config, comm::Communicator& world) {
    RankPlace place;
    place.ranks_per_pipeline = static_cast<int>(config.pipeline.stages);
    place.virtual_stages = static_cast<int>(config.pipeline.virtual_stages);
    place.replicas = data_parallel_size(config, world.size());
    place.pipeline_rank = world.rank() % place.ranks_per_pipeline;
    place.replica = world.rank() / place.ranks_per_pipeline;
    place.shard = config.train_batch_size / place.replicas;
    place.pipeline = world.split(place.replica, place.pipeline_rank);
    place.replica_group = place.replicas > 1 ? world.split(place.pipeline_rank, place.replica) : nullptr;
    return place;
}

// Every rank must partition alike: with `time`, world rank 0 profiles and broadcasts the times.
std::vector<pipeline::StageRange> decide_partition(const TrainConfig& config, const nn::ModelSpec& spec,
                                                   const DataSource& data, comm::Communicator& world, Device device) {
    const int stages = static_cast<int>(config.pipeline.stages * config.pipeline.virtual_stages);
    const pipeline::PartitionMethod method = config.pipeline.partition;
    std::vector<double> times;
    if (method == pipeline::PartitionMethod::Time) {
        std::vector<float> measured(static_cast<size_t>(spec.size()), 0.0f);
        if (world.rank() == 0) {
            Tensor sample = data.batch(config, 0).ids.slice(0, config.micro_batch_size);
            std::vector<double> t = pipeline::profile_layer_times(spec, sample, device);
            measured.assign(t.begin(), t.end());
        }
        Tensor shared = Tensor::from_vector(measured, {spec.size()}, comm::staging_device(world, device));
        world.broadcast(shared, 0);
        for (float t : shared.to_vector<float>()) times.push_back(t);
    }
    return pipeline::partition(spec, stages, method, config.pipeline.balance, times);
}

// Before building anything: a lower bound of what this stage will hold — its parameters with
// their gradients and optimizer state in fp32, the last stage's logits and their gradient for one
// micro-batch, one layer's attention scores — against the device's memory. A model that cannot
// fit is refused with its numbers instead of ending in a bare std::bad_alloc (or worse) later.
void refuse_if_it_cannot_fit(const TrainConfig& config, const nn::ModelSpec& spec,
                             const std::vector<pipeline::StageRange>& held, bool last_stage, Device device) {
    double parameters = 0;
    for (const pipeline::StageRange& range : held)
        for (int64_t i = range.begin; i < range.end; ++i) parameters += static_cast<double>(spec.layers[i].parameters);
    const bool adamw = config.optimizer.type == OptimizerKind::AdamW;
    const double copies = 2 + (adamw ? 2 : config.optimizer.momentum > 0 ? 1 : 0);  // weights, grads, state
    double bytes = parameters * 4.0 * copies;
    const TrainConfig::Model& m = config.model;
    const double rows = static_cast<double>(config.micro_batch_size);
    const bool gpt = m.kind == ModelKind::Gpt;
    if (gpt) {
        if (last_stage) bytes += 2.0 * rows * m.context * m.vocab * 4.0;
        bytes += rows * m.heads * static_cast<double>(m.context) * m.context * 4.0;
    }
    const double available = static_cast<double>(device_memory_bytes(device));
    MP_REQUIRE(bytes <= available, "this stage needs at least ", bytes_str(bytes), " (", parameters,
               " parameters with gradients and ", adamw ? "AdamW" : "SGD", " state",
               gpt ? str(", and for micro_batch_size ", config.micro_batch_size, " × context ", m.context, " × vocab ",
                         m.vocab, " its logits and attention scores")
                   : std::string(),
               ") but ", device.str(), " has ", bytes_str(available), "; use a smaller model or batch, or more stages");
}

// The partition (collective), then this rank's stages: checked against the memory, built, loaded
// from model.init_from, moved to the device and tied.
HeldStages hold_stages(const TrainConfig& config, const nn::ModelSpec& spec, const DataSource& data,
                       const pipeline::Schedule& schedule, comm::Communicator& world, int pipeline_rank,
                       Device device) {
    HeldStages held;
    held.ranges = decide_partition(config, spec, data, world, device);  // one per stage
    std::vector<pipeline::StageRange> held_ranges;
    for (int s : schedule.stages_of(pipeline_rank)) held_ranges.push_back(held.ranges[static_cast<size_t>(s)]);
    refuse_if_it_cannot_fit(config, spec, held_ranges, schedule.rank_of(schedule.stages - 1) == pipeline_rank,
                            device);
    if (!config.model.init_from.empty()) held.hf = nn::read_hf_gpt2_config(config.model.init_from);
    for (const pipeline::StageRange& range : held_ranges) {
        held.modules.push_back(spec.build(range.begin, range.end));
        if (held.hf) nn::load_hf_gpt2(*held.hf, *held.modules.back());  // this stage's tensors only
        held.modules.back()->to(device);
    }
    nn::tie_across(spec, held.modules);  // a rank holding the first and the last stage: one embedding
    held.parameters = nn::unique_parameters(held.modules);
    held.checkpoint_module = held.modules.front();
    if (held.modules.size() > 1) {
        held.checkpoint_module = std::make_shared<nn::Sequential>();
        for (const std::shared_ptr<nn::Sequential>& stage : held.modules) held.checkpoint_module->add_layers_of(*stage);
    }
    // Which stage runs on which rank: a checkpoint is resumed only under the same placement.
    for (int rank : schedule.placement) held.placement += (held.placement.empty() ? "" : ",") + std::to_string(rank);
    return held;
}

}  // namespace

Run::Run(const TrainConfig& config_, comm::Communicator& world_, Device device_, bool verbose)
    : config(config_),
      world(world_),
      device(device_),
      log{world_.rank() == 0 && verbose},
      final_log{world_.rank() == 0},
      place(place_rank(config_, world_)),
      spec(model_spec(config_)),
      data(make_data(config_)),
      schedule(schedule_of(config_)),
      stages(hold_stages(config_, spec, data, schedule, world_, place.pipeline_rank, device_)),
      optimizer(make_optimizer(config_, stages.parameters)),
      engine(std::make_unique<pipeline::Engine>(*place.pipeline, stages.modules, schedule, *optimizer,
                                                make_loss(config_), config_.pipeline.rematerialization, device_,
                                                place.replica_group.get())) {
    engine->set_grad_clip(config.grad_clip);
    engine->tie_parameters(spec.ties);  // collective: the embedding group of the first and last stages
    mfu = mfu_basis(config, spec, world, device);  // collective
    if (config.eval.accuracy > 0)
        held_out = nn::held_out_additions(config.eval.accuracy, static_cast<int>(config.data.digits),
                                          static_cast<uint64_t>(config.seed));
}

double Run::tokens_per_step() const {
    return static_cast<double>(config.train_batch_size) * std::max<int64_t>(1, data.time);
}

}  // namespace mp::train
