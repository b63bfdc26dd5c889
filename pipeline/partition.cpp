// Partitioning: uniform, balanced (dynamic programming over contiguous splits), explicit, and
// the per-layer time profile that the `time` method balances.
#include "pipeline/partition.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <numeric>

#include "autograd/tape.h"
#include "tensor/device_context.h"

namespace mp::pipeline {

namespace {
void require_enough_layers(int64_t layers, int stages) {
    MP_REQUIRE(stages >= 1, "partition: stages must be >= 1, got ", stages);
    MP_REQUIRE(stages <= layers, "partition: ", stages, " stages but the model has only ", layers,
               " layers (every stage needs at least one)");
}

std::string list_str(const std::vector<int64_t>& values) {
    std::string out = "[";
    for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + std::to_string(values[i]);
    return out + "]";
}
}  // namespace

std::vector<StageRange> uniform_partition(int64_t layers, int stages) {
    require_enough_layers(layers, stages);
    std::vector<StageRange> ranges;
    int64_t begin = 0;
    for (int s = 0; s < stages; ++s) {
        int64_t size = layers / stages + (s < layers % stages ? 1 : 0);
        ranges.push_back({begin, begin + size});
        begin += size;
    }
    return ranges;
}

std::vector<StageRange> balanced_partition(const std::vector<double>& costs, int stages) {
    const int64_t n = static_cast<int64_t>(costs.size());
    require_enough_layers(n, stages);
    for (double c : costs) MP_REQUIRE(c >= 0, "partition: layer costs must be >= 0, got ", c);
    std::vector<double> prefix(n + 1, 0.0);
    for (int64_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + costs[i];
    // best[k][i]: the smallest possible largest-stage cost splitting layers [0, i) into k stages.
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<std::vector<double>> best(stages + 1, std::vector<double>(n + 1, inf));
    std::vector<std::vector<int64_t>> cut(stages + 1, std::vector<int64_t>(n + 1, 0));
    best[0][0] = 0.0;
    for (int k = 1; k <= stages; ++k)
        for (int64_t i = k; i <= n; ++i)
            for (int64_t j = k - 1; j < i; ++j) {  // the last stage is [j, i)
                double cost = std::max(best[k - 1][j], prefix[i] - prefix[j]);
                if (cost < best[k][i]) best[k][i] = cost, cut[k][i] = j;  // strict <: the earliest cut wins ties
            }
    std::vector<StageRange> ranges(stages);
    int64_t end = n;
    for (int k = stages; k >= 1; --k) {
        ranges[k - 1] = {cut[k][end], end};
        end = cut[k][end];
    }
    return ranges;
}

std::vector<StageRange> explicit_partition(const std::vector<int64_t>& balance, int64_t layers) {
    MP_REQUIRE(!balance.empty(), "partition: the balance list is empty");
    int64_t total = 0;
    for (int64_t size : balance) {
        MP_REQUIRE(size >= 1, "partition: balance ", list_str(balance), " has a stage of ", size,
                   " layers (every stage needs at least one)");
        total += size;
    }
    MP_REQUIRE(total == layers, "partition: balance ", list_str(balance), " sums to ", total, " but the model has ",
               layers, " layers");
    std::vector<StageRange> ranges;
    int64_t begin = 0;
    for (int64_t size : balance) {
        ranges.push_back({begin, begin + size});
        begin += size;
    }
    return ranges;
}

std::vector<double> profile_layer_times(const nn::ModelSpec& spec, const Tensor& sample_input, Device device,
                                        int repeats) {
    MP_REQUIRE(repeats >= 1, "profile_layer_times: repeats must be >= 1, got ", repeats);
    std::vector<double> times;
    Tensor input = sample_input.to(device);
    for (int64_t i = 0; i < spec.size(); ++i) {
        std::shared_ptr<nn::Sequential> layer = spec.build(i, i + 1);
        layer->to(device);
        std::vector<double> samples;
        Tensor output;
        for (int r = 0; r <= repeats; ++r) {  // r == 0 is the warm-up
            synchronize(device);
            auto start = std::chrono::steady_clock::now();
            autograd::Tape tape;
            {
                autograd::TapeScope scope(tape);
                output = layer->forward(input);
            }
            tape.backward({output}, {Tensor::full(output.shape(), 1.0, output.dtype(), output.device())});
            synchronize(device);
            if (r > 0) samples.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        std::sort(samples.begin(), samples.end());
        times.push_back(samples[samples.size() / 2]);
        input = output;
    }
    return times;
}

std::vector<StageRange> partition(const nn::ModelSpec& spec, int stages, PartitionMethod method,
                                  const std::vector<int64_t>& balance, const std::vector<double>& layer_times) {
    switch (method) {
        case PartitionMethod::Uniform: return uniform_partition(spec.size(), stages);
        case PartitionMethod::Parameters: {
            std::vector<double> costs;
            for (const nn::LayerSpec& layer : spec.layers) costs.push_back(static_cast<double>(layer.parameters));
            return balanced_partition(costs, stages);
        }
        case PartitionMethod::Time:
            MP_REQUIRE(static_cast<int64_t>(layer_times.size()) == spec.size(), "partition: ", layer_times.size(),
                       " layer times for ", spec.size(), " layers");
            return balanced_partition(layer_times, stages);
        case PartitionMethod::Balance: {
            std::vector<StageRange> ranges = explicit_partition(balance, spec.size());
            MP_REQUIRE(static_cast<int>(ranges.size()) == stages, "partition: balance ", list_str(balance), " has ",
                       ranges.size(), " stages but ", stages, " were asked for");
            return ranges;
        }
    }
    return {};
}

}  // namespace mp::pipeline
