// Module bookkeeping: parameter and child registration, dotted names, device moves, modes.
#include "nn/module.h"

#include <map>
#include <set>

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

void Module::collect_slots(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out) const {
    for (const auto& [name, parameter] : parameters_) out.emplace_back(prefix + name, parameter);
    for (const auto& [name, child] : children_) child->collect_slots(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
    std::vector<std::pair<std::string, Tensor*>> slots;
    collect_slots("", slots);
    std::vector<std::pair<std::string, Tensor>> out;
    std::set<uint64_t> seen;  // a shared parameter is one tensor handle: the same id
    for (const auto& [name, slot] : slots)
        if (seen.insert(slot->id()).second) out.emplace_back(name, *slot);
    return out;
}

bool Module::has_parameter(const std::string& name) const {
    std::vector<std::pair<std::string, Tensor*>> slots;
    collect_slots("", slots);
    for (const auto& [slot_name, slot] : slots)
        if (slot_name == name) return true;
    return false;
}

void Module::share_parameter(const std::string& name, const Tensor& source) {
    std::vector<std::pair<std::string, Tensor*>> slots;
    collect_slots("", slots);
    for (const auto& [slot_name, slot] : slots) {
        if (slot_name != name) continue;
        MP_REQUIRE(source.defined() && autograd::is_parameter(source), "share_parameter: the tensor given for '", name,
                   "' is not a parameter");
        MP_REQUIRE(slot->shape() == source.shape() && slot->dtype() == source.dtype(), "share_parameter: '", name,
                   "' is ", slot->describe(), " but the parameter it should share is ", source.describe());
        *slot = source;
        return;
    }
    throw std::invalid_argument(str("share_parameter: no parameter named '", name, "'"));
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

// Converts each distinct parameter once and puts the result in every slot that held it, so a
// shared parameter stays one tensor. `convert` returns the converted tensor, or the same handle
// when nothing needs to change.
template <typename Convert>
void Module::convert_parameters(Convert convert) {
    std::vector<std::pair<std::string, Tensor*>> slots;
    collect_slots("", slots);
    std::map<uint64_t, Tensor> converted;  // by the original's id
    for (auto& [name, slot] : slots) {
        auto found = converted.find(slot->id());
        if (found == converted.end()) {
            Tensor result = convert(*slot);
            if (result.id() != slot->id()) autograd::make_parameter(result);
            found = converted.emplace(slot->id(), result).first;
        }
        *slot = found->second;
    }
}

void Module::to(Device device) {
    convert_parameters([device](const Tensor& p) { return p.device() == device ? p : p.to(device); });
}

void Module::to(DType dtype) {
    convert_parameters([dtype](const Tensor& p) { return p.dtype() == dtype ? p : p.to(dtype); });
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
