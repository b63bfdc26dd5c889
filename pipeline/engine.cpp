// Engine: shape inference along the stages, the action loop, forward and backward of one
// (stage, micro-batch) (with or without re-materialization), local hand-over between stages on
// one rank, batched communication, the memory accounting and the per-action trace, and the
// forward-only evaluation. On a GPU the host never waits for the device inside the loop: actions
// are timed with device events and the losses are read after the step.
#include "pipeline/engine.h"

#include <cmath>

#include "autograd/tape.h"
#include "nn/layers.h"
#include "pipeline/validate.h"
#include "tensor/allocator.h"
#include "tensor/device_checks.h"
#include "tensor/device_context.h"
#include "tensor/device_timeline.h"
#include "tensor/ops/elementwise.h"

namespace mp::pipeline {

// What one stage holds for one micro-batch between its forward and its backward.
struct Engine::MicroBatch {
    int index = 0;
    int64_t first_row = 0;               // its first row in the global batch (keys dropout masks)
    Tensor input;                        // stage input: a view of the batch (first stage) or the received activation
    Tensor targets;                      // last stage only
    Tensor output;                       // until sent (the last stage keeps its loss until the step ends)
    autograd::TensorRef output_ref;      // identity of the output (or the loss on the last stage)
    std::unique_ptr<autograd::Tape> tape;  // the stashed activations (null while re-materializing)
    bool rematerialize = false;
    double weight = 0;                   // last stage: count_m / Σ count
    DType loss_dtype = DType::Float32;
    Tensor grad_output, grad_input;
    size_t stash_bytes = 0;
};

// One stage this rank runs: its layers, the shapes agreed along the pipeline, its micro-batches.
struct Engine::LocalStage {
    int index = 0;  // the stage's index in the schedule
    std::shared_ptr<nn::Sequential> module;
    Shape input_shape, output_shape;
    DType input_dtype = DType::Float32, output_dtype = DType::Float32;
    std::vector<MicroBatch> mbs;  // [micro-batch], for the current step
};

namespace {

constexpr int kShapeSpecLength = 8;  // dtype, rank, up to 6 dims

Tensor encode_spec(const Shape& shape, DType dtype) {
    MP_REQUIRE(shape.size() <= kShapeSpecLength - 2, "pipeline: activations of rank ", shape.size(),
               " are not supported (at most ", kShapeSpecLength - 2, ")");
    std::vector<int32_t> spec(kShapeSpecLength, 0);
    spec[0] = static_cast<int32_t>(dtype);
    spec[1] = static_cast<int32_t>(shape.size());
    for (size_t d = 0; d < shape.size(); ++d) spec[2 + d] = static_cast<int32_t>(shape[d]);
    return Tensor::from_vector(spec, {kShapeSpecLength});
}

void decode_spec(const Tensor& tensor, Shape& shape, DType& dtype) {
    std::vector<int32_t> spec = tensor.to_vector<int32_t>();
    dtype = static_cast<DType>(spec[0]);
    shape.assign(spec.begin() + 2, spec.begin() + 2 + spec[1]);
}

}  // namespace

Engine::Engine(comm::Communicator& comm, std::vector<std::shared_ptr<nn::Sequential>> stages, Schedule schedule,
               nn::Optimizer& optimizer, LossFunction loss, Rematerialization remat, Device device,
               comm::Communicator* data_parallel)
    : comm_(comm), data_parallel_(data_parallel), schedule_(std::move(schedule)), optimizer_(optimizer),
      loss_(std::move(loss)), remat_(remat), device_(device), timeline_(device), rank_(comm.rank()) {
    MP_REQUIRE(comm.size() == schedule_.ranks, "pipeline: the communicator has ", comm.size(), " ranks but schedule '",
               schedule_.name, "' runs on ", schedule_.ranks, " ranks (", schedule_.stages, " stages)");
    ValidationResult valid = validate(schedule_);
    MP_REQUIRE(valid.ok, "pipeline: schedule '", schedule_.name, "' is invalid: ", valid.error);
    const std::vector<int> held = schedule_.stages_of(rank_);
    MP_REQUIRE(stages.size() == held.size(), "pipeline: rank ", rank_, " runs ", held.size(), " stages of schedule '",
               schedule_.name, "' but was given ", stages.size(), " stage modules");
    for (size_t i = 0; i < held.size(); ++i) {
        MP_REQUIRE(stages[i] != nullptr, "pipeline: stage ", held[i], " has no layers");
        auto local = std::make_unique<LocalStage>();
        local->index = held[i];
        local->module = std::move(stages[i]);
        local_.push_back(std::move(local));
    }
    // Tags [0, tags_needed) name the step's messages; max_tag() itself carries the shapes.
    MP_REQUIRE(tags_needed(schedule_.stages, schedule_.micro_batches) <= comm.max_tag(), "pipeline: ",
               schedule_.stages, " stages x ", schedule_.micro_batches, " micro-batches x 2 directions need ",
               tags_needed(schedule_.stages, schedule_.micro_batches), " message tags but the communicator allows ",
               comm.max_tag(), "; use fewer micro-batches or stages");
}

namespace {
std::vector<std::shared_ptr<nn::Sequential>> one_stage(std::shared_ptr<nn::Sequential> stage) {
    std::vector<std::shared_ptr<nn::Sequential>> stages;
    stages.push_back(std::move(stage));
    return stages;
}
}  // namespace

Engine::Engine(comm::Communicator& comm, std::shared_ptr<nn::Sequential> stage, Schedule schedule,
               nn::Optimizer& optimizer, LossFunction loss, Rematerialization remat, Device device,
               comm::Communicator* data_parallel)
    : Engine(comm, one_stage(std::move(stage)), std::move(schedule), optimizer, std::move(loss), remat, device,
             data_parallel) {}

Engine::~Engine() = default;

Engine::LocalStage& Engine::local(int stage) {
    for (std::unique_ptr<LocalStage>& held : local_)
        if (held->index == stage) return *held;
    throw std::logic_error(str("pipeline: stage ", stage, " is not on rank ", rank_));
}

void Engine::infer_shapes(const Tensor& first_input) {
    // Stage by stage along the pipeline: each stage learns its input's shape from the previous
    // stage (a message, or the local stage's output), runs its forward once on zeros of that shape
    // (no tape) and tells the next stage its output's shape — as torch.distributed.pipelining does
    // with meta tensors. Each rank takes its stages in increasing order, so the messages form one
    // chain and cannot cross.
    const int shape_tag = comm_.max_tag();
    for (std::unique_ptr<LocalStage>& held : local_) {
        LocalStage& stage = *held;
        const int s = stage.index;
        Tensor sample;
        if (is_first(s)) {
            sample = first_input;
        } else if (schedule_.rank_of(s - 1) == rank_) {
            const LocalStage& previous = local(s - 1);
            sample = Tensor::zeros(previous.output_shape, previous.output_dtype, device_);
        } else {
            Tensor spec = Tensor::zeros({kShapeSpecLength}, DType::Int32);
            comm_.recv(spec, schedule_.rank_of(s - 1), shape_tag);
            Shape shape;
            DType dtype = DType::Float32;
            decode_spec(spec, shape, dtype);
            sample = Tensor::zeros(shape, dtype, device_);
        }
        stage.input_shape = sample.shape();
        stage.input_dtype = sample.dtype();
        Tensor output;
        {
            autograd::NoGradScope no_grad;
            output = stage.module->forward(sample);
        }
        stage.output_shape = output.shape();
        stage.output_dtype = output.dtype();
        if (!is_last(s) && schedule_.rank_of(s + 1) != rank_)
            comm_.send(encode_spec(stage.output_shape, stage.output_dtype), schedule_.rank_of(s + 1), shape_tag);
    }
}

// The last stage's loss: with the backward done in the forward when the loss offers it (the
// micro-batch's weight is its backward seed, known before the forward).
Tensor Engine::loss_of(const Tensor& output, const MicroBatch& mb) const {
    if (loss_.seeded_mean_loss) return loss_.seeded_mean_loss(output, mb.targets, mb.weight);
    return loss_.mean_loss(output, mb.targets);
}

Engine::ForwardPass Engine::forward_pass(LocalStage& stage, MicroBatch& mb, bool record) {
    Allocator& allocator = allocator_for(device_);
    const size_t before = allocator.stats().current_bytes;
    nn::DropoutReplayScope masks(dropout_key(), mb.first_row);  // a recomputation draws the same masks
    Tensor output;
    if (record) {
        mb.tape = std::make_unique<autograd::Tape>();
        if (is_first(stage.index)) mb.tape->mark_not_differentiable(mb.input);  // the raw batch: no gradient
        autograd::TapeScope scope(*mb.tape);
        output = stage.module->forward(mb.input);
        if (is_last(stage.index)) output = loss_of(output, mb);
    } else {
        autograd::NoGradScope no_grad;
        output = stage.module->forward(mb.input);
        if (is_last(stage.index)) output = loss_of(output, mb);
    }
    const size_t after = allocator.stats().current_bytes;
    const size_t produced = after > before ? after - before : 0;
    const size_t internals = produced > output.nbytes() ? produced - output.nbytes() : 0;
    return {output, internals};
}

void Engine::run_forward(LocalStage& stage, MicroBatch& mb, bool last_micro_batch) {
    mb.rematerialize =
        remat_ == Rematerialization::Always || (remat_ == Rematerialization::ExceptLast && !last_micro_batch);
    const ForwardPass pass = forward_pass(stage, mb, /*record=*/!mb.rematerialize);
    // Stash = what the forward left allocated, less the output (sent and dropped; the last
    // stage's output is the loss scalar), plus a received input, which is kept until backward.
    mb.stash_bytes = pass.internals + (is_first(stage.index) ? 0 : mb.input.nbytes());
    mb.output = pass.output;
    mb.output_ref = autograd::TensorRef(pass.output);
    mb.loss_dtype = pass.output.dtype();
    live_stash_bytes_ += mb.stash_bytes;
    live_micro_batches_ += 1;
    memory_.stash_bytes_per_micro_batch = std::max(memory_.stash_bytes_per_micro_batch, mb.stash_bytes);
    memory_.peak_stash_bytes = std::max(memory_.peak_stash_bytes, live_stash_bytes_);
    memory_.peak_stashed_micro_batches = std::max(memory_.peak_stashed_micro_batches, live_micro_batches_);
}

void Engine::run_backward(LocalStage& stage, MicroBatch& mb, bool split) {
    const bool first = is_first(stage.index), last = is_last(stage.index);
    MP_REQUIRE(last || mb.grad_output.defined(), "pipeline: stage ", stage.index, " runs ", split ? "I" : "B", mb.index,
               " before receiving its gradient");
    if (mb.rematerialize) {
        // Recompute the forward under a fresh tape, right before its backward; its internals count
        // like a stash.
        const ForwardPass pass = forward_pass(stage, mb, /*record=*/true);
        mb.output_ref = autograd::TensorRef(pass.output);
        memory_.peak_stash_bytes = std::max(memory_.peak_stash_bytes, live_stash_bytes_ + pass.internals);
        // With a split backward the recomputed tape lives on until W (what W needs of it): counted,
        // conservatively as all of it, until release_stash.
        if (split) {
            mb.stash_bytes += pass.internals;
            live_stash_bytes_ += pass.internals;
        }
    }
    // The last stage seeds its loss with count_m / Σ count; the others use the received gradient.
    Tensor seed = last ? Tensor::full(mb.output_ref.shape, mb.weight, mb.loss_dtype, device_) : mb.grad_output;
    if (split) mb.tape->backward_input_from_refs({mb.output_ref}, {seed});
    else mb.tape->backward_from_refs({mb.output_ref}, {seed});
    if (!first) {
        mb.grad_input = mb.tape->grad(mb.input);
        MP_REQUIRE(mb.grad_input.defined(), "pipeline: stage ", stage.index, " produced no gradient for its input in ",
                   split ? "I" : "B", mb.index);
    }
    mb.grad_output = Tensor();
    if (!first) mb.input = Tensor();  // a weight closure that needs it keeps it
    // Through its input backward the micro-batch no longer counts as stashed; after I only what W
    // needs stays in the tape, whose bytes are released with it at W.
    live_micro_batches_ -= 1;
    if (!split) release_stash(mb);
}

void Engine::run_weight_backward(LocalStage& stage, MicroBatch& mb) {
    MP_REQUIRE(mb.tape != nullptr, "pipeline: stage ", stage.index, " runs W", mb.index, " before I", mb.index);
    mb.tape->backward_weight();
    release_stash(mb);
}

void Engine::release_stash(MicroBatch& mb) {
    mb.tape.reset();  // frees the stashed activations (after W: what only the weight gradients needed)
    live_stash_bytes_ -= mb.stash_bytes;
}

void Engine::run_group(size_t first, size_t last) {
    const std::vector<Action>& actions = schedule_.actions[static_cast<size_t>(rank_)];
    const int M = schedule_.micro_batches;
    std::vector<comm::Transfer> batch;
    for (size_t i = first; i <= last; ++i) {
        const Action& a = actions[i];
        LocalStage& stage = local(a.stage);
        MicroBatch& mb = stage.mbs.at(static_cast<size_t>(a.micro_batch));
        const int peer = schedule_.rank_of(peer_stage(a));
        const int tag = message_tag(a, M);
        switch (a.kind) {
            case ActionKind::SendActivation:
                batch.push_back(comm::Transfer::send(mb.output, peer, tag));
                break;
            case ActionKind::RecvActivation:
                mb.input = Tensor::empty(stage.input_shape, stage.input_dtype, device_);
                batch.push_back(comm::Transfer::recv(mb.input, peer, tag));
                break;
            case ActionKind::SendGradient:
                batch.push_back(comm::Transfer::send(mb.grad_input, peer, tag));
                break;
            case ActionKind::RecvGradient:
                mb.grad_output = Tensor::empty(stage.output_shape, stage.output_dtype, device_);
                batch.push_back(comm::Transfer::recv(mb.grad_output, peer, tag));
                break;
            case ActionKind::Forward:
            case ActionKind::Backward:
            case ActionKind::InputBackward:
            case ActionKind::WeightBackward:
            case ActionKind::OptimizerStep:
                throw std::logic_error("pipeline: a compute action inside a communication batch");
        }
    }
    comm_.exchange(batch);
    for (size_t i = first; i <= last; ++i) {  // what was sent is no longer needed here
        const Action& a = actions[i];
        MicroBatch& mb = local(a.stage).mbs[static_cast<size_t>(a.micro_batch)];
        if (a.kind == ActionKind::SendActivation) mb.output = Tensor();
        if (a.kind == ActionKind::SendGradient) mb.grad_input = Tensor();
    }
}

uint64_t Engine::dropout_key() const { return static_cast<uint64_t>(steps_run_); }

void Engine::set_steps_run(int64_t steps) {
    MP_REQUIRE(steps >= 0, "pipeline: set_steps_run: steps must be >= 0, got ", steps);
    steps_run_ = steps;
}

void Engine::prepare_shapes(const Tensor& inputs, int64_t micro) {
    Tensor first_input = inputs.slice(0, micro).to(device_);
    if (first_input.shape() != inferred_for_input_) {
        infer_shapes(first_input);
        inferred_for_input_ = first_input.shape();
    }
}

size_t Engine::estimate_stash_bytes(const Tensor& inputs, const Tensor& targets) {
    const int M = schedule_.micro_batches;
    MP_REQUIRE(inputs.defined() && inputs.dim() >= 1 && inputs.size(0) % M == 0, "pipeline: the batch of ",
               inputs.defined() && inputs.dim() ? inputs.size(0) : 0, " does not split into ", M,
               " equal micro-batches");
    const int64_t micro = inputs.size(0) / M;
    prepare_shapes(inputs, micro);
    StageMemory saved = memory_;
    size_t saved_live = live_stash_bytes_;
    int saved_micro_batches = live_micro_batches_;
    size_t estimate = 0;
    for (std::unique_ptr<LocalStage>& held : local_) {
        LocalStage& stage = *held;
        MicroBatch mb;
        mb.input = is_first(stage.index) ? inputs.slice(0, micro).to(device_)
                                         : Tensor::zeros(stage.input_shape, stage.input_dtype, device_);
        if (is_last(stage.index)) mb.targets = targets.slice(0, micro).to(device_);
        run_forward(stage, mb, M == 1);
        estimate += mb.stash_bytes;
    }
    memory_ = saved;
    live_stash_bytes_ = saved_live;
    live_micro_batches_ = saved_micro_batches;
    return estimate;
}

double Engine::all_reduce_scalar(comm::Communicator& comm, double value, comm::ReduceOp op) {
    Tensor t = Tensor::full({1}, value, DType::Float32, comm::staging_device(comm, device_));
    comm.all_reduce(t, op);
    return t.item();
}

std::vector<double> Engine::read_micro_batch_losses(const std::vector<MicroBatch>& mbs,
                                                    const std::vector<int>& forward_order) {
    // Gathered into one tensor on the device and read in one copy (one wait), indexed by micro-batch.
    const int M = schedule_.micro_batches;
    Tensor losses = Tensor::empty({static_cast<int64_t>(M)}, mbs[forward_order.at(0)].output.dtype(), device_);
    for (int m : forward_order) losses.slice(m, m + 1).copy_from(mbs[m].output.reshape({1}));
    if (losses.dtype() == DType::Float64) return losses.to_vector<double>();
    std::vector<float> floats = losses.to_vector<float>();
    return std::vector<double>(floats.begin(), floats.end());
}

void Engine::agree_before_update(const std::vector<double>& losses, const std::vector<int>& forward_order) {
    // One value per rank, reduced with max over the pipeline and the replicas: 1 + the stage whose
    // GPU input check failed (the CPU checks throw at once), else 0.5 when this rank's losses are
    // not finite (the last stage), else 0.
    const std::string input_error = take_device_error(device_);
    int non_finite = -1;  // the first micro-batch whose loss is NaN or infinite
    for (int m : forward_order)
        if (non_finite < 0 && !std::isfinite(losses[static_cast<size_t>(m)])) non_finite = m;
    double verdict = !input_error.empty() ? rank_ + 1.0 : non_finite >= 0 ? 0.5 : 0.0;
    verdict = all_reduce_scalar(comm_, verdict, comm::ReduceOp::Max);
    if (replicated())
        verdict = all_reduce_scalar(*data_parallel_, verdict, comm::ReduceOp::Max);
    const char* unapplied = "no stage applied this step's update";
    if (!input_error.empty()) throw std::invalid_argument(str(input_error, " (", unapplied, ")"));
    if (verdict >= 1)
        throw std::invalid_argument(str("pipeline: ", schedule_.one_stage_per_rank() ? "stage " : "rank ",
                                        static_cast<int>(verdict) - 1, " found a bad input in this "
                                        "step's batch (its own error names it); ", unapplied));
    if (verdict > 0) {
        if (non_finite >= 0)
            throw std::runtime_error(str("pipeline: training diverged: the loss of micro-batch ", non_finite, " is ",
                                         losses[static_cast<size_t>(non_finite)], " on stage ", schedule_.stages - 1,
                                         " (lower optimizer.lr, clip gradients, or check the data); ", unapplied));
        throw std::runtime_error(str("pipeline: training diverged: the last stage's loss is not finite; ", unapplied));
    }
}

void Engine::agree_parameters_are_finite() {
    // One reduction over this rank's parameters (a NaN or infinity anywhere makes the norm so),
    // then one flag over the pipeline and the replicas: every rank stops at the same update.
    const bool finite = std::isfinite(ops::global_l2_norm(parameters()));
    double verdict = finite ? 0.0 : rank_ + 1.0;
    verdict = all_reduce_scalar(comm_, verdict, comm::ReduceOp::Max);
    if (replicated())
        verdict = all_reduce_scalar(*data_parallel_, verdict, comm::ReduceOp::Max);
    if (verdict == 0) return;
    std::string culprit;
    if (!finite)
        for (const std::unique_ptr<LocalStage>& held : local_)
            for (const auto& [name, parameter] : held->module->named_parameters())
                if (culprit.empty() && !std::isfinite(ops::global_l2_norm({parameter})))
                    culprit = str(" ('", name, "')");
    const int rank = finite ? static_cast<int>(verdict) - 1 : rank_;  // this one's own, if it is one
    throw std::runtime_error(str("pipeline: training diverged: this step's update made rank ", rank,
                                 "'s parameters non-finite", culprit,
                                 " (lower optimizer.lr or weight_decay, raise optimizer.eps); nothing after it is "
                                 "saved"));
}

std::vector<Tensor> Engine::parameters() const {
    std::vector<std::shared_ptr<nn::Sequential>> modules;
    for (const std::unique_ptr<LocalStage>& held : local_) modules.push_back(held->module);
    return nn::unique_parameters(modules);
}

void Engine::tie_parameters(const std::vector<nn::TiedParameter>& ties) {
    MP_REQUIRE(tied_.empty() && embedding_group_ == nullptr, "pipeline: tie_parameters was already called");
    auto find_local = [this](const std::string& name) {
        for (const std::unique_ptr<LocalStage>& held : local_)
            for (auto& [parameter_name, parameter] : held->module->named_parameters())
                if (parameter_name == name) return parameter;
        return Tensor();
    };
    auto holds = [this](const std::string& name) {
        for (const std::unique_ptr<LocalStage>& held : local_)
            if (held->module->has_parameter(name)) return true;
        return false;
    };
    for (const nn::TiedParameter& tie : ties) {
        const bool source = holds(tie.source), copy = holds(tie.copy);
        if (source && copy) {
            // On one rank they must be one parameter already: wherever the copy is listed, it is the source.
            const Tensor tied = find_local(tie.source);
            for (const std::unique_ptr<LocalStage>& held : local_)
                for (auto& [name, parameter] : held->module->named_parameters())
                    MP_REQUIRE(name != tie.copy || parameter.id() == tied.id(), "pipeline: rank ", rank_,
                               " holds '", tie.source, "' and '", tie.copy, "' as two parameters; tie them first "
                               "(nn::tie_across)");
            continue;
        }
        if (source || copy) tied_.push_back({tie.source, tie.copy, find_local(source ? tie.source : tie.copy), copy});
    }
    // One group for the ranks holding half of a tie (GPT has one tie: first and last stage).
    embedding_group_ = comm_.split(tied_.empty() ? -1 : 0);
    if (embedding_group_ != nullptr)
        MP_REQUIRE(embedding_group_->size() == 2, "pipeline: the tied parameters are spread over ",
                   embedding_group_->size(), " ranks; a tie joins exactly two (the first and the last stage's)");
    // Every rank takes part in the check of the copies (one flag), so every rank must know of them.
    ties_across_ranks_ = all_reduce_scalar(comm_, static_cast<double>(tied_.size())) > 0;
}

bool Engine::is_tied_copy(const Tensor& parameter) const {
    for (const TiedHalf& half : tied_)
        if (half.is_copy && half.local.id() == parameter.id()) return true;
    return false;
}

void Engine::all_reduce_tied_gradients() {
    for (const TiedHalf& half : tied_) {
        Tensor grad = autograd::grad_of(half.local);
        if (!grad.defined()) {  // a stage whose batch never reached it adds zeros
            grad = Tensor::zeros(half.local.shape(), half.local.dtype(), half.local.device());
            half.local.autograd_meta()->grad = grad;
        }
        embedding_group_->all_reduce(grad, comm::ReduceOp::Sum);
    }
}

void Engine::check_tied_copies_agree(const std::string& when) {
    // A fingerprint of each half — its sum and its L2 norm, deterministic reductions, so equal
    // tensors give equal numbers — compared through max(x) and max(−x) over the two ranks; then one
    // flag over the pipeline and the replicas, so every rank stops at the same step.
    std::string mismatch;
    for (const TiedHalf& half : tied_) {
        const double sum = ops::sum(half.local).to(DType::Float64).item();
        const double norm = ops::global_l2_norm({half.local});
        Device where = comm::staging_device(*embedding_group_, device_);
        Tensor both = Tensor::from_vector(std::vector<double>{sum, norm, -sum, -norm}, {4}, where);
        embedding_group_->all_reduce(both, comm::ReduceOp::Max);
        std::vector<double> v = both.to_vector<double>();
        if (mismatch.empty() && (v[0] != -v[2] || v[1] != -v[3]))
            mismatch = str("pipeline: the tied copies '", half.source, "' and '", half.copy, "' differ ", when,
                           " (sums ", -v[2], " and ", v[0], ", norms ", -v[3], " and ", v[1],
                           "): the first and last stages no longer hold the same embedding");
    }
    double verdict = all_reduce_scalar(comm_, mismatch.empty() ? 0.0 : 1.0, comm::ReduceOp::Max);
    if (replicated())
        verdict = all_reduce_scalar(*data_parallel_, verdict, comm::ReduceOp::Max);
    if (verdict == 0) return;
    if (!mismatch.empty()) throw std::runtime_error(mismatch);
    throw std::runtime_error(str("pipeline: the tied copies of the first and last stages differ ", when,
                                 " (the ranks holding them name them)"));
}

void Engine::all_reduce_gradients() {
    // Each replica's gradients are already weighted by its counts over the global total, so
    // their sum is the gradient of the global mean loss.
    for (const Tensor& parameter : parameters()) {
        Tensor grad = autograd::grad_of(parameter);
        if (!grad.defined()) {  // a replica whose batch never reached this parameter adds zeros
            grad = Tensor::zeros(parameter.shape(), parameter.dtype(), parameter.device());
            parameter.autograd_meta()->grad = grad;
        }
        data_parallel_->all_reduce(grad, comm::ReduceOp::Sum);
    }
}

void Engine::set_grad_clip(double max_norm) {
    MP_REQUIRE(max_norm >= 0, "pipeline: grad clip must be >= 0, got ", max_norm);
    grad_clip_ = max_norm;
}

double Engine::norm_and_clip_gradients() {
    // Each stage holds a disjoint part of the model (and replicas hold equal sums after the
    // all-reduce), so the squared norm is summed over the pipeline group only.
    // A tied copy's gradient equals its source's (summed across the embedding group): counted once.
    std::vector<Tensor> grads, counted;
    for (const Tensor& parameter : parameters()) {
        if (!autograd::grad_of(parameter).defined()) continue;
        grads.push_back(autograd::grad_of(parameter));
        if (!is_tied_copy(parameter)) counted.push_back(grads.back());
    }
    double stage_norm = ops::global_l2_norm(counted);
    double norm = std::sqrt(all_reduce_scalar(comm_, stage_norm * stage_norm));
    // The same all-reduced value on every rank, so every rank stops here alike.
    if (!std::isfinite(norm))
        throw std::runtime_error(str("pipeline: training diverged: the global gradient norm is ", norm,
                                     " (lower optimizer.lr, or check the data); no stage applied this step's update"));
    if (grad_clip_ > 0) {
        double coefficient = grad_clip_ / (norm + 1e-6);
        if (coefficient < 1.0) ops::scale_(grads, coefficient);  // one launch on a GPU
    }
    return norm;
}

// ---- one training step --------------------------------------------------------------------------

// The last stage's micro-batch losses, from the forwards to the loss of the step.
struct Engine::StepLosses {
    // The micro-batches the last stage forwarded, in the order it did: the losses are summed in it.
    std::vector<int> forward_order;
    std::vector<double> values;  // [micro-batch], read from the device before the optimizer step
};

StepResult Engine::step(const Tensor& inputs, const Tensor& targets) {
    const int64_t micro = micro_batch_rows(inputs, targets);
    prepare_shapes(inputs, micro);
    if (!tied_checked_ && ties_across_ranks_) check_tied_copies_agree("before the first step");
    tied_checked_ = true;
    // Mixed precision: each weight is converted to its compute dtype once per step, not once per
    // micro-batch (dropped before the optimizer changes the masters).
    nn::ComputeCopyCache compute_copies;
    prepare_micro_batches(inputs, targets, micro);
    start_accounting();

    StepResult result;
    StepLosses losses;
    run_actions(compute_copies, losses, result);
    ++steps_run_;
    result.loss = reduce_loss(losses);
    memory_.peak_allocator_bytes = allocator_for(device_).stats().peak_bytes;
    result.memory = memory_;
    return result;
}

int64_t Engine::micro_batch_rows(const Tensor& inputs, const Tensor& targets) const {
    const int M = schedule_.micro_batches;
    MP_REQUIRE(inputs.defined() && inputs.dim() >= 1, "pipeline: step needs the batch inputs on every rank");
    MP_REQUIRE(targets.defined() && targets.dim() >= 1, "pipeline: step needs the batch targets on every rank");
    const int64_t batch = inputs.size(0);
    MP_REQUIRE(batch % M == 0, "pipeline: the batch of ", batch, " does not split into ", M, " equal micro-batches");
    MP_REQUIRE(targets.size(0) == batch, "pipeline: inputs have ", batch, " rows but targets have ", targets.size(0));
    return batch / M;
}

void Engine::prepare_micro_batches(const Tensor& inputs, const Tensor& targets, int64_t micro) {
    const int M = schedule_.micro_batches;
    double total_count = 0;
    // This replica's rows are [replica · batch, (replica + 1) · batch) of the global batch (as the
    // trainer shards it): dropout masks are keyed by global rows, so any layout draws the same.
    const int64_t replica_first_row = data_parallel_ != nullptr ? data_parallel_->rank() * inputs.size(0) : 0;
    for (std::unique_ptr<LocalStage>& held : local_) {
        LocalStage& stage = *held;
        stage.mbs.clear();
        stage.mbs.resize(static_cast<size_t>(M));
        for (int m = 0; m < M; ++m) {
            MicroBatch& mb = stage.mbs[static_cast<size_t>(m)];
            mb.index = m;
            mb.first_row = replica_first_row + m * micro;
            if (is_first(stage.index)) mb.input = inputs.slice(m * micro, (m + 1) * micro).to(device_);
            if (is_last(stage.index)) {
                // Counted where the targets are given (the host, for the trainers), before they move.
                Tensor micro_targets = targets.slice(m * micro, (m + 1) * micro);
                mb.weight = loss_.count(micro_targets);
                total_count += mb.weight;
                mb.targets = micro_targets.to(device_);
            }
        }
    }
    // The loss weights: count_m / Σ count over the global batch (every replica's micro-batches).
    if (LocalStage* last_stage = last_stage_here()) {
        if (replicated()) total_count = all_reduce_scalar(*data_parallel_, total_count);
        MP_REQUIRE(total_count > 0, "pipeline: the global batch has no counted targets");
        for (MicroBatch& mb : last_stage->mbs) mb.weight /= total_count;
    }
}

void Engine::start_accounting() {
    optimizer_.zero_grad();
    live_stash_bytes_ = 0;
    live_micro_batches_ = 0;
    memory_ = StageMemory();
    allocator_for(device_).reset_peak();
}

void Engine::run_actions(nn::ComputeCopyCache& compute_copies, StepLosses& losses, StepResult& result) {
    result.trace.stage = rank_;
    result.trace.names_carry_stages = !schedule_.one_stage_per_rank();
    comm_.barrier();  // align the ranks' clocks at the step's start
    // Each action (or group of transfers) is timed between two marks on the device's timeline: the
    // host queues the work and moves on; the marks are read once the step's work is done.
    timeline_.clear();
    const size_t origin = timeline_.mark();
    const std::vector<Action>& actions = schedule_.actions[static_cast<size_t>(rank_)];
    std::vector<std::pair<size_t, size_t>> action_marks;
    for (size_t i = 0; i < actions.size();) {
        const size_t start_mark = timeline_.mark();
        const size_t next = run_action(i, compute_copies, losses, result);
        action_marks.emplace_back(start_mark, timeline_.mark());
        TraceEvent event;
        event.actions.assign(actions.begin() + static_cast<std::ptrdiff_t>(i),
                             actions.begin() + static_cast<std::ptrdiff_t>(next));
        result.trace.events.push_back(event);
        i = next;
    }
    synchronize(device_);  // the marks and the losses are ready once the device is done
    for (size_t e = 0; e < result.trace.events.size(); ++e) {
        result.trace.events[e].start_us = timeline_.microseconds(origin, action_marks[e].first);
        result.trace.events[e].end_us = timeline_.microseconds(origin, action_marks[e].second);
    }
    result.trace.step_us = action_marks.empty() ? 0.0 : timeline_.microseconds(origin, action_marks.back().second);
}

size_t Engine::run_action(size_t i, nn::ComputeCopyCache& compute_copies, StepLosses& losses, StepResult& result) {
    const std::vector<Action>& actions = schedule_.actions[static_cast<size_t>(rank_)];
    const Action& a = actions[i];
    switch (a.kind) {
        case ActionKind::SendActivation:
        case ActionKind::RecvActivation:
        case ActionKind::SendGradient:
        case ActionKind::RecvGradient: {
            size_t last = i;
            while (actions[last].batched_with_next) ++last;
            run_group(i, last);
            return last + 1;
        }
        case ActionKind::Forward: {
            LocalStage& stage = local(a.stage);
            MicroBatch& mb = stage.mbs.at(static_cast<size_t>(a.micro_batch));
            if (!is_first(a.stage) && schedule_.rank_of(a.stage - 1) == rank_) hand_over_activation(stage, mb);
            run_forward(stage, mb, a.micro_batch == schedule_.micro_batches - 1);
            if (is_last(a.stage)) losses.forward_order.push_back(a.micro_batch);
            return i + 1;
        }
        case ActionKind::Backward:
        case ActionKind::InputBackward: {
            LocalStage& stage = local(a.stage);
            MicroBatch& mb = stage.mbs.at(static_cast<size_t>(a.micro_batch));
            if (!is_last(a.stage) && schedule_.rank_of(a.stage + 1) == rank_) hand_over_gradient(stage, mb);
            run_backward(stage, mb, /*split=*/a.kind == ActionKind::InputBackward);
            return i + 1;
        }
        case ActionKind::WeightBackward: {
            LocalStage& stage = local(a.stage);
            run_weight_backward(stage, stage.mbs.at(static_cast<size_t>(a.micro_batch)));
            return i + 1;
        }
        case ActionKind::OptimizerStep:
            result.grad_norm = run_optimizer_step(compute_copies, losses);
            return i + 1;
    }
    throw std::logic_error(str("pipeline: action ", to_string(a), " has no known kind"));
}

// The previous stage on this rank hands its output over, as a transfer would: a copy, so that each
// stage's tape sees its own input.
void Engine::hand_over_activation(LocalStage& stage, MicroBatch& mb) {
    MicroBatch& previous = local(stage.index - 1).mbs.at(static_cast<size_t>(mb.index));
    mb.input = Tensor::empty(stage.input_shape, stage.input_dtype, device_);
    mb.input.copy_from(previous.output);
    previous.output = Tensor();
}

// The next stage on this rank hands the gradient of its input over, likewise.
void Engine::hand_over_gradient(LocalStage& stage, MicroBatch& mb) {
    MicroBatch& next = local(stage.index + 1).mbs.at(static_cast<size_t>(mb.index));
    mb.grad_output = Tensor::empty(stage.output_shape, stage.output_dtype, device_);
    mb.grad_output.copy_from(next.grad_input);
    next.grad_input = Tensor();
}

double Engine::run_optimizer_step(nn::ComputeCopyCache& compute_copies, StepLosses& losses) {
    // Before any weight changes, every rank and replica learns whether any of them found a bad id
    // or target (the queued GPU checks) or a non-finite loss (the last stage).
    if (LocalStage* last_stage = last_stage_here())
        losses.values = read_micro_batch_losses(last_stage->mbs, losses.forward_order);
    agree_before_update(losses.values, losses.forward_order);
    if (replicated()) all_reduce_gradients();
    compute_copies.clear();
    if (embedding_group_ != nullptr) all_reduce_tied_gradients();
    // The norm on every step, clipping or not: the step log shows it and a non-finite one stops
    // every rank before any update. Its cost is one read of the gradients (fewer bytes than the
    // optimizer's own pass, which also reads weights and state) and one scalar all-reduce; it
    // changes no gradient when grad_clip is 0, so no result.
    const double grad_norm = norm_and_clip_gradients();
    optimizer_.step();
    agree_parameters_are_finite();
    if (ties_across_ranks_) check_tied_copies_agree(str("after the update of step ", steps_run_));
    return grad_norm;
}

double Engine::reduce_loss(const StepLosses& losses) {
    // The mean loss over the global batch: micro-batch losses weighted by their counts, summed in
    // forward order in double; it lives on the last stage's rank (summed over replicas).
    double loss_sum = 0;
    if (LocalStage* last_stage = last_stage_here()) {
        for (int m : losses.forward_order)
            loss_sum += last_stage->mbs[static_cast<size_t>(m)].weight * losses.values.at(static_cast<size_t>(m));
        if (replicated()) loss_sum = all_reduce_scalar(*data_parallel_, loss_sum);
    }
    return broadcast_loss(loss_sum);
}

double Engine::broadcast_loss(double loss_sum) {
    Tensor loss = Tensor::full({1}, loss_sum, DType::Float32, comm::staging_device(comm_, device_));
    comm_.broadcast(loss, schedule_.rank_of(schedule_.stages - 1));
    return loss.item();
}

// ---- forward-only evaluation --------------------------------------------------------------------

double Engine::evaluate(const Tensor& inputs, const Tensor& targets) {
    const int M = schedule_.micro_batches;
    MP_REQUIRE(inputs.defined() && inputs.dim() >= 1, "pipeline: evaluate needs the batch inputs on every rank");
    MP_REQUIRE(targets.defined() && targets.dim() >= 1, "pipeline: evaluate needs the batch targets on every rank");
    const int64_t batch = inputs.size(0);
    MP_REQUIRE(batch % M == 0, "pipeline: evaluate: the batch of ", batch, " does not split into ", M,
               " equal micro-batches");
    MP_REQUIRE(targets.size(0) == batch, "pipeline: evaluate: inputs have ", batch, " rows but targets have ",
               targets.size(0));
    const int64_t micro = batch / M;
    prepare_shapes(inputs, micro);

    // Evaluation mode for this call only (each stage's own mode restored, also on an exception).
    struct EvalMode {
        std::vector<std::pair<nn::Sequential*, bool>> saved;
        ~EvalMode() {
            for (auto& [module, training] : saved) module->train(training);
        }
    } eval_mode;
    for (std::unique_ptr<LocalStage>& held : local_) {
        eval_mode.saved.emplace_back(held->module.get(), held->module->is_training());
        held->module->eval();
    }
    autograd::NoGradScope no_grad;
    nn::ComputeCopyCache compute_copies;  // bf16 copies made once for the whole evaluation

    // The last stage's micro-batch losses (float32 or float64 scalars on the device) and weights.
    std::vector<Tensor> losses(static_cast<size_t>(M));
    std::vector<double> weights(static_cast<size_t>(M), 0.0);
    double total_count = 0;
    // Micro-batch by micro-batch, and within one through this rank's stages in increasing order.
    // Every transfer (m, s -> s + 1) is then one step of the single global sequence ordered by
    // (m, s), and each rank meets its transfers in that sequence's order: the earliest pending one
    // always has both ends waiting at it, so the blocking (rendezvous) transfers cannot deadlock.
    // (Stage by stage instead would deadlock with several stages per rank.)
    for (int m = 0; m < M; ++m) {
        Tensor handed_over;  // the output of this rank's previous stage, for this micro-batch
        for (std::unique_ptr<LocalStage>& held : local_) {
            LocalStage& stage = *held;
            const int s = stage.index;
            Tensor input;
            if (is_first(s)) {
                input = inputs.slice(m * micro, (m + 1) * micro).to(device_);
            } else if (schedule_.rank_of(s - 1) == rank_) {
                input = std::move(handed_over);
            } else {
                input = Tensor::empty(stage.input_shape, stage.input_dtype, device_);
                comm_.recv(input, schedule_.rank_of(s - 1), message_tag({ActionKind::RecvActivation, s, m}, M));
            }
            Tensor output = stage.module->forward(input);
            if (is_last(s)) {
                const Tensor micro_targets = targets.slice(m * micro, (m + 1) * micro);
                weights[static_cast<size_t>(m)] = loss_.count(micro_targets);
                total_count += weights[static_cast<size_t>(m)];
                losses[static_cast<size_t>(m)] = loss_.mean_loss(output, micro_targets.to(device_));
            } else if (schedule_.rank_of(s + 1) == rank_) {
                handed_over = output;
            } else {
                comm_.send(output, schedule_.rank_of(s + 1), message_tag({ActionKind::SendActivation, s, m}, M));
            }
        }
    }

    // A bad id or target found on the GPU (the CPU checks throw at once) stops every rank alike.
    const std::string input_error = take_device_error(device_);
    double verdict = all_reduce_scalar(comm_, input_error.empty() ? 0.0 : rank_ + 1.0, comm::ReduceOp::Max);
    if (replicated())
        verdict = all_reduce_scalar(*data_parallel_, verdict, comm::ReduceOp::Max);
    if (!input_error.empty()) throw std::invalid_argument(str(input_error, " (in an evaluation batch)"));
    if (verdict >= 1)
        throw std::invalid_argument(str("pipeline: ", schedule_.one_stage_per_rank() ? "stage " : "rank ",
                                        static_cast<int>(verdict) - 1, " found a bad input in an evaluation batch "
                                        "(its own error names it)"));

    // As in step(): count-weighted micro-batch losses summed in micro-batch order in double, then
    // over the replicas, then from the last stage's rank to every rank of the pipeline.
    double loss_sum = 0;
    if (holds_last_stage()) {
        if (replicated()) total_count = all_reduce_scalar(*data_parallel_, total_count);
        MP_REQUIRE(total_count > 0, "pipeline: the evaluation batch has no counted targets");
        for (int m = 0; m < M; ++m) {
            loss_sum += weights[static_cast<size_t>(m)] / total_count * losses[static_cast<size_t>(m)].item();
        }
        if (replicated()) loss_sum = all_reduce_scalar(*data_parallel_, loss_sum);
    }
    return broadcast_loss(loss_sum);
}

}  // namespace mp::pipeline
