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

// A checkpoint directory holds one sub-directory per saved step with every stage's file,
// "<dir>/step-<N>/stage-<s>-of-<K>.safetensors", and "<dir>/index.json", which names the step to
// load. The index is written last (after every stage's file, atomically), so a save interrupted
// part-way leaves the index on the previous complete step: the previous checkpoint stays loadable.
std::string stage_checkpoint_path(const std::string& dir, int64_t stage_index, int64_t stage_count, int64_t step);
std::string checkpoint_index_path(const std::string& dir);

// Writes this stage's parameters and optimizer state (atomically) to
// stage_checkpoint_path(dir, stage_index, stage_count, step), creating directories as needed.
// With one stage it then publishes the step (write_checkpoint_index). With several, the caller
// publishes it once every stage has saved (a barrier, then stage 0 calls write_checkpoint_index).
// `layer_ranges`, if given, has one range per stage. Every optimizer parameter must be a
// parameter of `stage` (that is how its state is named).
// `run` holds what the caller wants back on resume (stored as "run.<key>" metadata). Every tensor
// gets a checksum ("checksum.<key>") and the metadata one over all of it ("metadata_checksum").
void save_stage_checkpoint(const std::string& dir, int64_t stage_index, int64_t stage_count, const Module& stage,
                           const Optimizer& optimizer, int64_t step, const std::vector<LayerRange>& layer_ranges = {},
                           const SafetensorsMetadata& run = {});

// Publishes `step`: index.json = {"format", "version", "step", "stages", "files",
// "layer_ranges" (when given)}, written atomically; then removes step directories older than the
// previously published one (the newest two complete checkpoints are kept).
void write_checkpoint_index(const std::string& dir, int64_t stage_count, int64_t step,
                            const std::vector<LayerRange>& layer_ranges = {});

// Restores this stage's parameters and optimizer state in place (onto whatever device each
// tensor lives on) and the optimizer's step count; returns the training step saved. Everything
// is checked before anything is modified, and a mismatch throws std::invalid_argument naming the
// file and the problem: a different stage count ("checkpoint 'd/index.json' was written for 4
// stages, this run has 2"), a different stage index or optimizer type, files from different
// steps, a missing or extra key, a shape or dtype that differs (naming the key and both).
// A tensor or metadata field that fails its checksum (a flipped byte, an edited header) is refused
// the same way. Missing or unreadable files throw mp::RuntimeError naming the file. `run`, when
// given, receives the caller's entries saved with the checkpoint.
// `expected_run` lists caller entries that must equal the saved ones, checked before the
// tensors (so that a run laid out differently is told why, not which tensor is missing); an entry
// the file does not have (saved before it existed) is not checked.
struct ExpectedRunEntry {
    std::string key, value;
    std::string advice;  // appended to the refusal
};
int64_t load_stage_checkpoint(const std::string& dir, int64_t stage_index, int64_t stage_count, Module& stage,
                              Optimizer& optimizer, SafetensorsMetadata* run = nullptr,
                              const std::vector<ExpectedRunEntry>& expected_run = {});

// The whole model as one safetensors file keyed by the dotted parameter names (no prefix),
// with metadata {"format": "pt"}: safetensors.torch.load_file reads it.
void export_model(const std::string& path, const NamedTensors& named_tensors);

}  // namespace mp::nn
