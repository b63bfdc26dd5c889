// The rules of a training config that involve several keys or the world size (batch arithmetic,
// stages against layers and ranks, the balance list, the schedule's own rule, which data goes
// with which model), and model.init_from's sizes: what parse_config_text checks after the keys.
#pragma once

#include <string>

#include "base/config_keys.h"
#include "train/config.h"

namespace mp::train {

// model.init_from: the model's sizes become the checkpoint's (its config.json); a size also in
// `given` (the file or --set) must agree with it. Nothing happens without init_from.
void resolve_init_from(TrainConfig& config, const config::KeyValues& given);

// Checks every cross-key rule for `world_size` ranks and resolves train_batch_size (0: the product)
// and pipeline.virtual_stages (0: the schedule's own). Throws std::invalid_argument naming the keys
// and their values.
void check_cross_key_rules(TrainConfig& config, int world_size);

// The rules as the --help text states them (a paragraph, ending in a newline).
std::string cross_key_rules_help();

// world_size / pipeline.stages; throws std::invalid_argument when stages does not divide it.
int data_parallel_size(const TrainConfig& config, int world_size);

}  // namespace mp::train
