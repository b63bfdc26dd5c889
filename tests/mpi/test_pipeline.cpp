// Multi-rank tests of the pipeline engine (run under mpirun -np 2 and -np 4, CPU tensors, MPI
// transport): exact equivalence with one-process training for every registered schedule, every
// re-materialization mode, K = 1..4 stages (as many as the job has ranks), M in {1, 2, 3, 4, 8},
// uniform and uneven partitions, on a small GPT and an MLP; bf16 mixed precision bit for bit
// against one process; the stash accounting; the trace.
//
// Equivalence tolerance: the pipeline sums each parameter's gradient over micro-batches, while
// one-process training computes it in one GEMM over the whole batch; the two differ by float32
// reassociation (~1e-7 relative). Three SGD-with-momentum steps carry that into the parameters
// unamplified (the update is linear in the gradient), so every parameter must agree within
// 1e-5 relative (plus 1e-7 absolute for parameters near zero), and so must the losses.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <limits>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "comm/make_communicator.h"
#include "comm/mpi_runtime.h"
#include "nn/layers.h"
#include "nn/models.h"
#include "nn/optim.h"
#include "pipeline/engine.h"
#include "pipeline/gather.h"
#include "pipeline/partition.h"
#include "pipeline/simulate.h"
#include "tests/mpi/multi_rank_main.h"
#include "tests/mpi/pipeline_support.h"
#include "tests/support/test_util.h"

