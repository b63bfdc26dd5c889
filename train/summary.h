// The machine-readable end-of-run summary every trainer can write (--summary FILE): final loss,
// validation losses, held-out accuracy, throughput, bubble / peak memory / peak stash per stage, the
// parameter checksum and the config, so two runs (or a run and its resumed twin) can be compared by
// a script without parsing logs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace mp::train {

// Held-out exact-match accuracy (eval.accuracy, the synthetic additions) after `step` steps.
struct HeldOutAccuracy {
    int64_t step = 0, correct = 0, total = 0;
    double accuracy() const { return total > 0 ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

struct RunSummary {
    double final_loss = 0;                     // mean loss of the last step (NaN is written as null)
    // Validation loss (data.val_path): every evaluation as (steps trained before it, loss), in order;
    // empty when the run has no validation data.
    std::vector<std::pair<int64_t, double>> val_losses;
    // eval.accuracy: every scoring of the held-out sums, in order; empty without one.
    std::vector<HeldOutAccuracy> accuracies;
    double tokens_per_second = 0;
    double samples_per_second = 0;
    std::vector<double> bubble_per_stage;      // fraction in [0, 1], [pipeline rank] (all its stages together)
    std::vector<size_t> peak_memory_per_stage; // bytes, the device allocator's peak, [stage]
    std::vector<size_t> peak_stash_per_stage;  // bytes of stashed activations at most, [stage]
    std::string parameter_checksum;            // nn::parameter_checksum over every stage's parameters
    int64_t steps = 0;
    nlohmann::json config = nlohmann::json::object();  // the run's options, as the trainer saw them
};

// {"format": "minipipe-run-summary", "version": 1, "final_loss", "val_loss" (the last evaluation's,
//  null without one), "val_losses" ([{"step", "loss"}], [] without validation data), "accuracy"
//  (the last held-out exact-match fraction, null without one), "accuracies" ([{"step", "correct",
//  "total", "accuracy"}]),
//  "tokens_per_second", "samples_per_second", "bubble_per_stage", "peak_memory_per_stage",
//  "peak_stash_per_stage", "parameter_checksum", "steps", "config"}. The two val fields may be
//  absent when read (summaries written before them), as may the two accuracy fields.
nlohmann::json to_json(const RunSummary& summary);
// The inverse of to_json (a null loss or rate reads back as NaN). Throws std::invalid_argument
// naming the first missing or mistyped field.
RunSummary run_summary_from_json(const nlohmann::json& json);

// Writes to_json(summary), indented, to `path`: first to "<path>.tmp", then renamed over `path`,
// so a reader never sees half a file. Throws std::invalid_argument naming the path on failure.
void write_summary(const RunSummary& summary, const std::string& path);

}  // namespace mp::train
