// Model flops utilisation for the step log: a GPT's flops per token (tensor/peak_flops.h) over the
// datasheet peak of every distinct GPU the ranks use (ranks sharing one GPU, as `make demo` does on
// a one-GPU machine, count it once).
#pragma once

#include "comm/communicator.h"
#include "nn/model_spec.h"
#include "train/config.h"

namespace mp::train {

// Both 0 when unknown: the CPU, a GPU not in the peak table, or a model other than a GPT (no
// flops formula).
struct MfuBasis {
    double flops_per_token = 0;
    double peak_flops = 0;  // all the distinct GPUs together
    bool known() const { return flops_per_token > 0 && peak_flops > 0; }
    // The fraction of the peak that `tokens` tokens in `seconds` reach.
    double fraction(double tokens, double seconds) const { return flops_per_token * tokens / seconds / peak_flops; }
};

// Collective over `world` (every rank calls it alike): which GPU of which host each rank uses.
MfuBasis mfu_basis(const TrainConfig& config, const nn::ModelSpec& spec, comm::Communicator& world, Device device);

}  // namespace mp::train
