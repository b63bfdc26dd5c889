// Checkpoints of a pipeline run: one safetensors file per pipeline rank, an index naming the layer
// ranges, and metadata (the learning-rate curve, the stage placement) that a resume must match.
#include "train/checkpointing.h"

#include <chrono>
#include <filesystem>

#include "base/format.h"
#include "nn/checkpoint.h"
#include "pipeline/gather.h"
#include "train/build.h"

namespace mp::train {

int64_t resume_from_checkpoint(Run& run) {
    const TrainConfig& config = run.config;
    const std::string& checkpoint_dir = config.checkpoint.dir;
    // A resume that finds nothing is an error (a typo in the directory must not silently
    // start afresh and then write there), as is one with nothing left to train.
    const std::string index = nn::checkpoint_index_path(checkpoint_dir);
    MP_REQUIRE(std::filesystem::exists(index), "checkpoint.resume is true but '", checkpoint_dir,
               "' holds no checkpoint (no ", index, "); check checkpoint.dir, or set checkpoint.resume=false to "
               "start afresh");
    nn::SafetensorsMetadata saved_run;
    const int64_t start_step = nn::load_stage_checkpoint(
        checkpoint_dir, run.place.pipeline_rank, run.place.ranks_per_pipeline, *run.stages.checkpoint_module,
        *run.optimizer, &saved_run,
        {{"stage_placement", run.stages.placement,
          str("the ranks of stages 0, 1, ... (this run: schedule ", config.pipeline.schedule,
              ", pipeline.virtual_stages ", run.place.virtual_stages,
              "); resume with the schedule and virtual_stages it was saved with")}});
    MP_REQUIRE(saved_run["lr_curve"] == lr_curve(config), "the checkpoint in '", checkpoint_dir,
               "' was trained with the learning-rate curve (", saved_run["lr_curve"], ") but this run's is (",
               lr_curve(config), "): resuming would change the curve; keep optimizer.lr, the lr_schedule keys "
               "and (with cosine) steps as they were");
    MP_REQUIRE(start_step < config.steps, "the checkpoint in '", checkpoint_dir, "' is at step ", start_step,
               ", which already reaches steps = ", config.steps, ": nothing to train (raise steps to continue)");
    run.engine->set_steps_run(start_step);
    run.world.barrier();  // every rank has loaded (a rank that failed has ended the job) before saying so
    run.log.line("resumed from %s at step %lld", checkpoint_dir.c_str(), (long long)start_step);
    return start_step;
}

void save_checkpoint(Run& run, int64_t step) {
    if (run.place.replica != 0) return;  // replicas hold identical parameters
    const std::string& checkpoint_dir = run.config.checkpoint.dir;
    comm::Communicator& pipeline = *run.place.pipeline;
    const int K = run.place.ranks_per_pipeline, pipeline_rank = run.place.pipeline_rank;
    std::filesystem::create_directories(checkpoint_dir);
    // The index's layer ranges are one per file: with several stages per rank they are in the
    // placement and the partition, which a resume reproduces.
    std::vector<nn::LayerRange> file_ranges;
    if (run.place.virtual_stages == 1)
        for (const pipeline::StageRange& r : run.stages.ranges) file_ranges.emplace_back(r.begin, r.end);
    const auto begin = std::chrono::steady_clock::now();
    nn::save_stage_checkpoint(checkpoint_dir, pipeline_rank, K, *run.stages.checkpoint_module, *run.optimizer, step,
                              file_ranges,
                              {{"lr_curve", lr_curve(run.config)}, {"stage_placement", run.stages.placement}});
    const double seconds = seconds_since(begin);
    const std::string file = nn::stage_checkpoint_path(checkpoint_dir, pipeline_rank, K, step);
    const double bytes = static_cast<double>(std::filesystem::file_size(file));
    pipeline.barrier();  // every stage's file is in place before the step is published
    if (pipeline_rank == 0 && K > 1) nn::write_checkpoint_index(checkpoint_dir, K, step, file_ranges);
    pipeline.barrier();
    // How long each stage's file took: a line per file once a save is slow enough to wait for.
    const std::vector<double> all_bytes = pipeline::all_gather_values(pipeline, bytes, run.device);
    const std::vector<double> all_seconds = pipeline::all_gather_values(pipeline, seconds, run.device);
    double total_bytes = 0, slowest = 0;
    for (int r = 0; r < K; ++r) total_bytes += all_bytes[r], slowest = std::max(slowest, all_seconds[r]);
    run.log.line("checkpoint: step %lld saved to %s (%d files, %s in %.2f s)", (long long)step, checkpoint_dir.c_str(),
                 K, bytes_str(total_bytes).c_str(), slowest);
    if (slowest < 1.0) return;
    for (int r = 0; r < K; ++r)
        run.log.line("  %s: %s in %.2f s (%s/s)",
                     std::filesystem::path(nn::stage_checkpoint_path(checkpoint_dir, r, K, step)).filename().c_str(),
                     bytes_str(all_bytes[r]).c_str(), all_seconds[r],
                     bytes_str(all_bytes[r] / std::max(all_seconds[r], 1e-9)).c_str());
}

}  // namespace mp::train
