// Config to parts: each function reads the keys it needs and builds one thing, so a fact such as
// "adamw means nn::AdamW" or "a gpt partitions into nn::gpt_layer_count layers" is used here only.
#include "train/build.h"

#include "pipeline/validate.h"

namespace mp::train {

int64_t model_layer_count(const TrainConfig& config) {
    const TrainConfig::Model& model = config.model;
    switch (model.kind) {
        case ModelKind::Gpt: return nn::gpt_layer_count(model.layers);
        case ModelKind::Mlp: return nn::mlp_layer_count(static_cast<int64_t>(model.widths.size()));
        case ModelKind::Realistic: return nn::realistic_layer_count(model.blocks);
    }
    throw std::logic_error("model_layer_count: a model kind without a layer count");
}

nn::ModelSpec model_spec(const TrainConfig& config) {
    const TrainConfig::Model& m = config.model;
    const uint64_t seed = static_cast<uint64_t>(config.seed);
    switch (m.kind) {
        case ModelKind::Mlp: return nn::mlp_spec(m.widths, seed);
        case ModelKind::Realistic: return nn::realistic_spec(m.vocab, m.hidden, m.blocks, seed);
        case ModelKind::Gpt: return nn::gpt_spec(gpt_config(config));
    }
    throw std::logic_error("model_spec: a model kind without a spec");
}

nn::GPTConfig gpt_config(const TrainConfig& config) {
    const TrainConfig::Model& m = config.model;
    nn::GPTConfig gpt;
    gpt.vocab = m.vocab;
    gpt.context = m.context;
    gpt.layers = m.layers;
    gpt.heads = m.heads;
    gpt.channels = m.channels;
    gpt.dropout = m.dropout;
    gpt.layer_norm_eps = m.layer_norm_eps;
    gpt.tie_embeddings = m.tie_embeddings;
    const int64_t multiple = m.pad_vocab_to_multiple_of > 0 ? m.pad_vocab_to_multiple_of : 1;
    gpt.padded_vocab = (m.vocab + multiple - 1) / multiple * multiple;
    gpt.seed = static_cast<uint64_t>(config.seed);
    return gpt;
}

pipeline::LossFunction make_loss(const TrainConfig& config) {
    return config.model.kind == ModelKind::Mlp ? pipeline::mse_loss()
                                               : pipeline::cross_entropy_loss(-100, config.model.vocab);
}

std::unique_ptr<nn::Optimizer> make_optimizer(const TrainConfig& config, const std::vector<Tensor>& parameters) {
    const TrainConfig::Optimizer& o = config.optimizer;
    switch (o.type) {
        case OptimizerKind::Sgd:
            return std::make_unique<nn::SGD>(parameters, nn::SGDOptions{o.lr, o.momentum, o.weight_decay});
        case OptimizerKind::AdamW:
            return std::make_unique<nn::AdamW>(parameters,
                                               nn::AdamWOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay});
    }
    throw std::logic_error("make_optimizer: an optimizer type without a builder");
}

double learning_rate(const TrainConfig& config, int64_t step) {
    const TrainConfig::LrSchedule& schedule = config.lr_schedule;
    switch (schedule.kind) {
        case LrScheduleKind::Constant: return nn::constant_lr(step, schedule.warmup_steps, config.optimizer.lr);
        case LrScheduleKind::Cosine:
            return nn::cosine_lr(step, schedule.warmup_steps, config.steps, config.optimizer.lr, schedule.min_lr);
    }
    throw std::logic_error("learning_rate: an lr schedule without a curve");
}

std::string lr_curve(const TrainConfig& config) {
    const TrainConfig::LrSchedule& schedule = config.lr_schedule;
    std::string curve = str(name_of(schedule.kind), ", optimizer.lr ", config.optimizer.lr, ", warmup_steps ",
                            schedule.warmup_steps);
    if (schedule.kind == LrScheduleKind::Cosine)
        curve += str(", min_lr ", schedule.min_lr, ", steps ", config.steps);
    return curve;
}

Device choose_device(const TrainConfig& config, int gpu) {
    switch (config.device) {
        case DeviceChoice::Cpu: return Device::cpu();
        case DeviceChoice::Cuda:
            MP_REQUIRE(gpu >= 0, "device: \"cuda\" was asked for but this rank sees no GPU");
            return Device::cuda(gpu);
        case DeviceChoice::Auto: break;
    }
    return gpu >= 0 ? Device::cuda(gpu) : Device::cpu();
}

GemmMath gemm_math(Precision precision) {
    switch (precision) {
        case Precision::Fp32: return {DType::Float32, MatmulPrecision::Exact};
        case Precision::Tf32: return {DType::Float32, MatmulPrecision::TF32};
        case Precision::Bf16: return {DType::BFloat16, MatmulPrecision::Exact};
    }
    throw std::logic_error(str("gemm_math: precision ", static_cast<int>(precision), " is not one of ",
                               enum_names(Precision{}).joined()));
}

PrecisionScope::PrecisionScope(Precision precision) {
    const GemmMath math = gemm_math(precision);
    set_matmul_precision(math.float32_precision);
    compute_dtype_.emplace(math.dtype == DType::Float32 ? std::nullopt : std::optional<DType>(math.dtype));
}

pipeline::Schedule schedule_of(const TrainConfig& config) {
    const pipeline::Schedule schedule = pipeline::make_schedule(
        config.pipeline.schedule, static_cast<int>(config.pipeline.stages), static_cast<int>(config.micro_batches),
        static_cast<int>(config.pipeline.virtual_stages));
    const pipeline::ValidationResult valid = pipeline::validate(schedule);
    MP_REQUIRE(valid.ok, "schedule ", config.pipeline.schedule, " is invalid: ", valid.error);
    return schedule;
}

}  // namespace mp::train