namespace mp::pipeline {
namespace {

std::unique_ptr<comm::Communicator> g_world;

struct Problem {
    std::string name;
    nn::ModelSpec spec;
    LossFunction loss;
    Tensor inputs, targets;  // the global batch of 24 rows: divisible by every M tested
};

Problem gpt_problem(double dropout = 0.0) {
    nn::GPTConfig config;
    config.vocab = 23;
    config.context = 6;
    config.layers = 3;
    config.heads = 2;
    config.channels = 16;
    config.seed = 5;
    config.dropout = dropout;
    Tensor ids = mp::testing::random_ids({24, 6}, 23, 11);
    Tensor targets = mp::testing::random_ids({24, 6}, 23, 12);
    std::vector<int32_t> t = targets.to_vector<int32_t>();
    t[7] = t[40] = -100;  // ignored targets make the micro-batches' counts differ
    return {"gpt", nn::gpt_spec(config), cross_entropy_loss(), ids, Tensor::from_vector(t, {24, 6})};
}

Problem mlp_problem() {
    return {"mlp", nn::mlp_spec({8, 16, 16, 16, 4}, 7), mse_loss(), mp::testing::random_tensor({24, 8}, 13),
            mp::testing::random_tensor({24, 4}, 14)};
}

constexpr int kSteps = 3;
const nn::SGDOptions kSgd{0.1, 0.9, 0.0};

// One-process training: the reference. Every parameter by name and the losses.
using Reference = mp::testing::OneProcessTraining;

Reference train_one_process(const Problem& problem, double grad_clip = 0, Device device = Device::cpu()) {
    return mp::testing::train_one_process(problem.spec, problem.loss, problem.inputs, problem.targets, kSgd, kSteps,
                                          grad_clip, device);
}

std::vector<StageRange> uneven(int64_t layers, int stages) {
    std::vector<int64_t> balance(stages, 1);  // single-layer stages, and the rest on the last
    balance.back() = layers - (stages - 1);
    return explicit_partition(balance, layers);
}

struct RunResult {
    std::vector<double> losses;
    std::vector<StepResult> steps;
    std::shared_ptr<nn::Sequential> stage;                 // the rank's first (or only) stage
    std::vector<std::shared_ptr<nn::Sequential>> modules;  // every stage the rank holds, in stage order
};

// Trains kSteps steps with the schedule `schedule_kind` over `ranges` (one per stage of the
// schedule: K · virtual_stages of them).
RunResult train_pipeline(comm::Communicator& group, const Problem& problem, const std::vector<StageRange>& ranges,
                         const std::string& schedule_kind, int micro_batches, Rematerialization remat,
                         double grad_clip = 0, Device device = Device::cpu(), int virtual_stages = 1) {
    const Schedule schedule = make_schedule(schedule_kind, group.size(), micro_batches, virtual_stages);
    RunResult run;
    std::vector<Tensor> parameters;
    for (int stage : schedule.stages_of(group.rank())) {
        const StageRange range = ranges.at(static_cast<size_t>(stage));
        run.modules.push_back(problem.spec.build(range.begin, range.end));
        run.modules.back()->to(device);
        for (const Tensor& p : run.modules.back()->parameters()) parameters.push_back(p);
    }
    run.stage = run.modules.front();
    nn::SGD sgd(parameters, kSgd);
    Engine engine(group, run.modules, schedule, sgd, problem.loss, remat, device);
    engine.set_grad_clip(grad_clip);
    for (int step = 0; step < kSteps; ++step) {
        run.steps.push_back(engine.step(problem.inputs, problem.targets));
        run.losses.push_back(run.steps.back().loss);
    }
    return run;
}

// The pipeline's losses and this stage's parameters against one-process training, at the
// tolerance derived at the top of this file.
void expect_matches(const RunResult& run, const Reference& ref, const std::string& what) {
    for (int step = 0; step < kSteps; ++step)
        EXPECT_NEAR(run.losses[step], ref.losses[step], 1e-5 * std::fabs(ref.losses[step])) << what << " step " << step;
    for (const std::shared_ptr<nn::Sequential>& module : run.modules)
        for (auto& [name, p] : module->named_parameters())
            mp::testing::expect_close(p, ref.parameters.at(name), 1e-5, 1e-7, what + " parameter " + name);
}

class Pipeline : public mp::testing::AllRanksTest {};

TEST_F(Pipeline, EquivalentToOneProcessTraining) {
    int configurations = 0, several_stages_per_rank = 0;
    for (const Problem& problem : {gpt_problem(), mlp_problem()}) {
        Reference ref = train_one_process(problem);
        mp::testing::for_each_pipeline_size(*g_world, 1, problem.spec.size(), {1, 2, 3, 4, 8}, [&](const auto& size) {
            const int stages = size.stages(), v = size.virtual_stages;
            for (const std::string partitioning : {"uniform", "uneven"}) {
                const std::vector<StageRange> ranges = partitioning == "uniform"
                                                           ? uniform_partition(problem.spec.size(), stages)
                                                           : uneven(problem.spec.size(), stages);
                for (Rematerialization remat :
                     {Rematerialization::Never, Rematerialization::Always, Rematerialization::ExceptLast}) {
                    ++configurations;
                    several_stages_per_rank += v > 1 ? 1 : 0;
                    std::string what = str(problem.name, " K=", size.ranks, " v=", v, " M=", size.micro_batches, " ",
                                           size.schedule.name, " ", name_of(remat), " ", partitioning);
                    expect_matches(train_pipeline(size.group, problem, ranges, size.schedule.name, size.micro_batches,
                                                  remat, 0, Device::cpu(), v),
                                   ref, what);
                }
            }
        });
    }
    EXPECT_GT(configurations, 0);
    if (g_world->rank() == 0) {  // rank 0 takes part in every pipeline
        EXPECT_GT(several_stages_per_rank, 0);
    }
}

// Mixed precision (bf16 compute copies, activations and transfers; float32 masters): a pipeline of
// K stages trains bit for bit as one process running the same micro-batches (a 1-rank engine with
// the whole model), for every schedule and re-materialization mode — the arithmetic is the same
// op for op, only where it runs differs. (Against full-batch one-process training the weight
// gradients differ by their bf16 rounding per micro-batch; the derived bound for bf16 against
// float32 is tests/test_mixed_precision.cpp's.)
TEST_F(Pipeline, Bf16EverySchedulesEqualsOneProcessBf16BitForBit) {
    nn::ComputeDTypeScope bf16(DType::BFloat16);
    const Problem problem = gpt_problem();
    std::unique_ptr<comm::Communicator> alone = g_world->split(g_world->rank());  // a 1-rank group per rank
    int configurations = 0;
    for (int micro_batches : {2, 4}) {
        const RunResult reference = train_pipeline(*alone, problem, uniform_partition(problem.spec.size(), 1), "gpipe",
                                                   micro_batches, Rematerialization::Never);
        std::map<std::string, Tensor> expected;
        for (auto& [name, p] : reference.stage->named_parameters()) expected[name] = p;
        {
            nn::ComputeDTypeScope float32(std::nullopt);  // the bf16 run really computed in bf16
            EXPECT_NE(train_pipeline(*alone, problem, uniform_partition(problem.spec.size(), 1), "gpipe",
                                     micro_batches, Rematerialization::Never).losses.back(),
                      reference.losses.back());
        }
        for (int ranks = 2; ranks <= std::min(g_world->size(), 4); ++ranks) {
            std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < ranks ? 0 : -1);
            if (!group) continue;
            for (const ScheduleInfo& info : schedule_registry()) {
                const int v = info.default_virtual_stages, stages = ranks * v;
                if (stages > problem.spec.size() || !info.rule(ranks, micro_batches, v).empty()) continue;
                for (Rematerialization remat : {Rematerialization::Never, Rematerialization::Always}) {
                    ++configurations;
                    const std::string what = str("bf16 K=", ranks, " v=", v, " M=", micro_batches, " ", info.name, " ",
                                                 name_of(remat));
                    RunResult run = train_pipeline(*group, problem, uniform_partition(problem.spec.size(), stages),
                                                   info.name, micro_batches, remat, 0, Device::cpu(), v);
                    for (int step = 0; step < kSteps; ++step)
                        EXPECT_EQ(run.losses[step], reference.losses[step]) << what << " step " << step;
                    for (const std::shared_ptr<nn::Sequential>& module : run.modules)
                        for (auto& [name, p] : module->named_parameters()) {
                            EXPECT_EQ(p.dtype(), DType::Float32) << what << " " << name << ": masters stay float32";
                            mp::testing::expect_equal(p, expected.at(name), what + " parameter " + name);
                        }
                }
            }
        }
    }
    if (g_world->rank() == 0) {
        EXPECT_GT(configurations, 0);
    }
}

// Clipping by the global norm across stages equals clipping the whole model in one process.
TEST_F(Pipeline, GradientClippingAcrossStagesEqualsOneProcess) {
    const int stages = std::min(g_world->size(), 4);
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < stages ? 0 : -1);
    if (!group) return;
    for (const Problem& problem : {gpt_problem(), mlp_problem()}) {
        const double max_norm = 0.05;  // below the gradients' norm, so clipping acts every step
        Reference ref = train_one_process(problem, max_norm);
        RunResult run = train_pipeline(*group, problem, uniform_partition(problem.spec.size(), stages), "1f1b", 4,
                                       Rematerialization::Never, max_norm);
        EXPECT_GT(run.steps[0].grad_norm, max_norm) << problem.name;
        for (int step = 0; step < kSteps; ++step)
            EXPECT_NEAR(run.losses[step], ref.losses[step], 1e-5 * std::fabs(ref.losses[step])) << problem.name;
        for (auto& [name, p] : run.stage->named_parameters())
            mp::testing::expect_close(p, ref.parameters.at(name), 1e-5, 1e-7, problem.name + " clipped " + name);
    }
}

