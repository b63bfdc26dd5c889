// The tape: recording, the reverse walk, parameter-slot accumulation and the scopes.
#include "autograd/tape.h"

#include <unordered_set>

#include "tensor/ops/elementwise.h"

namespace mp::autograd {

namespace {
thread_local Tape* g_current_tape = nullptr;
}  // namespace

void make_parameter(Tensor& t) {
    MP_REQUIRE(t.defined(), "make_parameter: undefined tensor");
    MP_REQUIRE(is_floating(t.dtype()), "make_parameter: parameters must be floating point, got ", t.describe());
    if (!t.autograd_meta()) t.set_autograd_meta(std::make_shared<AutogradMeta>());
}

bool is_parameter(const Tensor& t) { return t.autograd_meta() != nullptr; }

Tensor grad_of(const Tensor& parameter) {
    MP_REQUIRE(is_parameter(parameter), "grad_of: ", parameter.describe(), " is not a parameter");
    return parameter.autograd_meta()->grad;
}

void zero_grad(const Tensor& parameter) {
    MP_REQUIRE(is_parameter(parameter), "zero_grad: ", parameter.describe(), " is not a parameter");
    parameter.autograd_meta()->grad = Tensor();
}

void Grads::accumulate(const TensorRef& x, const Tensor& grad) {
    MP_REQUIRE(grad.shape() == x.shape, "backward: gradient of shape ", shape_str(grad.shape()),
               " for a tensor of shape ", shape_str(x.shape));
    auto it = grads_.find(x.id);
    if (it == grads_.end()) {
        grads_.emplace(x.id, grad);
    } else {
        // Out of place: the existing gradient may be a view of another tensor's gradient.
        it->second = ops::add(it->second, grad);
    }
}

Tensor Grads::get(uint64_t id) const {
    auto it = grads_.find(id);
    return it == grads_.end() ? Tensor() : it->second;
}

void Tape::record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                  BackwardFn backward) {
    Entry entry;
    entry.name = std::move(name);
    for (const Tensor& input : inputs) {
        entry.input_ids.push_back(input.id());
        entry.parameter_slots.push_back(input.autograd_meta());
    }
    for (const Tensor& output : outputs) {
        entry.output_ids.push_back(output.id());
        entry.outputs.push_back(OutputInfo{output.shape(), output.dtype(), output.device()});
    }
    entry.backward = std::move(backward);
    entries_.push_back(std::move(entry));
}

void Tape::backward(const Tensor& loss) {
    MP_REQUIRE(loss.defined() && loss.numel() == 1, "backward: the loss must be a one-element tensor, got ",
               loss.describe());
    backward({loss}, {Tensor::full(loss.shape(), 1.0, loss.dtype(), loss.device())});
}

void Tape::backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& output_grads) {
    MP_REQUIRE(outputs.size() == output_grads.size(), "backward: ", outputs.size(), " outputs but ",
               output_grads.size(), " gradients");
    for (size_t i = 0; i < outputs.size(); ++i)
        MP_REQUIRE(output_grads[i].dtype() == outputs[i].dtype() && output_grads[i].device() == outputs[i].device(),
                   "backward: gradient ", output_grads[i].describe(), " for output ", outputs[i].describe());
    backward_from_refs(std::vector<TensorRef>(outputs.begin(), outputs.end()), output_grads);
}

void Tape::backward_from_refs(const std::vector<TensorRef>& outputs, const std::vector<Tensor>& output_grads) {
    MP_REQUIRE(outputs.size() == output_grads.size(), "backward: ", outputs.size(), " outputs but ",
               output_grads.size(), " gradients");
    Grads grads;
    for (size_t i = 0; i < outputs.size(); ++i) grads.accumulate(outputs[i], output_grads[i]);

    // Reverse walk. When an entry runs, every consumer of its outputs (a later entry) has already
    // run, so its output gradients are final and can be freed right after.
    for (auto entry = entries_.rbegin(); entry != entries_.rend(); ++entry) {
        std::vector<Tensor> grads_of_outputs;
        bool any = false;
        for (size_t k = 0; k < entry->output_ids.size(); ++k) {
            Tensor g = grads.get(entry->output_ids[k]);
            any = any || g.defined();
            grads_of_outputs.push_back(g);
        }
        if (!any) continue;  // this entry does not lead to anything being differentiated
        for (size_t k = 0; k < grads_of_outputs.size(); ++k)
            if (!grads_of_outputs[k].defined())
                grads_of_outputs[k] = Tensor::zeros(entry->outputs[k].shape, entry->outputs[k].dtype, entry->outputs[k].device);
        entry->backward(grads, grads_of_outputs);
        for (uint64_t id : entry->output_ids) grads.erase(id);
    }

    // What is left are the leaves: parameters and the tape's other inputs.
    std::unordered_set<uint64_t> done;
    for (const Entry& entry : entries_) {
        for (size_t j = 0; j < entry.input_ids.size(); ++j) {
            const std::shared_ptr<AutogradMeta>& slot = entry.parameter_slots[j];
            uint64_t id = entry.input_ids[j];
            if (!slot || !done.insert(id).second) continue;
            Tensor g = grads.get(id);
            if (!g.defined()) continue;
            if (slot->grad.defined()) ops::axpy_(slot->grad, g, 1.0);
            else slot->grad = g.clone();  // owned: later accumulation must not write into g
        }
    }
    for (const auto& [id, g] : grads.all()) leaf_grads_[id] = leaf_grads_.count(id) ? ops::add(leaf_grads_[id], g) : g;
}

Tensor Tape::grad(const Tensor& x) const {
    auto it = leaf_grads_.find(x.id());
    return it == leaf_grads_.end() ? Tensor() : it->second;
}

std::vector<std::string> Tape::entry_names() const {
    std::vector<std::string> names;
    for (const Entry& entry : entries_) names.push_back(entry.name);
    return names;
}

void Tape::clear() {
    entries_.clear();
    leaf_grads_.clear();
}

Tape* current_tape() { return g_current_tape; }

TapeScope::TapeScope(Tape& tape) : previous_(g_current_tape) { g_current_tape = &tape; }
TapeScope::~TapeScope() { g_current_tape = previous_; }

NoGradScope::NoGradScope() : previous_(g_current_tape) { g_current_tape = nullptr; }
NoGradScope::~NoGradScope() { g_current_tape = previous_; }

void record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward) {
    if (Tape* tape = current_tape()) tape->record(std::move(name), inputs, outputs, std::move(backward));
}

}  // namespace mp::autograd
