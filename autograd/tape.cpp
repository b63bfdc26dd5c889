// The tape: recording (and which gradients nobody wants), the reverse walk — in one piece or as
// the I and W halves of a split backward —, parameter-slot accumulation and the scopes.
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
    t.autograd_meta()->dtype = t.dtype();
}

Tensor compute_copy(const Tensor& master, DType dtype) {
    MP_REQUIRE(is_parameter(master), "compute_copy: ", master.describe(), " is not a parameter");
    if (master.dtype() == dtype) return master;
    Tensor copy = ops::cast(master, dtype);
    copy.set_autograd_meta(master.autograd_meta());
    return copy;
}

bool is_parameter(const Tensor& t) { return t.autograd_meta() != nullptr; }

bool accumulate_into_slot(const Tensor& parameter, const std::function<void(Tensor& grad, bool accumulate)>& write) {
    const std::shared_ptr<AutogradMeta>& slot = parameter.autograd_meta();
    if (!slot) return false;
    const bool accumulate = slot->grad.defined();
    if (!accumulate) slot->grad = Tensor::empty(parameter.shape(), slot->dtype, parameter.device());
    write(slot->grad, accumulate);
    return true;
}

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
                  BackwardFn backward, BackwardFn weight_backward, bool weight_reads_output_grads) {
    MP_REQUIRE(phase_ == Phase::Recording, "record(", name, "): this tape's split backward has started");
    Entry entry;
    entry.name = std::move(name);
    // Gradients nobody wants: outputs computed only from inputs whose gradient nobody wants
    // (non-float tensors, marked inputs, and what was computed from them) are not wanted either.
    bool any_input_wanted = false;
    for (const Tensor& input : inputs) {
        entry.input_ids.push_back(input.id());
        entry.parameter_slots.push_back(input.autograd_meta());
        const bool wanted = input.autograd_meta() != nullptr ||
                            (is_floating(input.dtype()) && not_differentiable_.count(input.id()) == 0);
        any_input_wanted = any_input_wanted || wanted;
        if (!wanted) not_differentiable_.insert(input.id());
    }
    if (output_observer_) entry.kept_inputs = inputs;
    for (const Tensor& output : outputs) {
        entry.output_ids.push_back(output.id());
        entry.outputs.push_back(OutputInfo{output.shape(), output.dtype(), output.device()});
        if (!any_input_wanted) not_differentiable_.insert(output.id());
        if (output_observer_) entry.kept_outputs.push_back(output);
    }
    entry.backward = std::move(backward);
    entry.weight_backward = std::move(weight_backward);
    entry.weight_reads_output_grads = weight_reads_output_grads;
    entries_.push_back(std::move(entry));
}

void Tape::set_output_observer(OutputObserver observer) { output_observer_ = std::move(observer); }