// The step's gradient norm is reported without clipping too: the global norm over every stage,
// the same bits on every rank, and the one-process model's norm to float32 reassociation (1e-5).
TEST_F(Pipeline, GradientNormIsGlobalAndTheSameOnEveryRankWithoutClipping) {
    const int stages = std::min(g_world->size(), 4);
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < stages ? 0 : -1);
    double lowest = std::numeric_limits<double>::infinity(), highest = -lowest;  // ranks sitting out
    if (group) {
        const Problem problem = gpt_problem();
        auto model = problem.spec.build_all();
        {
            autograd::Tape tape;
            autograd::TapeScope scope(tape);
            tape.backward(problem.loss.mean_loss(model->forward(problem.inputs), problem.targets));
        }
        const double one_process = nn::clip_grad_norm(model->parameters(), 1e30);  // the norm, nothing clipped
        RunResult run = train_pipeline(*group, problem, uniform_partition(problem.spec.size(), stages), "1f1b", 4,
                                       Rematerialization::Never, /*grad_clip=*/0);
        const double norm = run.steps[0].grad_norm;
        EXPECT_NEAR(norm, one_process, 1e-5 * one_process);
        lowest = highest = norm;
    }
    // Every rank of the job takes part here, in or out of the pipeline.
    ASSERT_EQ(MPI_Allreduce(MPI_IN_PLACE, &lowest, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD), MPI_SUCCESS);
    ASSERT_EQ(MPI_Allreduce(MPI_IN_PLACE, &highest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD), MPI_SUCCESS);
    EXPECT_EQ(lowest, highest) << "ranks reported different gradient norms";
}

