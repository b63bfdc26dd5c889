// The step loop: one optimizer step on this replica's shard, timed (the first step, which includes
// the warm-up, only when it is the only one), and the evaluations and checkpoints due around it.
#include "train/step_loop.h"

#include <chrono>

#include "base/format.h"
#include "train/build.h"
#include "train/checkpointing.h"
#include "train/evaluation.h"
#include "train/report.h"

namespace mp::train {

namespace {

// One optimizer step on this replica's shard of the global batch of `step`; returns its seconds.
double train_step(Run& run, int64_t step, pipeline::StepResult& result) {
    run.optimizer->set_lr(learning_rate(run.config, step));
    const nn::Batch batch = run.data.batch(run.config, step);
    const Tensor inputs = run.place.shard_of(batch.ids);
    const Tensor targets = run.place.shard_of(batch.targets);
    const auto begin = std::chrono::steady_clock::now();
    try {
        result = run.engine->step(inputs, targets);
    } catch (const std::exception& e) {
        throw std::runtime_error(str("step ", step, ": ", e.what()));  // which step, for every failure
    }
    const double seconds = seconds_since(begin);
    run.result.losses.push_back(result.loss);
    return seconds;
}

}  // namespace

LoopOutcome run_steps(Run& run, int64_t start_step) {
    const TrainConfig& config = run.config;
    const bool saves = !config.checkpoint.dir.empty();
    LoopOutcome outcome;
    double timed_seconds = 0;
    int64_t timed_steps = 0;
    for (int64_t step = start_step; step < config.steps; ++step) {
        if (run.has_validation() && config.eval.every > 0 && step % config.eval.every == 0)
            evaluate_validation(run, step);
        const double seconds = train_step(run, step, outcome.last);
        if (step > start_step || config.steps - start_step == 1) {  // the first step includes warm-up
            timed_seconds += seconds;
            ++timed_steps;
        }
        const bool log_now = (config.log.every > 0 && step % config.log.every == 0) || step + 1 == config.steps;
        if (log_now) report_step(run, step, outcome.last, seconds);
        if (log_now && !run.held_out.empty()) outcome.held_out_answers = score_held_out(run, step + 1);
        const bool save_now = config.checkpoint.every > 0 && (step + 1) % config.checkpoint.every == 0;
        if (saves && save_now && step + 1 < config.steps) save_checkpoint(run, step + 1);
    }
    if (saves && config.steps > start_step) save_checkpoint(run, config.steps);
    if (run.has_validation()) evaluate_validation(run, config.steps);  // the final validation loss, always
    outcome.seconds_per_step = timed_steps > 0 ? timed_seconds / timed_steps : 0;
    return outcome;
}

}  // namespace mp::train
