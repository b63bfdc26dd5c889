// Closing a run: per-stage figures gathered over the pipeline, replica 0's stages gathered into the
// whole model on world rank 0 (trace, timeline, checksum, exports), the checksum broadcast so every
// rank's summary is whole, then the final line and the samples.
#include "train/finish.h"

#include <algorithm>

#include "nn/checkpoint.h"
#include "nn/hf_gpt2.h"
#include "nn/parameter_checksum.h"
#include "pipeline/gather.h"
#include "pipeline/timeline_svg.h"
#include "train/build.h"
#include "train/evaluation.h"

namespace mp::train {

namespace {

// Timings and every stage's bubble and memory, on every rank.
void summarize(Run& run, const LoopOutcome& outcome) {
    RunSummary& summary = run.result.summary;
    comm::Communicator& pipeline = *run.place.pipeline;
    const pipeline::StepResult& last = outcome.last;
    summary.steps = run.config.steps;
    summary.final_loss = last.loss;
    const double seconds_per_step = outcome.seconds_per_step;
    summary.tokens_per_second = seconds_per_step > 0 ? run.tokens_per_step() / seconds_per_step : 0;
    summary.samples_per_second = seconds_per_step > 0 ? run.config.train_batch_size / seconds_per_step : 0;
    auto gathered = [&](double value) { return pipeline::all_gather_values(pipeline, value, run.device); };
    summary.bubble_per_stage = gathered(last.trace.bubble_fraction());
    for (double v : gathered(static_cast<double>(last.memory.peak_allocator_bytes)))
        summary.peak_memory_per_stage.push_back(static_cast<size_t>(v));
    for (double v : gathered(static_cast<double>(last.memory.peak_stash_bytes)))
        summary.peak_stash_per_stage.push_back(static_cast<size_t>(v));
    summary.config = to_json(run.config);
}

// Replica 0 gathers its traces and its stages into the whole model; world rank 0 writes the trace,
// the timeline, the checksum and the exports. Returns the whole model there (null elsewhere).
std::shared_ptr<nn::Sequential> gather_and_write(Run& run, const LoopOutcome& outcome) {
    if (run.place.replica != 0) return nullptr;
    const TrainConfig& config = run.config;
    comm::Communicator& pipeline = *run.place.pipeline;
    std::vector<pipeline::StageTrace> traces = pipeline::gather_traces(pipeline, outcome.last.trace);
    std::shared_ptr<nn::Sequential> whole =
        pipeline::gather_model(pipeline, run.spec, run.stages.ranges, run.schedule.placement, run.stages.modules);
    if (run.world.rank() != 0) return whole;
    run.result.last_traces = traces;
    if (!config.trace.path.empty()) {
        pipeline::write_chrome_trace(traces, config.trace.path);
        run.log.line("trace: %s (open in https://ui.perfetto.dev)", config.trace.path.c_str());
    }
    if (!config.trace.svg.empty()) {
        const int K = run.place.ranks_per_pipeline, v = run.place.virtual_stages;
        pipeline::write_timeline_svg(traces,
                                     str(config.pipeline.schedule, ", ", K,
                                         v == 1 ? " stages, " : str(" ranks x ", v, " stages, "),
                                         config.micro_batches, " micro-batches: the last step as measured"),
                                     config.trace.svg);
        run.log.line("timeline: %s", config.trace.svg.c_str());
    }
    run.result.summary.parameter_checksum = nn::parameter_checksum(whole->named_parameters());
    if (!config.checkpoint.dir.empty()) {
        std::string path = config.checkpoint.dir + "/model.safetensors";
        nn::export_model(path, whole->named_parameters());
        run.log.line("export: the whole model as %s", path.c_str());
    }
    if (!config.exports.hf.empty()) {
        nn::export_hf_gpt2(config.exports.hf, whole->named_parameters(), gpt_config(config));
        run.log.line("export.hf: %s (model.safetensors + config.json for transformers)", config.exports.hf.c_str());
    }
    return whole;
}

// Every rank gets the checksum (a fixed-length hex string) from world rank 0.
void broadcast_checksum(Run& run) {
    std::string& checksum = run.result.summary.parameter_checksum;
    std::vector<int32_t> checksum_chars(64, 0);
    for (size_t i = 0; i < std::min<size_t>(64, checksum.size()); ++i) checksum_chars[i] = checksum[i];
    Tensor shared = Tensor::from_vector(checksum_chars, {64}, comm::staging_device(run.world, run.device));
    run.world.broadcast(shared, 0);
    checksum.clear();
    for (int32_t c : shared.to_vector<int32_t>())
        if (c != 0) checksum += static_cast<char>(c);
}

void print_final_line(Run& run) {
    const RunSummary& summary = run.result.summary;
    const std::string bubbles = bubble_percents(summary.bubble_per_stage);
    const std::string val_text =
        summary.val_losses.empty() ? std::string() : str(" | val loss ", fixed(summary.val_losses.back().second, 4));
    const std::string accuracy_text =
        summary.accuracies.empty()
            ? std::string()
            : str(" | held-out exact ", fixed(100 * summary.accuracies.back().accuracy(), 1), "%");
    run.final_log.line("final loss %.4f%s%s after %lld steps | %.0f tokens/s | %.1f samples/s | bubble %% by %s: %s | "
                       "checksum %s",
                       summary.final_loss, val_text.c_str(), accuracy_text.c_str(), (long long)run.config.steps,
                       summary.tokens_per_second, summary.samples_per_second, run.stage_word(), bubbles.c_str(),
                       summary.parameter_checksum.substr(0, 16).c_str());
}

// World rank 0: the held-out sums (problems never trained on, the model's answer and the right
// one), or else three samples of a GPT.
void print_answers_or_samples(Run& run, const LoopOutcome& outcome, nn::Sequential* whole) {
    if (run.world.rank() != 0) return;
    const TrainConfig& config = run.config;
    if (!outcome.held_out_answers.empty()) {
        const HeldOutAccuracy& final_accuracy = run.result.summary.accuracies.back();
        run.log.line("held-out sums after %lld steps: %lld of %lld exact (%.1f%%); the first few:",
                     (long long)config.steps, (long long)final_accuracy.correct, (long long)final_accuracy.total,
                     100 * final_accuracy.accuracy());
        for (size_t i = 0; i < std::min<size_t>(8, run.held_out.size()); ++i)
            run.log.line("%s", nn::answer_line(run.held_out[i], outcome.held_out_answers[i]).c_str());
    } else if (whole != nullptr && config.model.kind == ModelKind::Gpt) {
        for (int i = 0; i < 3; ++i)
            run.log.line("sample %d: %s", i,
                         sample_text(*whole, run.data.tokens, config.model.context,
                                     static_cast<uint64_t>(config.seed) + 100 + i)
                             .c_str());
    }
}

}  // namespace

void finish_run(Run& run, const LoopOutcome& outcome) {
    summarize(run, outcome);
    const std::shared_ptr<nn::Sequential> whole = gather_and_write(run, outcome);
    broadcast_checksum(run);
    print_final_line(run);
    print_answers_or_samples(run, outcome, whole.get());
    if (!run.config.summary.path.empty() && run.world.rank() == 0) {
        write_summary(run.result.summary, run.config.summary.path);
        run.log.line("summary: %s", run.config.summary.path.c_str());
    }
}

}  // namespace mp::train