// Pipeline × data parallel: 2 stages × 2 replicas on 4 ranks (rank = replica · K + stage), each
// replica training on its half of the global batch; gradients summed across replicas must give
// one-process training on the whole batch (same tolerance as above).
TEST_F(Pipeline, DataParallelReplicasEqualOneProcessTraining) {
    if (g_world->size() != 4) GTEST_SKIP() << "needs exactly 4 ranks (2 stages × 2 replicas)";
    const int stages = 2, replicas = 2;
    const int stage = g_world->rank() % stages, replica = g_world->rank() / stages;
    std::unique_ptr<comm::Communicator> pipeline_group = g_world->split(replica);
    std::unique_ptr<comm::Communicator> replica_group = g_world->split(stage);
    for (const Problem& problem : {gpt_problem(), gpt_problem(0.3), mlp_problem()}) {  // dropout: masks by global row
        Reference ref = train_one_process(problem);
        std::vector<StageRange> ranges = uniform_partition(problem.spec.size(), stages);
        auto module = problem.spec.build(ranges[stage].begin, ranges[stage].end);
        nn::SGD sgd(module->parameters(), kSgd);
        Engine engine(*pipeline_group, module, make_schedule("1f1b", stages, 3), sgd, problem.loss,
                      Rematerialization::Never, Device::cpu(), replica_group.get());
        const int64_t shard = problem.inputs.size(0) / replicas;
        Tensor inputs = problem.inputs.slice(replica * shard, (replica + 1) * shard);
        Tensor targets = problem.targets.slice(replica * shard, (replica + 1) * shard);
        for (int step = 0; step < kSteps; ++step) {
            double loss = engine.step(inputs, targets).loss;
            EXPECT_NEAR(loss, ref.losses[step], 1e-5 * std::fabs(ref.losses[step])) << problem.name << " step " << step;
        }
        for (auto& [name, p] : module->named_parameters())
            mp::testing::expect_close(p, ref.parameters.at(name), 1e-5, 1e-7, problem.name + " data-parallel " + name);
    }
}

// Dropout masks are keyed by each layer's identity, the step and the global row, so with dropout
// on, every partition, micro-batch count and schedule trains exactly as one process does.
TEST_F(Pipeline, WithDropoutEveryLayoutEqualsOneProcessTraining) {
    Problem problem = gpt_problem(0.3);
    Reference ref = train_one_process(problem);
    int configurations = 0;
    mp::testing::for_each_pipeline_size(*g_world, 1, problem.spec.size(), {1, 3, 4}, [&](const auto& size) {
        const int stages = size.stages(), v = size.virtual_stages;
        for (const std::string partitioning : {"uniform", "uneven"}) {
            std::vector<StageRange> ranges = partitioning == "uniform" ? uniform_partition(problem.spec.size(), stages)
                                                                       : uneven(problem.spec.size(), stages);
            std::string what = str("dropout 0.3 K=", size.ranks, " v=", v, " M=", size.micro_batches, " ",
                                   size.schedule.name, " ", partitioning);
            ++configurations;
            expect_matches(train_pipeline(size.group, problem, ranges, size.schedule.name, size.micro_batches,
                                          Rematerialization::ExceptLast, 0, Device::cpu(), v),
                           ref, what);
        }
    });
    EXPECT_GT(configurations, 0);
}

