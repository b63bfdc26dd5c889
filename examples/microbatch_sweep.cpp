// microbatch_sweep: the seed notebook's experiment. The RealisticModel (Embedding(vocab, H) →
// blocks × (Linear–ReLU–Linear) → Linear(H, vocab)) at a global batch of 64 sequences: first the
// one-rank baseline, then the pipeline over every rank with micro-batch sizes 4, 8, 16 and 32, for
// each schedule of --schedules (gpipe and 1f1b by default, any registered ones, or all). One
// table: samples/s, the measured bubble, the simulator's from the per-stage F, B, I, W and
// transfer times measured in the same run (and without a barrier between steps), the closed form
// at F = I = W, and the peak stash.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "comm/deadline.h"
#include "examples/support/trainer_main.h"
#include "pipeline/schedule.h"
#include "pipeline/simulate.h"
#include "train/build.h"
#include "train/trainer.h"

using namespace mp;
using namespace mp::pipeline;
using namespace mp::train;

namespace {

// "gpipe,1f1b" or "all" into registry names; throws naming an unknown one.
std::vector<std::string> parse_schedules(const std::string& list) {
    if (list == "all") return schedule_kinds();
    std::vector<std::string> names;
    std::stringstream in(list);
    for (std::string name; std::getline(in, name, ',');) {
        schedule_info(name);  // throws naming the choices
        names.push_back(name);
    }
    MP_REQUIRE(!names.empty(), "--schedules: no schedule named in '", list, "'");
    return names;
}

// Mean F, B, I, W time of each stage in the measured traces (B = I + W where the backward ran
// split, I = W = B / 2 where it ran whole), and the shortest communication group as the transfer
// estimate, in ms.
Costs measured_costs(const std::vector<StageTrace>& traces, int stages) {
    std::vector<double> sum[4], count[4];
    for (auto& v : sum) v.assign(stages, 0.0);
    for (auto& v : count) v.assign(stages, 0.0);
    double shortest_transfer = 0;
    bool any_transfer = false;
    for (const StageTrace& trace : traces) {
        for (const TraceEvent& e : trace.events) {
            const double duration = (e.end_us - e.start_us) / 1000.0;
            const Action& first = e.actions.front();
            int kind = -1;
            switch (first.kind) {
                case ActionKind::Forward: kind = 0; break;
                case ActionKind::Backward: kind = 1; break;
                case ActionKind::InputBackward: kind = 2; break;
                case ActionKind::WeightBackward: kind = 3; break;
                case ActionKind::SendActivation:
                case ActionKind::RecvActivation:
                case ActionKind::SendGradient:
                case ActionKind::RecvGradient:
                    shortest_transfer = any_transfer ? std::min(shortest_transfer, duration) : duration;
                    any_transfer = true;
                    break;
                case ActionKind::OptimizerStep: break;
            }
            if (kind < 0) continue;
            sum[kind][static_cast<size_t>(first.stage)] += duration;
            count[kind][static_cast<size_t>(first.stage)] += 1;
        }
    }
    auto mean_of = [&](int kind, int stage) {
        return count[kind][stage] > 0 ? sum[kind][stage] / count[kind][stage] : 0.0;
    };
    Costs costs;
    for (int stage = 0; stage < stages; ++stage) {
        costs.forward.push_back(mean_of(0, stage));
        const bool split = count[2][stage] > 0;
        const double backward = split ? mean_of(2, stage) + mean_of(3, stage) : mean_of(1, stage);
        costs.backward.push_back(backward);
        costs.input_backward.push_back(split ? mean_of(2, stage) : backward / 2);
        costs.weight_backward.push_back(split ? mean_of(3, stage) : backward / 2);
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
    const ExtraFlag schedules_flag{"--schedules", "LIST",
                                   "schedules to sweep: registered names, comma-separated, or all", "gpipe,1f1b",
                                   [](const std::string& list) { parse_schedules(list); }};
    return examples::trainer_main(
        argc, argv, "microbatch_sweep",
        "The seed experiment: one-rank baseline, then each schedule over every rank at micro-batch sizes 4..32.",
        "examples/configs/microbatch_sweep.json",
        [](const TrainConfig& config, comm::Communicator& world, int gpu, const TrainerCommandLine& command_line) {
            const int K = world.size();
            const int64_t global_batch = config.train_batch_size;
            const std::vector<std::string> schedules = parse_schedules(command_line.extra.at("--schedules"));
            // What the sweep will run, checked before the baseline spends any time.
            MP_REQUIRE(config.model.kind == ModelKind::Realistic, "microbatch_sweep runs the seed's RealisticModel: "
                       "model.kind must be \"realistic\", got \"", name_of(config.model.kind), "\"");
            for (const std::string& schedule : schedules) {
                const int v = schedule_info(schedule).default_virtual_stages;
                MP_REQUIRE(K * v <= model_layer_count(config), "microbatch_sweep: ", K, " ranks make ", K * v,
                           " pipeline stages for ", schedule, " but the model has only ", model_layer_count(config),
                           " layers (the embedding, the blocks and the head): use fewer ranks or more blocks");
            }
            std::vector<int64_t> micro_batch_sizes;
            for (int64_t micro_batch_size : {4, 8, 16, 32})
                if (global_batch % micro_batch_size == 0) micro_batch_sizes.push_back(micro_batch_size);
                else if (world.rank() == 0)
                    std::printf("microbatch_sweep: skipping micro-batches of %lld: the global batch of %lld does not "
                                "split into them\n", (long long)micro_batch_size, (long long)global_batch);
            MP_REQUIRE(!micro_batch_sizes.empty(), "microbatch_sweep: the global batch of ", global_batch,
                       " splits into none of the micro-batch sizes 4, 8, 16, 32");
            if (world.rank() == 0)
                std::printf("microbatch_sweep: realistic model, hidden %lld, %lld blocks, vocab %lld, global batch "
                            "%lld x %lld tokens, %d ranks\n",
                            (long long)config.model.hidden, (long long)config.model.blocks,
                            (long long)config.model.vocab, (long long)global_batch, (long long)config.model.context, K);
            struct Row {
                std::string name;
                int stages, micro_batches;
                double samples_per_second, bubble, predicted, predicted_steady, theory;
                int peak_stashed;
                double peak_stash_mib;
                std::string costs;  // what the simulator was fed
            };
            std::vector<Row> rows;

            // The baseline: the whole model on rank 0 alone, the global batch in one micro-batch.
            std::unique_ptr<comm::Communicator> solo = world.split(world.rank() == 0 ? 0 : -1);
            if (solo) {
                TrainConfig baseline = config;
                baseline.pipeline.stages = 1;
                baseline.pipeline.virtual_stages = 1;
                baseline.pipeline.schedule = "1f1b";
                baseline.micro_batches = 1;
                baseline.micro_batch_size = global_batch;
                baseline.train_batch_size = global_batch;
                baseline.pipeline.partition = PartitionMethod::Uniform;
                TrainResult r = train::train(baseline, *solo, gpu, false);
                const std::vector<size_t>& stash = r.summary.peak_stash_per_stage;
                rows.push_back({"one rank", 1, 1, r.summary.samples_per_second, 0, 0, 0, 0, 1,
                                stash.empty() ? 0.0 : stash[0] / 1048576.0, ""});
            }
            // The others wait for the baseline, however long it trains: not a transfer that could
            // hang, so not under comm.timeout_s (a rank that dies still ends the job).
            const double timeout_s = world.timeout_seconds();
            world.set_timeout_seconds(comm::detail::kMaxTimeoutSeconds);
            world.barrier();
            world.set_timeout_seconds(timeout_s);

            for (const std::string& schedule : schedules)
                for (int64_t micro_batch_size : micro_batch_sizes) {
                    const ScheduleInfo& info = schedule_info(schedule);
                    const int v = info.default_virtual_stages;
                    const int M = static_cast<int>(global_batch / micro_batch_size);
                    const std::string broken = info.rule(K, M, v);
                    if (!broken.empty()) {
                        if (world.rank() == 0)
                            std::printf("microbatch_sweep: skipping %s at micro-batches of %lld: %s\n",
                                        schedule.c_str(), (long long)micro_batch_size, broken.c_str());
                        continue;
                    }
                    TrainConfig run = config;
                    run.pipeline.stages = K;
                    run.pipeline.virtual_stages = v;
                    run.pipeline.schedule = schedule;
                    run.micro_batch_size = micro_batch_size;
                    run.micro_batches = M;
                    run.train_batch_size = global_batch;
                    TrainResult r = train::train(run, world, gpu, false);
                    if (world.rank() != 0) continue;
                    Schedule plan = make_schedule(schedule, K, M, v);
                    const Costs costs = measured_costs(r.last_traces, plan.stages);
                    SimulationResult predicted = simulate(plan, costs);
                    std::string costs_text;
                    auto list = [](const std::vector<double>& values) {
                        std::string text;
                        for (double v : values) text += str(text.empty() ? "" : " ", std::lround(100 * v) / 100.0);
                        return text;
                    };
                    costs_text = str("F [", list(costs.forward), "] B [", list(costs.backward), "] I [",
                                     list(costs.input_backward), "] W [", list(costs.weight_backward), "] transfer ",
                                     std::lround(1000 * costs.transfer) / 1000.0);
                    const double stash_bytes = *std::max_element(r.summary.peak_stash_per_stage.begin(),
                                                                 r.summary.peak_stash_per_stage.end());
                    rows.push_back({schedule + " mb " + std::to_string(micro_batch_size), K * v, M,
                                    r.summary.samples_per_second, mean(r.summary.bubble_per_stage),
                                    mean(predicted.bubble_fraction), mean(predicted.steady_bubble_fraction),
                                    info.unit_cost_bubble(K, M, v),
                                    *std::max_element(predicted.peak_stashed.begin(), predicted.peak_stashed.end()),
                                    stash_bytes / 1048576.0, costs_text});
                }
            if (world.rank() == 0) {
                std::printf("\n| run | stages | micro-batches | samples/s | measured bubble | simulated bubble | "
                            "simulated, no step barrier | closed form at F=I=W | peak stash (micro-batches) | "
                            "peak stash MiB |\n");
                std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
                for (const Row& row : rows) {
                    const std::string theory = std::isnan(row.theory) ? "-" : str(std::lround(100 * row.theory), "%");
                    std::printf("| %s | %d | %d | %.1f | %.0f%% | %.0f%% | %.0f%% | %s | %d | %.1f |\n",
                                row.name.c_str(), row.stages, row.micro_batches, row.samples_per_second,
                                100 * row.bubble, 100 * row.predicted, 100 * row.predicted_steady, theory.c_str(),
                                row.peak_stashed, row.peak_stash_mib);
                }
                std::printf("\nper-stage costs the simulator was fed (ms, means over the last step):\n");
                for (const Row& row : rows)
                    if (!row.costs.empty()) std::printf("  %s: %s\n", row.name.c_str(), row.costs.c_str());
            }
            return 0;
        },
        {schedules_flag});
}
