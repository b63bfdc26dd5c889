// The start-up report and the step lines, as rank 0 prints them; the per-stage numbers are gathered
// over the pipeline first (every rank takes part, printing or not).
#include "train/report.h"

#include "pipeline/gather.h"
#include "pipeline/render.h"

namespace mp::train {

namespace {

std::string layer_names(const nn::ModelSpec& spec, const pipeline::StageRange& range) {
    std::string first = spec.layers[range.begin].name, last = spec.layers[range.end - 1].name;
    return range.size() == 1 ? first : first + " .. " + last;
}

// The per-stage report's activation estimate: one micro-batch's stash, measured the way every step
// measures it (a collective: the stages agree on activation shapes first), by pipeline rank.
std::vector<double> stash_estimates(Run& run) {
    nn::Batch sample = run.data.batch(run.config, 0);
    const size_t estimate =
        run.engine->estimate_stash_bytes(run.place.shard_of(sample.ids), run.place.shard_of(sample.targets));
    return pipeline::all_gather_values(*run.place.pipeline, static_cast<double>(estimate), run.device);
}

void report_partition(Run& run, const std::vector<double>& stash) {
    const int v = run.place.virtual_stages;
    const std::vector<pipeline::StageRange>& ranges = run.stages.ranges;
    run.log.line("partition (%s):", name_of(run.config.pipeline.partition));
    for (int s = 0; s < run.schedule.stages; ++s) {
        int64_t params = 0;
        for (int64_t i = ranges[s].begin; i < ranges[s].end; ++i) params += run.spec.layers[i].parameters;
        const int rank = run.schedule.rank_of(s);
        const std::string on_rank = v == 1 ? std::string() : str(" (rank ", rank, ")");
        const std::string activations =
            v == 1 ? str(", activations ", bytes_str(stash[rank]), " per micro-batch") : std::string();
        run.log.line("  stage %d%s: layers %lld-%lld (%s), %lld parameters%s", s, on_rank.c_str(),
                     (long long)ranges[s].begin, (long long)ranges[s].end - 1, layer_names(run.spec, ranges[s]).c_str(),
                     (long long)params, activations.c_str());
    }
    if (v > 1)
        for (int rank = 0; rank < run.place.ranks_per_pipeline; ++rank)
            run.log.line("  rank %d: activations %s per micro-batch (all its stages)", rank,
                         bytes_str(stash[rank]).c_str());
}

}  // namespace

void report_start(Run& run) {
    const TrainConfig& config = run.config;
    const RunLog& log = run.log;
    const int K = run.place.ranks_per_pipeline, v = run.place.virtual_stages;
    log.line("minipipe: %s, %lld parameters", run.spec.description.c_str(), (long long)run.spec.total_parameters());
    if (run.stages.hf)
        log.line("init_from: %s (config %s)", run.stages.hf->weights_path.c_str(), run.stages.hf->config_path.c_str());
    const std::string stages_text = v == 1 ? str(K, " stages") : str(K, " pipeline ranks (", v, " stages each)");
    log.line("layout: %d ranks = %s x %d data-parallel replicas, %s schedule, %lld micro-batches of %lld, "
             "re-materialization %s, device %s, %s",
             run.world.size(), stages_text.c_str(), run.place.replicas, config.pipeline.schedule.c_str(),
             (long long)config.micro_batches, (long long)config.micro_batch_size,
             name_of(config.pipeline.rematerialization), run.device.str().c_str(), name_of(config.precision));
    if (config.model.kind != ModelKind::Mlp) log.line("data: %s", run.data.tokens.description.c_str());
    if (run.has_validation())
        log.line("validation: %s; %lld batches %s", run.data.validation.description.c_str(),
                 (long long)config.eval.batches,
                 config.eval.every > 0 ? str("before steps 0, ", config.eval.every, ", ", 2 * config.eval.every,
                                             ", ... and after the last").c_str()
                                       : "at the end");
    report_partition(run, stash_estimates(run));
    if (run.schedule.stages * static_cast<int>(config.micro_batches) <= 8 * 16)
        log.line("schedule:\n%s", pipeline::render(run.schedule).c_str());
}

void report_step(Run& run, int64_t step, const pipeline::StepResult& last, double seconds) {
    comm::Communicator& pipeline = *run.place.pipeline;
    const std::string bubble_text =
        bubble_percents(pipeline::all_gather_values(pipeline, last.trace.bubble_fraction(), run.device));
    // MFU on GPUs only (a GPT on a GPU of the peak table); the CPU has no peak to divide by.
    const double tokens = run.tokens_per_step();
    const std::string mfu_text =
        run.mfu.known() ? str(" | MFU ", fixed(100 * run.mfu.fraction(tokens, seconds), 1), "%") : std::string();
    run.log.line("step %5lld | loss %.4f | lr %.2e | norm %6.3f | %8.0f tokens/s | %7.1f ms%s | bubble %% by %s: %s",
                 (long long)step, last.loss, run.optimizer->lr(), last.grad_norm, tokens / seconds, 1000 * seconds,
                 mfu_text.c_str(), run.stage_word(), bubble_text.c_str());
    if (!run.config.log.memory) return;
    auto gathered = [&](size_t bytes) {
        return pipeline::all_gather_values(pipeline, static_cast<double>(bytes), run.device);
    };
    const std::vector<double> stash = gathered(last.memory.peak_stash_bytes);
    const std::vector<double> peak = gathered(last.memory.peak_allocator_bytes);
    const std::vector<double> per_micro_batch = gathered(last.memory.stash_bytes_per_micro_batch);
    for (int s = 0; s < run.place.ranks_per_pipeline; ++s)
        run.log.line("        %s %d: stash %s per micro-batch, peak stash %s, peak allocator %s", run.stage_word(), s,
                     bytes_str(per_micro_batch[s]).c_str(), bytes_str(stash[s]).c_str(), bytes_str(peak[s]).c_str());
}

}  // namespace mp::train
