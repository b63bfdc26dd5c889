// Loading tests/fixtures/gpt_small.json into a minipipe GPT (see gpt_fixture.h).
#include "tests/support/gpt_fixture.h"

#include <gtest/gtest.h>

#include <fstream>
#include <stdexcept>
#include <string>

namespace mp::testing {

using json = nlohmann::json;

const json& gpt_fixture() {
    static const json loaded = [] {
        std::string path = std::string(MP_SOURCE_DIR) + "/tests/fixtures/gpt_small.json";
        std::ifstream in(path);
        if (!in)
            throw std::runtime_error("cannot open the fixture " + path + " (run tests/fixtures/make_gpt_fixture.py)");
        return json::parse(in);
    }();
    return loaded;
}

Tensor fixture_tensor(const json& entry, Device device) {
    Shape shape = entry.at("shape").get<Shape>();
    std::vector<float> data = entry.at("data").get<std::vector<float>>();
    return Tensor::from_vector(data, shape, device);
}

FixtureModel load_gpt_fixture(Device device) {
    const json& f = gpt_fixture();
    const json& c = f.at("config");
    nn::GPTConfig config;
    config.vocab = c.at("vocab");
    config.context = c.at("context");
    config.layers = c.at("layers");
    config.heads = c.at("heads");
    config.channels = c.at("channels");
    FixtureModel s;
    s.model = nn::gpt(config);
    size_t loaded = 0;
    for (auto& [name, param] : s.model->named_parameters()) {
        Tensor value = fixture_tensor(f.at("params").at(name));
        EXPECT_EQ(value.shape(), param.shape()) << name;
        Tensor target = param;  // the handle shares storage with the model's parameter
        target.copy_from(value);
        ++loaded;
    }
    EXPECT_EQ(loaded, f.at("params").size()) << "every fixture tensor maps to a parameter";
    s.model->to(device);
    int64_t B = c.at("batch"), T = c.at("time");
    s.ids = Tensor::from_vector(f.at("ids").get<std::vector<int32_t>>(), {B, T}, device);
    s.targets = Tensor::from_vector(f.at("targets").get<std::vector<int32_t>>(), {B, T}, device);
    s.ignore_index = c.at("ignore_index");
    return s;
}

}  // namespace mp::testing
