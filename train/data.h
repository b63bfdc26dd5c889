// The training data a config describes: token sequences (synthetic additions, a text file or an
// llm.c token shard, with optional validation data) for gpt / realistic, or the mlp's regression
// task against a random linear teacher. Every rank holds it whole and draws the same batches.
#pragma once

#include <cstdint>

#include "nn/data.h"
#include "train/config.h"

namespace mp::train {

struct DataSource {
    nn::TokenDataset tokens;      // gpt / realistic
    nn::TokenDataset validation;  // data.val_path; empty without one
    Tensor teacher;               // mlp: targets = inputs · teacher
    int64_t time = 0;             // tokens per sequence (0 for mlp)

    // The global batch of `step` (the same on every rank, whatever the step it resumed at).
    nn::Batch batch(const TrainConfig& config, int64_t step) const;
};

// Loads or generates the data and checks it against the model: the vocabulary, enough tokens for
// one sequence, and enough validation tokens for eval.batches global batches. Throws
// std::invalid_argument naming the keys and the numbers.
DataSource make_data(const TrainConfig& config);

}  // namespace mp::train
