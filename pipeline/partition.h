// Partitioning a model (a ModelSpec: layers in order) into K contiguous pipeline stages, by
// layer count (uniform), by parameter count, by measured forward+backward time per layer, or
// by an explicit balance list such as [4, 3, 3, 4]. Impossible requests are errors naming the
// numbers. Balancing minimises the largest stage's cost (the pipeline's step time is set by its
// slowest stage).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/enum_names.h"
#include "nn/model_spec.h"

namespace mp::pipeline {

// Layers [begin, end) of the model.
struct StageRange {
    int64_t begin = 0, end = 0;
    int64_t size() const { return end - begin; }
    bool operator==(const StageRange& other) const { return begin == other.begin && end == other.end; }
};

enum class PartitionMethod { Uniform, Parameters, Time, Balance };

inline const EnumNames<PartitionMethod>& enum_names(PartitionMethod) {
    static const EnumNames<PartitionMethod> names{{PartitionMethod::Uniform, "uniform"},
                                                  {PartitionMethod::Parameters, "parameters"},
                                                  {PartitionMethod::Time, "time"},
                                                  {PartitionMethod::Balance, "balance"}};
    return names;
}

// Sizes differ by at most one; the earlier stages take the extra layers.
std::vector<StageRange> uniform_partition(int64_t layers, int stages);
// Contiguous ranges, each of at least one layer, minimising the largest sum of costs.
std::vector<StageRange> balanced_partition(const std::vector<double>& costs, int stages);
// balance[i] layers in stage i; the sizes must be positive and sum to `layers`.
std::vector<StageRange> explicit_partition(const std::vector<int64_t>& balance, int64_t layers);

// Measures each layer's forward+backward time (median of `repeats`, after a warm-up) on `device`,
// building one layer at a time and feeding it the previous layer's output for `sample_input`.
std::vector<double> profile_layer_times(const nn::ModelSpec& spec, const Tensor& sample_input, Device device,
                                        int repeats = 3);

// Dispatches on the method; `layer_times` is used by Time, `balance` by Balance.
std::vector<StageRange> partition(const nn::ModelSpec& spec, int stages, PartitionMethod method,
                                  const std::vector<int64_t>& balance = {}, const std::vector<double>& layer_times = {});

}  // namespace mp::pipeline