// With dropout, re-materialization must recompute the very masks of the first forward: the
// gradients (so the parameters after 3 steps) equal those of the run that stashes everything.
TEST_F(Pipeline, RematerializationReplaysDropoutMasks) {
    const int stages = std::min(g_world->size(), 4);
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < stages ? 0 : -1);
    if (!group) return;
    Problem problem = gpt_problem(0.3);
    std::vector<StageRange> ranges = uniform_partition(problem.spec.size(), stages);
    RunResult stashed = train_pipeline(*group, problem, ranges, "gpipe", 4, Rematerialization::Never);
    for (Rematerialization remat : {Rematerialization::Always, Rematerialization::ExceptLast}) {
        RunResult recomputed = train_pipeline(*group, problem, ranges, "gpipe", 4, remat);
        auto expected = stashed.stage->named_parameters();
        auto actual = recomputed.stage->named_parameters();
        for (size_t i = 0; i < actual.size(); ++i)
            mp::testing::expect_equal(actual[i].second, expected[i].second,
                                      str("dropout 0.3, ", name_of(remat), ": ", actual[i].first));
        EXPECT_EQ(recomputed.losses, stashed.losses);
    }
}

TEST_F(Pipeline, StashAccounting) {
    const int stages = std::min(g_world->size(), 4);
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < stages ? 0 : -1);
    if (!group) return;
    Problem problem = gpt_problem();
    std::vector<StageRange> ranges = uniform_partition(problem.spec.size(), stages);
    const int s = group->rank();
    for (int M : {1, 2, 3, 8}) {
        StageMemory gpipe_never = train_pipeline(*group, problem, ranges, "gpipe", M, Rematerialization::Never).steps.back().memory;
        // The per-stage report's estimate is measured the same way as the step's accounting.
        for (Rematerialization remat : {Rematerialization::Never, Rematerialization::Always}) {
            auto module = problem.spec.build(ranges[s].begin, ranges[s].end);
            nn::SGD sgd(module->parameters(), kSgd);
            Engine engine(*group, module, make_schedule("gpipe", stages, M), sgd, problem.loss, remat, Device::cpu());
            size_t estimate = engine.estimate_stash_bytes(problem.inputs, problem.targets);
            size_t measured = engine.step(problem.inputs, problem.targets).memory.stash_bytes_per_micro_batch;
            EXPECT_EQ(estimate, measured) << "stage " << s << " M=" << M << " " << name_of(remat);
        }
        StageMemory onef1b = train_pipeline(*group, problem, ranges, "1f1b", M, Rematerialization::Never).steps.back().memory;
        StageMemory gpipe_always = train_pipeline(*group, problem, ranges, "gpipe", M, Rematerialization::Always).steps.back().memory;
        std::string what = str("stage ", s, " of ", stages, ", M=", M);
        // GPipe stashes every micro-batch; 1F1B at most min(K − s, M) on stage s.
        EXPECT_EQ(gpipe_never.peak_stashed_micro_batches, M) << what;
        EXPECT_EQ(onef1b.peak_stashed_micro_batches, std::min(stages - s, M)) << what;
        // Micro-batches are equal in size, so the stashed bytes are whole multiples of one's.
        EXPECT_GT(gpipe_never.stash_bytes_per_micro_batch, 0u) << what;
        EXPECT_EQ(gpipe_never.peak_stash_bytes, M * gpipe_never.stash_bytes_per_micro_batch) << what;
        EXPECT_EQ(onef1b.peak_stash_bytes, std::min(stages - s, M) * onef1b.stash_bytes_per_micro_batch) << what;
        // Re-materialization keeps only the stage inputs (views of the batch on stage 0, so
        // nothing there), plus one micro-batch's internals while it is recomputed.
        size_t input_bytes = s == 0 ? 0 : gpipe_always.stash_bytes_per_micro_batch;
        EXPECT_LT(gpipe_always.stash_bytes_per_micro_batch, gpipe_never.stash_bytes_per_micro_batch) << what;
        EXPECT_LE(gpipe_always.peak_stash_bytes, M * input_bytes + gpipe_never.stash_bytes_per_micro_batch) << what;
        EXPECT_GT(gpipe_always.peak_stash_bytes, M * input_bytes) << what;
    }
}

