// The one place that turns a training config into the things a run is made of, but for its data
// (train/data.h): the model (its spec, its GPT sizes, its layer count), the loss, the optimizer, the
// learning-rate curve, the device, the precision and the schedule. Nothing here talks to other ranks.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nn/compute_dtype.h"
#include "nn/model_spec.h"
#include "nn/models.h"
#include "nn/optim.h"
#include "pipeline/loss.h"
#include "pipeline/schedule.h"
#include "tensor/device_context.h"
#include "tensor/peak_flops.h"
#include "train/config.h"

namespace mp::train {

// The number of layers of the configured model, i.e. what the pipeline partitions (the spec's
// size, computed without building it): nn::gpt_layer_count, mlp_layer_count, realistic_layer_count.
int64_t model_layer_count(const TrainConfig& config);

// The model a config describes (the same on every rank; nothing allocated).
nn::ModelSpec model_spec(const TrainConfig& config);
// The GPT a config describes (model.kind gpt): sizes, dropout, tying, padded vocabulary, seed.
nn::GPTConfig gpt_config(const TrainConfig& config);

// Cross-entropy over the model's vocabulary (a padded table's extra logits never reach it), or
// MSE for the mlp's regression task.
pipeline::LossFunction make_loss(const TrainConfig& config);
std::unique_ptr<nn::Optimizer> make_optimizer(const TrainConfig& config, const std::vector<Tensor>& parameters);

// The learning rate of `step`: linear warm-up, then cosine decay to min_lr or constant.
double learning_rate(const TrainConfig& config, int64_t step);
// What the learning-rate curve depends on, recorded with each checkpoint: a resume under another
// curve would silently change it (the total steps matter to cosine only).
std::string lr_curve(const TrainConfig& config);

// `device` for a rank bound to GPU `gpu` (-1: none); cuda without a GPU is an error.
Device choose_device(const TrainConfig& config, int gpu);

// What `precision` means for the GEMMs: the dtype they compute in and float32's matmul precision.
// PrecisionScope sets exactly this, and the MFU peak is looked up by it (tensor/peak_flops.h).
GemmMath gemm_math(Precision precision);

// The precision for a whole run on this thread: tf32 sets TF32 GEMMs (and fp32 / bf16 exact ones)
// for the rest of the thread's life; bf16 keeps float32 masters (optimizer, checkpoints, gradient
// reduction) and computes in bfloat16 while the scope lives.
class PrecisionScope {
  public:
    explicit PrecisionScope(Precision precision);

  private:
    std::optional<nn::ComputeDTypeScope> compute_dtype_;
};

// The schedule the config names for its stages, micro-batches and virtual stages, validated.
pipeline::Schedule schedule_of(const TrainConfig& config);

}  // namespace mp::train
