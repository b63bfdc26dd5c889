// The MFU basis: the ranks' GPUs gathered (host name hash and device index), the peak of the GPU
// model from the table, and the GPT's flops per token without its embeddings.
#include "train/mfu.h"

#include <functional>
#include <set>

#include <unistd.h>

#include "pipeline/gather.h"
#include "tensor/device_context.h"
#include "tensor/peak_flops.h"
#include "train/build.h"

namespace mp::train {

MfuBasis mfu_basis(const TrainConfig& config, const nn::ModelSpec& spec, comm::Communicator& world, Device device) {
    MfuBasis basis;
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    const double key = device.is_cuda()
                           ? static_cast<double>(std::hash<std::string>{}(host) % (1u << 24)) * 64 + device.index
                           : -1;
    const std::vector<double> keys = pipeline::all_gather_values(world, key, comm::staging_device(world, device));
    if (!device.is_cuda() || config.model.kind != ModelKind::Gpt) return basis;
    const PeakEntry* peak = find_peak(device_name(device));
    if (peak == nullptr) return basis;
    const std::set<double> gpus(keys.begin(), keys.end());
    const nn::GPTConfig gpt = gpt_config(config);
    const int64_t embedding_parameters = (gpt.padded_vocab + gpt.context) * gpt.channels;  // wte and wpe
    basis.flops_per_token = gpt_flops_per_token(spec.total_parameters() - embedding_parameters, gpt.layers,
                                                gpt.channels, gpt.context);
    basis.peak_flops = peak->for_math(gemm_math(config.precision)) * static_cast<double>(gpus.size());
    return basis;
}

}  // namespace mp::train