// Every schedule's memory: the engine's peak of stashed micro-batches (forwarded, not yet
// through B or I) on each rank equals the simulator's for the same schedule and the registry's
// documented peak_stashed (for zb-h1 1F1B's min(K - s, M); zb-h2 min(2(K - s) - 1, M), at most
// twice 1F1B's; zbv min(2K, M + r + 1) half-size chunks, at most 1F1B's K whole stages).
TEST_F(Pipeline, EverySchedulesPeakStashIsItsBound) {
    const int ranks = std::min(g_world->size(), 4);
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < ranks ? 0 : -1);
    if (!group) return;
    const Problem problem = {"mlp", nn::mlp_spec({8, 16, 16, 16, 16, 16, 4}, 7), mse_loss(),
                             mp::testing::random_tensor({24, 8}, 13), mp::testing::random_tensor({24, 4}, 14)};
    const int s = group->rank();
    int checked = 0;
    for (const ScheduleInfo& info : schedule_registry()) {
        const int v = info.default_virtual_stages;
        for (int M : {1, 2, 3, 4, 8}) {
            if (!info.rule(ranks, M, v).empty()) continue;
            const Schedule schedule = make_schedule(info.name, ranks, M, v);
            ASSERT_LE(schedule.stages, problem.spec.size());
            const SimulationResult simulated = simulate(schedule, equal_costs(schedule.stages, 1.0, 2.0));
            const int peak = train_pipeline(*group, problem, uniform_partition(problem.spec.size(), schedule.stages),
                                            info.name, M, Rematerialization::Never, 0, Device::cpu(), v)
                                 .steps.back()
                                 .memory.peak_stashed_micro_batches;
            const std::string what = str(info.name, " K=", ranks, " M=", M, " rank ", s);
            EXPECT_EQ(peak, simulated.peak_stashed[static_cast<size_t>(s)]) << what;
            EXPECT_EQ(peak, info.peak_stashed(ranks, M, v, s)) << what;
            ++checked;
        }
    }
    EXPECT_GT(checked, 0);
}

// A split backward keeps what W needs until W; with re-materialization that is the recomputed
// tape, so the accounting must keep counting it: on zb-h1's last stage, which holds one W back,
// re-materializing does not shrink the counted peak much below stashing (before this was counted
// it reported about half).
TEST_F(Pipeline, SplitBackwardWithRematerializationCountsTapesUntilW) {
    if (g_world->size() < 2) return;
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < 2 ? 0 : -1);
    if (!group) return;
    Problem problem = gpt_problem();
    std::vector<StageRange> ranges = uniform_partition(problem.spec.size(), 2);
    const StageMemory never =
        train_pipeline(*group, problem, ranges, "zb-h1", 4, Rematerialization::Never).steps.back().memory;
    const StageMemory always =
        train_pipeline(*group, problem, ranges, "zb-h1", 4, Rematerialization::Always).steps.back().memory;
    if (group->rank() == 1) {
        EXPECT_GE(double(always.peak_stash_bytes), 0.75 * double(never.peak_stash_bytes))
            << "always " << always.peak_stash_bytes << " vs never " << never.peak_stash_bytes;
    }
}

