// The tape (a Wengert list). While a tape is current, every differentiable function appends one
// entry: its inputs, its outputs and a backward closure holding exactly what its gradient needs
// (the closure's captures ARE the saved activations). backward() walks the entries in reverse,
// accumulating gradients into parameters' slots and into a map from which the gradient of any
// tape input can be read — a pipeline stage sends the gradient of its input to the previous one.
// Tapes are explicit objects: one per micro-batch, kept alive while its activations are stashed,
// freed (clear() or destruction) to release them.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tensor/tensor.h"

namespace mp {

// A parameter's gradient slot, shared by all copies of the parameter's Tensor handle.
struct AutogradMeta {
    Tensor grad;  // undefined until the first backward reaches the parameter
};

namespace autograd {

// Gives `t` a gradient slot (idempotent): backward() accumulates into it.
void make_parameter(Tensor& t);
bool is_parameter(const Tensor& t);
// The accumulated gradient of a parameter (undefined before any backward reached it).
Tensor grad_of(const Tensor& parameter);
// Drops a parameter's accumulated gradient.
void zero_grad(const Tensor& parameter);

// What a backward closure captures for an input it does not need the values of: its identity
// and shape (so the gradient can be checked), without keeping its memory alive.
struct TensorRef {
    uint64_t id = 0;
    Shape shape;
    TensorRef() = default;
    TensorRef(const Tensor& t) : id(t.id()), shape(t.shape()) {}  // NOLINT: implicit on purpose
};

// Gradients accumulated during one backward pass, keyed by tensor identity.
class Grads {
  public:
    // Adds `grad` to the gradient of `x` (shapes must match).
    void accumulate(const TensorRef& x, const Tensor& grad);
    Tensor get(uint64_t id) const;  // undefined if none
    void erase(uint64_t id) { grads_.erase(id); }
    void clear() { grads_.clear(); }
    const std::unordered_map<uint64_t, Tensor>& all() const { return grads_; }

  private:
    std::unordered_map<uint64_t, Tensor> grads_;
};

// Receives the gradients of the entry's outputs (one per output, same order; an output that
// got no gradient receives zeros) and accumulates the gradients of its inputs into `grads`.
using BackwardFn = std::function<void(Grads& grads, const std::vector<Tensor>& output_grads)>;

class Tape {
  public:
    Tape() = default;
    ~Tape() = default;
    Tape(const Tape&) = delete;
    Tape& operator=(const Tape&) = delete;

    void record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                BackwardFn backward);

    // Backward from a one-element loss (seed gradient 1).
    void backward(const Tensor& loss);
    // Backward from outputs with given gradients (a pipeline stage: the gradient of its output
    // arrives from the next stage).
    void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& output_grads);
    // The same from the outputs' identities only, so a stage need not keep its output alive
    // (it was sent to the next stage) until the gradient comes back.
    void backward_from_refs(const std::vector<TensorRef>& outputs, const std::vector<Tensor>& output_grads);

    // After backward: the gradient of a tensor that was an input of the tape (a leaf: not
    // produced by any entry), e.g. the stage input. Undefined if no gradient reached it.
    Tensor grad(const Tensor& x) const;

    size_t size() const { return entries_.size(); }
    std::vector<std::string> entry_names() const;
    // Frees the entries, their closures and so the saved activations.
    void clear();

  private:
    struct OutputInfo {
        Shape shape;
        DType dtype;
        Device device;
    };
    struct Entry {
        std::string name;
        std::vector<uint64_t> input_ids;
        std::vector<std::shared_ptr<AutogradMeta>> parameter_slots;  // per input; null if not a parameter
        std::vector<uint64_t> output_ids;
        std::vector<OutputInfo> outputs;  // shape/dtype/device of each output (no data kept)
        BackwardFn backward;
    };
    std::vector<Entry> entries_;
    std::unordered_map<uint64_t, Tensor> leaf_grads_;
};

// The tape that functions record into on this thread (null: nothing is recorded).
Tape* current_tape();
inline bool is_recording() { return current_tape() != nullptr; }

// Records into `tape` while alive; restores the previous tape on destruction.
class TapeScope {
  public:
    explicit TapeScope(Tape& tape);
    ~TapeScope();
    TapeScope(const TapeScope&) = delete;
    TapeScope& operator=(const TapeScope&) = delete;

  private:
    Tape* previous_;
};

// Records nothing while alive (evaluation, and the first forward of re-materialization).
class NoGradScope {
  public:
    NoGradScope();
    ~NoGradScope();
    NoGradScope(const NoGradScope&) = delete;
    NoGradScope& operator=(const NoGradScope&) = delete;

  private:
    Tape* previous_;
};

// For function authors: records on the current tape, if any.
void record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward);

}  // namespace autograd
}  // namespace mp
