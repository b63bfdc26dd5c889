// The engine runs one rank's action list for one training step: it splits the global batch into
// M micro-batches (dim-0 views), and for each (stage, micro-batch) the rank holds receives (or
// takes over locally) the activation, runs the stage forward under its own tape, sends the output,
// runs backward with the received gradient, sends the input's gradient, and steps the optimizer
// after the flush. The last stage weights micro-batch m's loss by count_m / Σ count, so every
// parameter gradient is exactly that of the mean loss over the global batch. Communication
// actions chained by batched_with_next go out as one batch (Communicator::exchange), tagged by
// message_tag, so 1F1B's steady state cannot deadlock and several stages on a rank never collide.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "nn/layers.h"
#include "nn/model_spec.h"
#include "nn/optim.h"
#include "pipeline/loss.h"
#include "pipeline/rematerialization.h"
#include "pipeline/schedule.h"
#include "pipeline/trace.h"
#include "tensor/device_timeline.h"

namespace mp::pipeline {


struct StageMemory {
    size_t stash_bytes_per_micro_batch = 0;  // activation bytes one micro-batch keeps between F and B
    // Most stashed bytes at once (+ one recompute's internals). With a split backward a
    // micro-batch's bytes count until its W (conservatively: after I only what W needs is kept).
    size_t peak_stash_bytes = 0;
    int peak_stashed_micro_batches = 0;      // most micro-batches between their F and B (or I) at once
    size_t peak_allocator_bytes = 0;         // the device allocator's peak during the step
};

struct StepResult {
    double loss = 0;     // mean loss over the global batch, on every rank
    double grad_norm = 0;  // global gradient norm (every stage) before any clipping; the same on every rank
    StageTrace trace;    // this rank's measured actions
    StageMemory memory;  // this rank's accounting
};

class Engine {
  public:
    // `comm` holds the schedule's ranks; `stages` are this rank's layers for each stage the
    // schedule places on it, in increasing stage order (already on `device`); `optimizer` holds
    // exactly their parameters. Refuses a schedule with more tags than the communicator has.
    // `data_parallel`, when given, connects this rank to the same rank of the other pipeline
    // replicas: gradients are summed across it before the optimizer step (each replica trains
    // on its own shard of the global batch).
    Engine(comm::Communicator& comm, std::vector<std::shared_ptr<nn::Sequential>> stages, Schedule schedule,
           nn::Optimizer& optimizer, LossFunction loss, Rematerialization remat, Device device,
           comm::Communicator* data_parallel = nullptr);
    ~Engine();
    // One stage per rank.
    Engine(comm::Communicator& comm, std::shared_ptr<nn::Sequential> stage, Schedule schedule, nn::Optimizer& optimizer,
           LossFunction loss, Rematerialization remat, Device device, comm::Communicator* data_parallel = nullptr);

    // One optimizer step. `inputs` is read by the first stage, `targets` by the last; both hold
    // this replica's share of the global batch as dim 0, divisible by the micro-batch count.
    StepResult step(const Tensor& inputs, const Tensor& targets);

    // Collective: the mean loss over this batch under the current parameters, forward only, the
    // same value on every rank (and replica). Arguments as for step(); the batch splits into the
    // same M micro-batches. Each stage runs in evaluation mode (no dropout) without a tape: nothing
    // is stashed, no gradient is made, no optimizer steps, and the dropout masks of later steps are
    // untouched. Every schedule evaluates in one order made from its placement: micro-batch by
    // micro-batch, each through this rank's stages in increasing order, receiving from the previous
    // stage and sending to the next with the tags step() uses (for one stage per rank, GPipe's
    // forward phase). Each rank then meets its transfers in the order of one global sequence,
    // (micro-batch, stage), so the blocking transfers cannot deadlock. The micro-batch losses
    // are weighted and summed as in step(), so the loss equals one process's evaluation of the same
    // micro-batches bit for bit.
    double evaluate(const Tensor& inputs, const Tensor& targets);

    // Collective: the activation bytes one micro-batch will stash on this rank (summed over its
    // stages), measured the way step() measures them (a forward of the batch's first micro-batch
    // under the configured re-materialization, then discarded). Arguments as for step(). For the
    // per-stage report.
    size_t estimate_stash_bytes(const Tensor& inputs, const Tensor& targets);

    // Clip the global gradient norm (over every stage and replica) to max_norm before each
    // optimizer step, as torch.nn.utils.clip_grad_norm_ would on the whole model; 0 = off.
    void set_grad_clip(double max_norm);

    // Tied parameters (nn::ModelSpec::ties: GPT's head on the token embedding). Collective over the
    // pipeline group; call once, before the first step. A tie whose two parameters are on this
    // rank must already be one parameter (nn::tie_across). When they are on two ranks — the first
    // stage's and the last stage's — those two form an embedding group, as in Megatron-LM: before
    // each optimizer step (after the data-parallel sum) the two gradients are summed there, the
    // global gradient norm counts the pair once, and the two copies are checked to be identical
    // before the first step and after every update (a mismatch is an error on both, naming them).
    void tie_parameters(const std::vector<nn::TiedParameter>& ties);

    // The steps already trained (a resumed run passes the checkpoint's step): dropout masks are
    // keyed by it, so a resumed run draws the masks the uninterrupted one would have.
    void set_steps_run(int64_t steps);

    int rank() const { return rank_; }
    int stages() const { return schedule_.stages; }
    const Schedule& schedule() const { return schedule_; }