void Tape::mark_not_differentiable(const Tensor& input) {
    MP_REQUIRE(input.defined(), "mark_not_differentiable: the tensor is undefined");
    MP_REQUIRE(input.autograd_meta() == nullptr, "mark_not_differentiable: ", input.describe(), " is a parameter");
    not_differentiable_.insert(input.id());
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

Grads Tape::walk(const std::vector<TensorRef>& outputs, const std::vector<Tensor>& output_grads, bool run_weights) {
    MP_REQUIRE(outputs.size() == output_grads.size(), "backward: ", outputs.size(), " outputs but ",
               output_grads.size(), " gradients");
    Grads grads;
    grads.not_wanted_ = &not_differentiable_;
    for (size_t i = 0; i < outputs.size(); ++i) grads.accumulate(outputs[i], output_grads[i]);

    // Reverse walk. When an entry runs, every consumer of its outputs (a later entry) has already
    // run, so its output gradients are final and can be freed right after.
    for (size_t index = entries_.size(); index-- > 0;) {
        Entry& entry = entries_[index];
        std::vector<Tensor> grads_of_outputs;
        bool any = false;
        for (size_t k = 0; k < entry.output_ids.size(); ++k) {
            Tensor g = grads.get(entry.output_ids[k]);
            any = any || g.defined();
            grads_of_outputs.push_back(g);
        }
        if (!any) continue;  // this entry does not lead to anything being differentiated
        for (size_t k = 0; k < grads_of_outputs.size(); ++k)
            if (!grads_of_outputs[k].defined())
                grads_of_outputs[k] = Tensor::zeros(entry.outputs[k].shape, entry.outputs[k].dtype, entry.outputs[k].device);
        if (output_observer_ && entry.kept_outputs.size() == grads_of_outputs.size())
            output_observer_(entry.name, entry.kept_inputs, entry.kept_outputs, grads_of_outputs);
        if (entry.backward) entry.backward(grads, grads_of_outputs);
        if (entry.weight_backward) {
            if (run_weights) entry.weight_backward(grads, grads_of_outputs);
            else if (entry.weight_reads_output_grads) pending_weights_.push_back(PendingWeight{index, grads_of_outputs});
            else pending_weights_.push_back(PendingWeight{index, {}});  // W works from what I left it
        }
        for (uint64_t id : entry.output_ids) grads.erase(id);
    }
    return grads;
}

void Tape::accumulate_into_parameters(const Grads& grads) {
    std::unordered_set<uint64_t> done;
    for (const Entry& entry : entries_) {
        for (size_t j = 0; j < entry.input_ids.size(); ++j) {
            const std::shared_ptr<AutogradMeta>& slot = entry.parameter_slots[j];
            uint64_t id = entry.input_ids[j];
            if (!slot || !done.insert(id).second) continue;
            Tensor g = grads.get(id);
            if (!g.defined()) continue;
            if (g.dtype() != slot->dtype) g = ops::cast(g, slot->dtype);  // a compute copy's gradient
            if (slot->grad.defined()) ops::axpy_(slot->grad, g, 1.0);
            else slot->grad = g.clone();  // owned: later accumulation must not write into g
        }
    }
}

void Tape::backward_from_refs(const std::vector<TensorRef>& outputs, const std::vector<Tensor>& output_grads) {
    MP_REQUIRE(phase_ == Phase::Recording, "backward: this tape's split backward (backward_input) already ran");
    Grads grads = walk(outputs, output_grads, /*run_weights=*/true);
    // What is left are the leaves: parameters and the tape's other inputs.
    accumulate_into_parameters(grads);
    for (const auto& [id, g] : grads.all()) leaf_grads_[id] = leaf_grads_.count(id) ? ops::add(leaf_grads_[id], g) : g;
}

void Tape::backward_input_from_refs(const std::vector<TensorRef>& outputs, const std::vector<Tensor>& output_grads) {
    MP_REQUIRE(phase_ == Phase::Recording, "backward_input: it already ran on this tape (once per tape)");
    phase_ = Phase::InputDone;
    Grads grads = walk(outputs, output_grads, /*run_weights=*/false);
    accumulate_into_parameters(grads);  // parameters of functions without a split
    for (const auto& [id, g] : grads.all()) leaf_grads_[id] = g;
    // Only the queued weight closures' captures stay alive until W.
    for (Entry& entry : entries_) entry.backward = nullptr;
}

void Tape::backward_weight() {
    MP_REQUIRE(phase_ == Phase::InputDone, phase_ == Phase::Recording ? "backward_weight: backward_input has not run"
                                                                       : "backward_weight: it already ran on this tape");
    phase_ = Phase::Done;
    Grads grads;
    for (const PendingWeight& pending : pending_weights_)
        entries_[pending.entry].weight_backward(grads, pending.output_grads);
    accumulate_into_parameters(grads);
    pending_weights_.clear();
    for (Entry& entry : entries_) entry.weight_backward = nullptr;
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
    not_differentiable_.clear();
    pending_weights_.clear();
    phase_ = Phase::Recording;
}

Tape* current_tape() { return g_current_tape; }

TapeScope::TapeScope(Tape& tape) : previous_(g_current_tape) { g_current_tape = &tape; }
TapeScope::~TapeScope() { g_current_tape = previous_; }

NoGradScope::NoGradScope() : previous_(g_current_tape) { g_current_tape = nullptr; }
NoGradScope::~NoGradScope() { g_current_tape = previous_; }

void record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward, BackwardFn weight_backward, bool weight_reads_output_grads) {
    if (Tape* tape = current_tape())
        tape->record(std::move(name), inputs, outputs, std::move(backward), std::move(weight_backward),
                     weight_reads_output_grads);
}

}  // namespace mp::autograd