TEST_F(Pipeline, TraceIsOrderedAndGathers) {
    const int stages = std::min(g_world->size(), 4);
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < stages ? 0 : -1);
    if (!group) return;
    Problem problem = mlp_problem();
    RunResult run = train_pipeline(*group, problem, uniform_partition(problem.spec.size(), stages), "1f1b", 4,
                                   Rematerialization::Never);
    const StageTrace& trace = run.steps.back().trace;
    int forwards = 0, backwards = 0;
    for (size_t i = 0; i < trace.events.size(); ++i) {
        EXPECT_LE(trace.events[i].start_us, trace.events[i].end_us);
        if (i > 0) {
            EXPECT_LE(trace.events[i - 1].end_us, trace.events[i].start_us) << "events overlap on one rank";
        }
        forwards += trace.events[i].actions.front().kind == ActionKind::Forward;
        backwards += trace.events[i].actions.front().kind == ActionKind::Backward;
    }
    EXPECT_EQ(forwards, 4);
    EXPECT_EQ(backwards, 4);
    EXPECT_GE(trace.bubble_fraction(), 0.0);
    EXPECT_LT(trace.bubble_fraction(), 1.0);
    std::vector<StageTrace> all = gather_traces(*group, trace);
    if (group->rank() == 0) {
        ASSERT_EQ(static_cast<int>(all.size()), stages);
        nlohmann::json parsed = nlohmann::json::parse(chrome_trace_json(all));
        size_t complete_events = 0;
        for (const auto& e : parsed.at("traceEvents"))
            if (e.at("ph") == "X") {
                ++complete_events;
                EXPECT_GE(e.at("dur").get<double>(), 0.0);
            }
        size_t expected = 0;
        for (const StageTrace& t : all) expected += t.events.size();
        EXPECT_EQ(complete_events, expected);
    }
}

TEST_F(Pipeline, BadBatchesAreErrorsOnEveryRank) {
    Problem problem = mlp_problem();
    const int stages = g_world->size();
    if (problem.spec.size() < stages) return;
    std::vector<StageRange> ranges = uniform_partition(problem.spec.size(), stages);
    auto stage = problem.spec.build(ranges[g_world->rank()].begin, ranges[g_world->rank()].end);
    nn::SGD sgd(stage->parameters(), kSgd);
    Engine engine(*g_world, stage, make_schedule("1f1b", stages, 5), sgd, problem.loss, Rematerialization::Never,
                  Device::cpu());
    // Checked before any communication, identically on every rank.
    mp::testing::expect_invalid_argument([&] { engine.step(problem.inputs, problem.targets); },
                                         {"batch of 24", "5 equal micro-batches"});
    mp::testing::expect_invalid_argument(
        [&] { Engine(*g_world, stage, make_schedule("1f1b", stages + 1, 2), sgd, problem.loss, Rematerialization::Never, Device::cpu()); },
        {std::to_string(stages) + " ranks", std::to_string(stages + 1) + " stages"});
}

// A non-finite loss (here a NaN target) stops every stage at the optimizer step with the cause,
// and no stage's weights change.
TEST_F(Pipeline, ANonFiniteLossStopsEveryStageBeforeTheUpdate) {
    const int stages = std::min(g_world->size(), 4);
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < stages ? 0 : -1);
    if (!group) return;
    Problem problem = mlp_problem();
    std::vector<float> targets = problem.targets.to_vector<float>();
    targets[13] = std::nanf("");  // row 3: micro-batch 0 of 4
    Tensor nan_targets = Tensor::from_vector(targets, problem.targets.shape());
    std::vector<StageRange> ranges = uniform_partition(problem.spec.size(), stages);
    auto stage = problem.spec.build(ranges[group->rank()].begin, ranges[group->rank()].end);
    std::vector<Tensor> before;
    for (const Tensor& p : stage->parameters()) before.push_back(p.clone());
    nn::SGD sgd(stage->parameters(), kSgd);
    Engine engine(*group, stage, make_schedule("1f1b", stages, 4), sgd, problem.loss, Rematerialization::Never,
                  Device::cpu());
    const bool last = group->rank() == stages - 1;
    try {
        engine.step(problem.inputs, nan_targets);
        ADD_FAILURE() << "a NaN loss trained";
    } catch (const std::runtime_error& e) {
        std::string message = e.what();
        EXPECT_NE(message.find("training diverged"), std::string::npos) << message;
        EXPECT_NE(message.find(last ? "the loss of micro-batch 0 is nan" : "the last stage's loss is not finite"),
                  std::string::npos) << message;
        EXPECT_NE(message.find("no stage applied this step's update"), std::string::npos) << message;
    }
    std::vector<Tensor> after = stage->parameters();
    for (size_t i = 0; i < after.size(); ++i)
        mp::testing::expect_equal(after[i], before[i], str("stage ", group->rank(), " parameter ", i));
    EXPECT_TRUE(std::isfinite(engine.step(problem.inputs, problem.targets).loss));  // usable again
}

