// ModelSpec: building a contiguous range of layers, and per-layer seeds.
#include "nn/model_spec.h"

#include "kernels/common/counter_rng.h"

namespace mp::nn {

int64_t ModelSpec::total_parameters() const {
    int64_t total = 0;
    for (const LayerSpec& layer : layers) total += layer.parameters;
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
    return model;
}

uint64_t layer_seed(uint64_t model_seed, int64_t index) {
    return rng::mix64(model_seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(index) + 1);
}

}  // namespace mp::nn
