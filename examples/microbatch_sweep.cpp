// microbatch_sweep: the seed notebook's experiment. The RealisticModel (Embedding(vocab, H) →
// blocks × (Linear–ReLU–Linear) → Linear(H, vocab)) at a global batch of 64 sequences: first the
// one-rank baseline, then the pipeline over every rank with micro-batch sizes 4, 8, 16 and 32, for
// gpipe and 1f1b. One table: samples/s, measured bubble, the theory (K−1)/(M+K−1), and the
// simulator's prediction from the per-stage forward/backward times measured in the same run.
#include <algorithm>
#include <cstdio>

#include "comm/deadline.h"
#include "examples/support/trainer_main.h"
#include "pipeline/schedule.h"
#include "pipeline/simulate.h"
#include "pipeline/trainer.h"

using namespace mp;
using namespace mp::pipeline;

namespace {

// Mean forward and backward time per stage in the measured traces, and the mean time of the
// shortest communication group as the transfer estimate.
Costs measured_costs(const std::vector<StageTrace>& traces) {
    Costs costs;
    double shortest_transfer = 0;
    bool any_transfer = false;
    for (const StageTrace& trace : traces) {
        double forward = 0, backward = 0;
        int forwards = 0, backwards = 0;
        for (const TraceEvent& e : trace.events) {
            double duration = (e.end_us - e.start_us) / 1000.0;  // ms
            const Action& first = e.actions.front();
            switch (first.kind) {
                case ActionKind::Forward: forward += duration, ++forwards; break;
                case ActionKind::Backward: backward += duration, ++backwards; break;
                case ActionKind::SendActivation:
                case ActionKind::RecvActivation:
                case ActionKind::SendGradient:
                case ActionKind::RecvGradient:
                    shortest_transfer = any_transfer ? std::min(shortest_transfer, duration) : duration;
                    any_transfer = true;
                    break;
                case ActionKind::InputBackward:   // not run by the engine yet
                case ActionKind::WeightBackward:
                case ActionKind::OptimizerStep: break;
            }
        }
        costs.forward.push_back(forwards ? forward / forwards : 0);
        costs.backward.push_back(backwards ? backward / backwards : 0);
        costs.input_backward.push_back(costs.backward.back() / 2);
        costs.weight_backward.push_back(costs.backward.back() / 2);
    }
    costs.transfer = shortest_transfer;
    return costs;
}

double mean(const std::vector<double>& values) {
    double total = 0;
    for (double v : values) total += v;
    return values.empty() ? 0 : total / values.size();
}

}  // namespace

int main(int argc, char** argv) {
    return examples::trainer_main(
        argc, argv, "microbatch_sweep",
        "The seed experiment: one-rank baseline, then gpipe and 1f1b over every rank at micro-batch sizes 4..32.",
        "examples/configs/microbatch_sweep.json",
        [](const TrainConfig& config, comm::Communicator& world, int gpu, const examples::TrainerCommandLine&) {
            const int K = world.size();
            const int64_t global_batch = config.train_batch_size;
            // What the sweep will run, checked before the baseline spends any time.
            MP_REQUIRE(config.model.kind == "realistic", "microbatch_sweep runs the seed's RealisticModel: model.kind must be "
                       "\"realistic\", got \"", config.model.kind, "\"");
            MP_REQUIRE(K <= model_layer_count(config), "microbatch_sweep: ", K, " ranks make ", K,
                       " pipeline stages but the model has only ", model_layer_count(config),
                       " layers (model.blocks + 2): use fewer ranks or more blocks");
            std::vector<int64_t> micro_batch_sizes;
            for (int64_t micro_batch_size : {4, 8, 16, 32})
                if (global_batch % micro_batch_size == 0) micro_batch_sizes.push_back(micro_batch_size);
                else if (world.rank() == 0)
                    std::printf("microbatch_sweep: skipping micro-batches of %lld: the global batch of %lld does not split "
                                "into them\n", (long long)micro_batch_size, (long long)global_batch);
            MP_REQUIRE(!micro_batch_sizes.empty(), "microbatch_sweep: the global batch of ", global_batch,
                       " splits into none of the micro-batch sizes 4, 8, 16, 32");
            if (world.rank() == 0)
                std::printf("microbatch_sweep: realistic model, hidden %lld, %lld blocks, vocab %lld, global batch %lld x %lld tokens, %d ranks\n",
                            (long long)config.model.hidden, (long long)config.model.blocks, (long long)config.model.vocab,
                            (long long)global_batch, (long long)config.model.context, K);
            struct Row {
                std::string name;
                int stages, micro_batches;
                double samples_per_second, bubble, theory, predicted;
            };
            std::vector<Row> rows;

            // The baseline: the whole model on rank 0 alone, the global batch in one micro-batch.
            std::unique_ptr<comm::Communicator> solo = world.split(world.rank() == 0 ? 0 : -1);
            if (solo) {
                TrainConfig baseline = config;
                baseline.pipeline.stages = 1;
                baseline.micro_batches = 1;
                baseline.micro_batch_size = global_batch;
                baseline.train_batch_size = global_batch;
                baseline.pipeline.partition = "uniform";
                TrainResult r = train(baseline, *solo, gpu, false);
                rows.push_back({"one rank", 1, 1, r.summary.samples_per_second, 0, 0, 0});
            }
            // The others wait for the baseline, however long it trains: not a transfer that could
            // hang, so not under comm.timeout_s (a rank that dies still ends the job).
            const double timeout_s = world.timeout_seconds();
            world.set_timeout_seconds(comm::detail::kMaxTimeoutSeconds);
            world.barrier();
            world.set_timeout_seconds(timeout_s);

            for (const std::string schedule : {"gpipe", "1f1b"})
                for (int64_t micro_batch_size : micro_batch_sizes) {
                    TrainConfig run = config;
                    run.pipeline.stages = K;
                    run.pipeline.schedule = schedule;
                    run.micro_batch_size = micro_batch_size;
                    run.micro_batches = global_batch / micro_batch_size;
                    run.train_batch_size = global_batch;
                    TrainResult r = train(run, world, gpu, false);
                    if (world.rank() != 0) continue;
                    int M = static_cast<int>(run.micro_batches);
                    Schedule plan = make_schedule(schedule, K, M);
                    SimulationResult predicted = simulate(plan, measured_costs(r.last_traces));
                    rows.push_back({schedule + " mb " + std::to_string(micro_batch_size), K, M, r.summary.samples_per_second,
                                    mean(r.summary.bubble_per_stage), double(K - 1) / (M + K - 1),
                                    mean(predicted.bubble_fraction)});
                }
            if (world.rank() == 0) {
                std::printf("\n| run | stages | micro-batches | samples/s | measured bubble | theory (K-1)/(M+K-1) | simulated bubble |\n");
                std::printf("|---|---|---|---|---|---|---|\n");
                for (const Row& row : rows)
                    std::printf("| %s | %d | %d | %.1f | %.0f%% | %.0f%% | %.0f%% |\n", row.name.c_str(), row.stages,
                                row.micro_batches, row.samples_per_second, 100 * row.bubble, 100 * row.theory,
                                100 * row.predicted);
            }
            return 0;
        });
}
