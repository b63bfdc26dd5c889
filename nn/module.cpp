// Module bookkeeping: parameter and child registration, dotted names, device moves, modes.
#include "nn/module.h"

#include "autograd/tape.h"

namespace mp::nn {

void Module::register_parameter(const std::string& name, Tensor* parameter) {
    MP_REQUIRE(parameter != nullptr && parameter->defined(), "register_parameter: '", name, "' is undefined");
    for (const auto& [existing, _] : parameters_)
        MP_REQUIRE(existing != name, "register_parameter: duplicate name '", name, "'");
    autograd::make_parameter(*parameter);
    parameters_.emplace_back(name, parameter);
}

void Module::register_module(const std::string& name, std::shared_ptr<Module> child) {
    MP_REQUIRE(child != nullptr, "register_module: '", name, "' is null");
    for (const auto& [existing, _] : children_)
        MP_REQUIRE(existing != name, "register_module: duplicate name '", name, "'");
    children_.emplace_back(name, std::move(child));
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const {
    for (const auto& [name, parameter] : parameters_) out.emplace_back(prefix + name, *parameter);
    for (const auto& [name, child] : children_) child->collect(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
    std::vector<std::pair<std::string, Tensor>> out;
    collect("", out);
    return out;
}

std::vector<Tensor> Module::parameters() const {
    std::vector<Tensor> out;
    for (auto& [name, parameter] : named_parameters()) out.push_back(parameter);
    return out;
}

int64_t Module::num_parameters() const {
    int64_t n = 0;
    for (const Tensor& parameter : parameters()) n += parameter.numel();
    return n;
}

void Module::to(Device device) {
    for (auto& [name, parameter] : parameters_) {
        if (parameter->device() == device) continue;
        *parameter = parameter->to(device);
        autograd::make_parameter(*parameter);
    }
    for (auto& [name, child] : children_) child->to(device);
}

void Module::to(DType dtype) {
    for (auto& [name, parameter] : parameters_) {
        if (parameter->dtype() == dtype) continue;
        *parameter = parameter->to(dtype);
        autograd::make_parameter(*parameter);
    }
    for (auto& [name, child] : children_) child->to(dtype);
}

Device Module::device() const {
    std::vector<Tensor> all = parameters();
    return all.empty() ? Device::cpu() : all.front().device();
}

void Module::train(bool on) {
    training_ = on;
    for (auto& [name, child] : children_) child->train(on);
}

}  // namespace mp::nn
