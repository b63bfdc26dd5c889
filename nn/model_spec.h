// A model described layer by layer before anything is allocated: each entry has a name, its
// parameter count and a factory. A pipeline rank builds only the layers of its own stage, and
// every layer is initialised from its own seed (derived from the model seed and the layer
// index), so a stage built alone holds exactly the parameters the whole model would. A tie
// (GPT's head using the token embedding) names two parameters that are one: a range holding both
// shares them; a stage holding only the copy starts from the same values and is kept equal to the
// source by the pipeline engine (Engine::tie_parameters).
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

// `copy` (dotted name, e.g. "head.weight") is the parameter `source` ("embed.wte"): its layer's
// factory initialises it to the source's initial values; `numel` is its element count.
struct TiedParameter {
    std::string source, copy;
    int64_t numel = 0;
};

struct ModelSpec {
    std::string description;
    std::vector<LayerSpec> layers;
    std::vector<TiedParameter> ties;

    int64_t size() const { return static_cast<int64_t>(layers.size()); }
    // Distinct parameters: a tied copy is not counted twice.
    int64_t total_parameters() const;
    // Builds layers [begin, end) as a Sequential with the layers' names; a tie whose two
    // parameters are both in the range becomes one shared parameter.
    std::shared_ptr<Sequential> build(int64_t begin, int64_t end) const;
    std::shared_ptr<Sequential> build_all() const { return build(0, size()); }
};

// Ties parameters across separately built pieces of one model (a rank's several stages): for every
// tie of `spec` whose source is in one module and copy in another, the copy becomes the source.
void tie_across(const ModelSpec& spec, const std::vector<std::shared_ptr<Sequential>>& modules);

// The distinct parameters of several modules, in order (a parameter shared by two listed once).
std::vector<Tensor> unique_parameters(const std::vector<std::shared_ptr<Sequential>>& modules);

// The seed of layer `index` of a model seeded with `model_seed`.
uint64_t layer_seed(uint64_t model_seed, int64_t index);

}  // namespace mp::nn
