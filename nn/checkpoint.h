// Training checkpoints: one safetensors file per pipeline stage (parameters as "model.<name>",
// optimizer state as "optim.<name>.<kind>", step and stage in the metadata) plus a JSON index,
// and an export of the whole model as one plain safetensors file that PyTorch loads.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "nn/optim.h"
#include "nn/safetensors.h"

namespace mp::nn {

// Layers [begin, end) of the whole model held by one stage (recorded in the index only).
using LayerRange = std::pair<int64_t, int64_t>;

// "<dir>/stage-<s>-of-<K>.safetensors" and "<dir>/index.json".
std::string stage_checkpoint_path(const std::string& dir, int64_t stage_index, int64_t stage_count);
std::string checkpoint_index_path(const std::string& dir);

// Writes this stage's parameters and optimizer state (atomically) to
// stage_checkpoint_path(dir, stage_index, stage_count), creating `dir` if needed. Stage 0 then
// writes the index (write_checkpoint_index). `layer_ranges`, if given, has one range per stage.
// Every optimizer parameter must be a parameter of `stage` (that is how its state is named).
// Multi-rank trainers: the files are renamed into place one by one, so to make the whole
// checkpoint atomic, save each step into its own directory and publish it after a barrier;
// load_stage_checkpoint refuses a directory whose files disagree on the step.
void save_stage_checkpoint(const std::string& dir, int64_t stage_index, int64_t stage_count, const Module& stage,
                           const Optimizer& optimizer, int64_t step, const std::vector<LayerRange>& layer_ranges = {});

// index.json: {"format", "version", "step", "stages", "files", "layer_ranges" (when given)}.
void write_checkpoint_index(const std::string& dir, int64_t stage_count, int64_t step,
                            const std::vector<LayerRange>& layer_ranges = {});

// Restores this stage's parameters and optimizer state in place (onto whatever device each
// tensor lives on) and the optimizer's step count; returns the training step saved. Everything
// is checked before anything is modified, and a mismatch throws std::invalid_argument naming the
// file and the problem: a different stage count ("checkpoint 'd/index.json' was written for 4
// stages, this run has 2"), a different stage index or optimizer type, files from different
// steps, a missing or extra key, a shape or dtype that differs (naming the key and both).
// Missing or unreadable files throw mp::RuntimeError naming the file.
int64_t load_stage_checkpoint(const std::string& dir, int64_t stage_index, int64_t stage_count, Module& stage,
                              Optimizer& optimizer);

// The whole model as one safetensors file keyed by the dotted parameter names (no prefix),
// with metadata {"format": "pt"}: safetensors.torch.load_file reads it.
void export_model(const std::string& path, const NamedTensors& named_tensors);

}  // namespace mp::nn
