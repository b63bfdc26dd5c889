// What the trainer measures besides the training loss: the validation loss (data.val_path), the
// exact match on held-out sums (eval.accuracy), and sampled text from the whole model at the end.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/data.h"
#include "nn/module.h"
#include "train/run.h"

namespace mp::train {

// The validation loss after `trained` steps: the mean over eval.batches fixed global batches (each
// of train_batch_size rows, sharded over the replicas as a training batch is), logged and added to
// the summary. Collective.
void evaluate_validation(Run& run, int64_t trained);

// Held-out exact match: the stages gathered into one model on world rank 0, which greedily answers
// the held-out sums (the same list every time, on every schedule), scored, logged and added to the
// summary on every rank. A collective: every rank calls it at the same steps. It reads copies of
// the parameters and touches no generator the training draws from, so training is the same with
// it or without. Returns rank 0's answers (empty elsewhere).
std::vector<std::string> score_held_out(Run& run, int64_t trained);

// A greedy continuation of a prompt drawn from `data` (seeded), by the whole model, on the CPU:
// "[prompt] -> [continuation]" with newlines shown as '|'.
std::string sample_text(nn::Sequential& model, const nn::TokenDataset& data, int64_t window, uint64_t seed);

}  // namespace mp::train