// ---------------------------------------------------------------- on the GPU
// The ranks share the GPU over MPI here (one GPU per machine is the common case). The engine on
// a GPU times its actions with device events and reads the queued input checks once per step.

// Same tolerance as on the CPU: both sides run on the GPU, so they differ only by the summation
// over micro-batches.
TEST_F(Pipeline, OnTheGpuEqualsOneProcessTrainingOnTheGpu) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(comm::MpiRuntime::instance().gpu());
    const int stages = std::min(g_world->size(), 4);
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < stages ? 0 : -1);
    if (!group) return;
    for (const Problem& problem : {gpt_problem(), mlp_problem()}) {
        Reference ref = train_one_process(problem, 0, gpu);
        std::vector<StageRange> ranges = uniform_partition(problem.spec.size(), stages);
        for (const std::string schedule : {"gpipe", "1f1b"})
            for (int micro_batches : {1, 3, 4}) {
                std::string what = str(problem.name, " on ", gpu.str(), " K=", stages, " M=", micro_batches, " ", schedule);
                RunResult run = train_pipeline(*group, problem, ranges, schedule, micro_batches,
                                               Rematerialization::Never, 0, gpu);
                expect_matches(run, ref, what);
                // Device-event timing: ordered, non-overlapping actions, a bubble in [0, 1).
                const StageTrace& trace = run.steps.back().trace;
                for (size_t i = 1; i < trace.events.size(); ++i)
                    EXPECT_LE(trace.events[i - 1].end_us, trace.events[i].start_us) << what;
                EXPECT_GT(trace.step_us, 0.0) << what;
                EXPECT_GE(trace.bubble_fraction(), 0.0) << what;
                EXPECT_LT(trace.bubble_fraction(), 1.0) << what;
            }
    }
}

// A token id outside the vocabulary, found by the GPU check queued on stage 0: every stage stops
// at the optimizer step with an error (stage 0 naming the id), and no stage's weights change.
TEST_F(Pipeline, ABadTokenIdOnTheGpuStopsEveryStageBeforeTheUpdate) {
    MP_REQUIRE_GPU();
    const Device gpu = Device::cuda(comm::MpiRuntime::instance().gpu());
    const int stages = std::min(g_world->size(), 4);
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < stages ? 0 : -1);
    if (!group) return;
    Problem problem = gpt_problem();
    std::vector<int32_t> ids = problem.inputs.to_vector<int32_t>();
    ids[5 * 6 + 2] = 23;  // vocab 23: row 5, position 2
    Tensor bad_inputs = Tensor::from_vector(ids, problem.inputs.shape());
    std::vector<StageRange> ranges = uniform_partition(problem.spec.size(), stages);
    auto stage = problem.spec.build(ranges[group->rank()].begin, ranges[group->rank()].end);
    stage->to(gpu);
    std::vector<Tensor> before;
    for (const Tensor& p : stage->parameters()) before.push_back(p.to(Device::cpu()));
    nn::SGD sgd(stage->parameters(), kSgd);
    Engine engine(*group, stage, make_schedule("1f1b", stages, 4), sgd, problem.loss, Rematerialization::Never, gpu);
    const std::string expected = group->rank() == 0 ? "id 23 at position" : "stage 0 found a bad input";
    mp::testing::expect_invalid_argument([&] { engine.step(bad_inputs, problem.targets); },
                                         {expected, "no stage applied this step's update"});
    std::vector<Tensor> after = stage->parameters();
    for (size_t i = 0; i < after.size(); ++i)
        mp::testing::expect_equal(after[i], before[i], str("stage ", group->rank(), " parameter ", i));
    // The engine is usable again: a good batch trains.
    EXPECT_TRUE(std::isfinite(engine.step(problem.inputs, problem.targets).loss));
}

}  // namespace
}  // namespace mp::pipeline

int main(int argc, char** argv) {
    return mp::testing::run_multi_rank_tests(argc, argv, "test_pipeline", mp::pipeline::g_world);
}
