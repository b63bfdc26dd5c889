// The small GPT fixture that tests/fixtures/make_gpt_fixture.py commits (PyTorch's weights, a
// batch, logits, loss, gradients and AdamW losses), loaded into a minipipe GPT: shared by the
// PyTorch parity test and the mixed-precision whole-model test.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>

#include "nn/models.h"

namespace mp::testing {

// tests/fixtures/gpt_small.json, parsed once.
const nlohmann::json& gpt_fixture();
// A {"shape", "data"} entry of the fixture as a float32 tensor.
Tensor fixture_tensor(const nlohmann::json& entry, Device device = Device::cpu());

struct FixtureModel {
    std::shared_ptr<nn::Sequential> model;
    Tensor ids, targets;
    int ignore_index;
};
// The fixture's GPT with its weights (every fixture tensor mapped to a parameter, checked), and
// its batch, on `device`.
FixtureModel load_gpt_fixture(Device device);

}  // namespace mp::testing
