// A model described layer by layer before anything is allocated: each entry has a name, its
// parameter count and a factory. A pipeline rank builds only the layers of its own stage, and
// every layer is initialised from its own seed (derived from the model seed and the layer
// index), so a stage built alone holds exactly the parameters the whole model would.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace mp::nn {

struct LayerSpec {
    std::string name;
    int64_t parameters = 0;
    std::function<std::shared_ptr<Module>()> make;
};

struct ModelSpec {
    std::string description;
    std::vector<LayerSpec> layers;

    int64_t size() const { return static_cast<int64_t>(layers.size()); }
    int64_t total_parameters() const;
    // Builds layers [begin, end) as a Sequential with the layers' names.
    std::shared_ptr<Sequential> build(int64_t begin, int64_t end) const;
    std::shared_ptr<Sequential> build_all() const { return build(0, size()); }
};

// The seed of layer `index` of a model seeded with `model_seed`.
uint64_t layer_seed(uint64_t model_seed, int64_t index);

}  // namespace mp::nn
