// The tape (a Wengert list). While a tape is current, every differentiable function appends one
// entry: its inputs, its outputs and a backward closure holding exactly what its gradient needs
// (the closure's captures ARE the saved activations). backward() walks the entries in reverse,
// accumulating gradients into parameters' slots and into a map from which the gradient of any
// tape input can be read — a pipeline stage sends the gradient of its input to the previous one.
// Tapes are explicit objects: one per micro-batch, kept alive while its activations are stashed,
// freed (clear() or destruction) to release them.
// Backward also runs in two halves, as zero-bubble pipeline schedules need: backward_input (I)
// computes the gradients that flow to the tape's inputs and queues the entries' weight-gradient
// closures; backward_weight (W) runs them later. One-piece backward() gives bit-identical results.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "tensor/tensor.h"

namespace mp {

// A parameter's gradient slot, shared by all copies of the parameter's Tensor handle.
struct AutogradMeta {
    Tensor grad;  // undefined until the first backward reaches the parameter
    // The parameter's own (master) dtype: its gradient is kept in it, whatever dtype the
    // gradients of its compute copies arrive in (mixed precision: bfloat16 copies, float32 masters).
    DType dtype = DType::Float32;
};

namespace autograd {

// Gives `t` a gradient slot (idempotent): backward() accumulates into it.
void make_parameter(Tensor& t);
bool is_parameter(const Tensor& t);
// The accumulated gradient of a parameter (undefined before any backward reached it).
Tensor grad_of(const Tensor& parameter);
// Drops a parameter's accumulated gradient.
void zero_grad(const Tensor& parameter);
// The parameter `master` converted to `dtype` for computing (mixed precision), sharing its
// gradient slot: every gradient the copy receives is converted to the master's dtype and added to
// the master's gradient. Returns master itself when it already has that dtype.
Tensor compute_copy(const Tensor& master, DType dtype);

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
    // Whether anything needs the gradient of `x`: false for a tape input marked not
    // differentiable (a stage's raw batch) and for what is computed from such inputs alone.
    // Closures skip computing a gradient nobody wants (it would be dropped anyway).
    bool wants(const TensorRef& x) const { return not_wanted_ == nullptr || not_wanted_->count(x.id) == 0; }
    Tensor get(uint64_t id) const;  // undefined if none
    void erase(uint64_t id) { grads_.erase(id); }
    void clear() { grads_.clear(); }
    const std::unordered_map<uint64_t, Tensor>& all() const { return grads_; }

  private:
    friend class Tape;
    std::unordered_map<uint64_t, Tensor> grads_;
    const std::unordered_set<uint64_t>* not_wanted_ = nullptr;  // the tape's; null: every gradient is wanted
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

    // `backward` computes the gradients of the entry's inputs; for a function with parameters it
    // may leave those to `weight_backward` (same signature), which then computes only the
    // parameters' gradients — the W half of a split backward. A W that works only from what its
    // I left it (weight_reads_output_grads = false) gets no output gradients, so none are kept
    // alive for it between I and W.
    void record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
                BackwardFn backward, BackwardFn weight_backward = nullptr, bool weight_reads_output_grads = true);

    // Marks a tape input (before it is used) as needing no gradient: a pipeline stage's raw
    // batch. Functions then skip the gradients that would only flow to it.
    void mark_not_differentiable(const Tensor& input);

    // Backward from a one-element loss (seed gradient 1).
    void backward(const Tensor& loss);
    // Backward from outputs with given gradients (a pipeline stage: the gradient of its output
    // arrives from the next stage).
    void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& output_grads);
    // The same from the outputs' identities only, so a stage need not keep its output alive
    // (it was sent to the next stage) until the gradient comes back.
    void backward_from_refs(const std::vector<TensorRef>& outputs, const std::vector<Tensor>& output_grads);

    // The first half (I): the gradients of the tape's inputs (readable with grad() at once) and
    // of parameters used by functions without a split; every weight closure is queued with its
    // output gradients, and everything else the entries saved is freed. Once per tape.
    void backward_input_from_refs(const std::vector<TensorRef>& outputs, const std::vector<Tensor>& output_grads);
    // The second half (W): runs the queued weight closures and accumulates into the parameters'
    // slots, in the order one-piece backward would (so the sums are bitwise the same); then frees
    // them. Throws unless backward_input ran and backward_weight did not.
    void backward_weight();
    // Weight closures queued by backward_input and not yet run.
    size_t pending_weight_closures() const { return pending_weights_.size(); }

    // After backward: the gradient of a tensor that was an input of the tape (a leaf: not
    // produced by any entry), e.g. the stage input. Undefined if no gradient reached it.
    Tensor grad(const Tensor& x) const;

    // Analysis (rounding-error bounds, gradient statistics; tests and tools, not training): while
    // an observer is set, record() keeps every entry's inputs and outputs alive, and the reverse
    // walk shows the observer each entry's name, inputs, outputs and final output gradients before
    // the entry's backward runs (entries that lead to nothing differentiated are skipped). Set it
    // before recording.
    using OutputObserver =
        std::function<void(const std::string& name, const std::vector<Tensor>& inputs,
                           const std::vector<Tensor>& outputs, const std::vector<Tensor>& output_grads)>;
    void set_output_observer(OutputObserver observer);

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
        BackwardFn weight_backward;  // null: `backward` computes the parameters' gradients too
        bool weight_reads_output_grads = true;  // false: W gets no output gradients (none are kept for it)
        std::vector<Tensor> kept_inputs, kept_outputs;  // only while an output observer is set
    };
    struct PendingWeight {
        size_t entry;                    // index into entries_
        std::vector<Tensor> output_grads;
    };
    enum class Phase { Recording, InputDone, Done };

    // The reverse walk shared by both kinds of backward: runs each entry's input closure and
    // either its weight closure at once (run_weights) or queues it. Returns the leftover grads.
    Grads walk(const std::vector<TensorRef>& outputs, const std::vector<Tensor>& output_grads, bool run_weights);
    // Moves the parameters' gradients in `grads` into their slots, entries in recording order.
    void accumulate_into_parameters(const Grads& grads);

    std::vector<Entry> entries_;
    std::unordered_map<uint64_t, Tensor> leaf_grads_;
    std::unordered_set<uint64_t> not_differentiable_;  // ids whose gradient nobody wants
    std::vector<PendingWeight> pending_weights_;
    Phase phase_ = Phase::Recording;
    OutputObserver output_observer_;
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

// For function authors: accumulates a gradient straight into `parameter`'s slot, with no
// temporary and no separate add — write(grad, accumulate) must leave grad = (accumulate ? grad : 0)
// + the new gradient (a GEMM with beta = 1, say). grad is the slot's own tensor, in the master's
// dtype (float32 for a bfloat16 compute copy); when accumulate is false it is freshly allocated
// and uninitialised. Returns false, doing nothing, when `parameter` is not a parameter: the
// caller then accumulates into Grads as usual.
bool accumulate_into_slot(const Tensor& parameter, const std::function<void(Tensor& grad, bool accumulate)>& write);

// For function authors: records on the current tape, if any (see Tape::record).
void record(std::string name, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward, BackwardFn weight_backward = nullptr, bool weight_reads_output_grads = true);

}  // namespace autograd
}  // namespace mp