  private:
    struct MicroBatch;
    struct LocalStage;
    struct StepLosses;
    LocalStage& local(int stage);
    // The pipeline's last stage, when this rank holds it; else null.
    LocalStage* last_stage_here() { return holds_last_stage() ? &local(schedule_.stages - 1) : nullptr; }
    // Whether gradients and losses are summed over data-parallel replicas.
    bool replicated() const { return data_parallel_ != nullptr && data_parallel_->size() > 1; }
    void infer_shapes(const Tensor& first_input);
    void prepare_shapes(const Tensor& inputs, int64_t micro);
    uint64_t dropout_key() const;

    // step(), in order: the rows of one micro-batch (the batch checked); each stage's micro-batches
    // and the last stage's loss weights; the gradients zeroed and the accounting reset; the action
    // list run and timed; the mean loss.
    int64_t micro_batch_rows(const Tensor& inputs, const Tensor& targets) const;
    void prepare_micro_batches(const Tensor& inputs, const Tensor& targets, int64_t micro);
    void start_accounting();
    void run_actions(nn::ComputeCopyCache& compute_copies, StepLosses& losses, StepResult& result);
    double reduce_loss(const StepLosses& losses);
    // The action (or group of transfers) at `index` of this rank's list; returns the index after it.
    size_t run_action(size_t index, nn::ComputeCopyCache& compute_copies, StepLosses& losses, StepResult& result);
    // A stage on this rank takes its input (its output's gradient) from the stage before (after) it,
    // also on this rank.
    void hand_over_activation(LocalStage& stage, MicroBatch& mb);
    void hand_over_gradient(LocalStage& stage, MicroBatch& mb);
    // The Step action: the checks every rank agrees on, the gradient sums (replicas, ties), the
    // norm and clipping, the update, and the checks after it. Returns the gradient norm.
    double run_optimizer_step(nn::ComputeCopyCache& compute_copies, StepLosses& losses);
    // The last stage's rank sends the mean loss to every rank of the pipeline.
    double broadcast_loss(double loss_sum);

    // The stage's forward of one micro-batch, the loss on the last stage: recording a new tape
    // (`record`), or without one (re-materialization's first pass); the output, and the bytes the
    // forward left allocated beyond it.
    struct ForwardPass {
        Tensor output;
        size_t internals = 0;
    };
    ForwardPass forward_pass(LocalStage& stage, MicroBatch& mb, bool record);
    void run_forward(LocalStage& stage, MicroBatch& mb, bool last_micro_batch);
    Tensor loss_of(const Tensor& output, const MicroBatch& mb) const;
    // B (split = false), or I: the input's gradient, the weight closures queued on the tape.
    void run_backward(LocalStage& stage, MicroBatch& mb, bool split = false);
    // W: the queued weight closures, then the stash is freed.
    void run_weight_backward(LocalStage& stage, MicroBatch& mb);
    void release_stash(MicroBatch& mb);
    void run_group(size_t first, size_t last);
    double all_reduce_scalar(comm::Communicator& comm, double value, comm::ReduceOp op = comm::ReduceOp::Sum);
    // The last stage's loss per micro-batch (index = micro-batch), read from the device at once.
    std::vector<double> read_micro_batch_losses(const std::vector<MicroBatch>& mbs,
                                                const std::vector<int>& forward_order);
    // Before the optimizer step: reads this rank's queued GPU input checks and (last stage) checks
    // the losses are finite, then tells every rank and replica; if anything failed, every rank
    // throws before changing a weight (the failing one naming the cause).
    void agree_before_update(const std::vector<double>& losses, const std::vector<int>& forward_order);
    // After the optimizer step: every stage and replica learns whether any stage's parameters
    // became non-finite (a learning rate or epsilon beyond float32); if so every rank throws.
    void agree_parameters_are_finite();
    // This rank's distinct parameters (a parameter shared by two of its stages once).
    std::vector<Tensor> parameters() const;
    void all_reduce_gradients();
    // The embedding group's half of each tie: gradients summed, copies compared.
    void all_reduce_tied_gradients();
    void check_tied_copies_agree(const std::string& when);
    bool is_tied_copy(const Tensor& parameter) const;
    // The global gradient norm over every stage (all-reduced: the same on every rank); scales the
    // gradients down to grad_clip when that is on and exceeded. Throws on a non-finite norm.
    double norm_and_clip_gradients();
    bool holds_last_stage() const { return schedule_.rank_of(schedule_.stages - 1) == rank_; }
    bool is_first(int stage) const { return stage == 0; }
    bool is_last(int stage) const { return stage == schedule_.stages - 1; }

    comm::Communicator& comm_;
    comm::Communicator* data_parallel_;
    Schedule schedule_;
    std::vector<std::unique_ptr<LocalStage>> local_;  // the stages this rank runs, in stage order
    nn::Optimizer& optimizer_;
    LossFunction loss_;
    Rematerialization remat_;
    Device device_;
    DeviceTimeline timeline_;  // the step's action marks (CUDA events, reused step to step)
    int rank_;
    double grad_clip_ = 0;

    // The batch shape the stages' shapes were inferred for (see infer_shapes).
    Shape inferred_for_input_;

    // This rank's side of each tie held across two ranks (source on one, copy on the other).
    struct TiedHalf {
        std::string source, copy;  // the tie's names
        Tensor local;              // this rank's tensor: the source or the copy
        bool is_copy = false;
    };
    std::vector<TiedHalf> tied_;
    std::unique_ptr<comm::Communicator> embedding_group_;  // the two ranks of the tie; null elsewhere
    bool ties_across_ranks_ = false;  // on any rank of the pipeline (all take part in the check)
    bool tied_checked_ = false;

    int64_t steps_run_ = 0;  // keys the dropout masks of each step (restored on resume: set_steps_run)

    // Per-step accounting.
    size_t live_stash_bytes_ = 0;
    int live_micro_batches_ = 0;
    StageMemory memory_;
};

}  // namespace mp::pipeline
