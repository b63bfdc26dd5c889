// ModelSpec: building a contiguous range of layers, and per-layer seeds.
#include "nn/model_spec.h"

#include <set>

#include "kernels/common/counter_rng.h"

namespace mp::nn {

int64_t ModelSpec::total_parameters() const {
    int64_t total = 0;
    for (const LayerSpec& layer : layers) total += layer.parameters;
    for (const TiedParameter& tie : ties) total -= tie.numel;
    return total;
}

std::shared_ptr<Sequential> ModelSpec::build(int64_t begin, int64_t end) const {
    MP_REQUIRE(0 <= begin && begin <= end && end <= size(), "ModelSpec::build: layers [", begin, ", ", end,
               ") out of range for ", size(), " layers of ", description);
    auto model = std::make_shared<Sequential>();
    for (int64_t i = begin; i < end; ++i) {
        std::shared_ptr<Module> layer = layers[i].make();
        MP_REQUIRE(layer->num_parameters() == layers[i].parameters, "ModelSpec::build: layer '", layers[i].name,
                   "' has ", layer->num_parameters(), " parameters but its spec says ", layers[i].parameters);
        model->add(layers[i].name, layer);
    }
    tie_across(*this, {model});
    return model;
}

namespace {
// The parameter called `name` in `module`, or an undefined tensor.
Tensor find_parameter(const Module& module, const std::string& name) {
    for (auto& [parameter_name, parameter] : module.named_parameters())
        if (parameter_name == name) return parameter;
    return Tensor();
}
}  // namespace

void tie_across(const ModelSpec& spec, const std::vector<std::shared_ptr<Sequential>>& modules) {
    for (const TiedParameter& tie : spec.ties) {
        Tensor source;
        for (const std::shared_ptr<Sequential>& module : modules)
            if (!source.defined()) source = find_parameter(*module, tie.source);
        if (!source.defined()) continue;
        for (const std::shared_ptr<Sequential>& module : modules)
            if (module->has_parameter(tie.copy)) module->share_parameter(tie.copy, source);
    }
}

std::vector<Tensor> unique_parameters(const std::vector<std::shared_ptr<Sequential>>& modules) {
    std::vector<Tensor> all;
    std::set<uint64_t> seen;
    for (const std::shared_ptr<Sequential>& module : modules)
        for (const Tensor& parameter : module->parameters())
            if (seen.insert(parameter.id()).second) all.push_back(parameter);
    return all;
}

uint64_t layer_seed(uint64_t model_seed, int64_t index) {
    return rng::mix64(model_seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index) + 1);
}

}  // namespace mp::nn
