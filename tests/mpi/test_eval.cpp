// Multi-rank tests of the pipeline's evaluation (Engine::evaluate; mpirun -np 2 and -np 4, CPU,
// MPI): over 2..4 ranks, every schedule (zbv and interleaved-1f1b with several stages per rank
// included), M = 1 and 4, the loss equals one process's evaluation of the same micro-batches bit
// for bit; with data-parallel replicas too; an evaluation between two steps changes neither the
// parameters nor the dropout masks of later steps (the run equals one without it, bit for bit).
//
// Why bit for bit: evaluation is forward only. A stage runs exactly the layers, on exactly the
// inputs (activations cross ranks unchanged), that the whole model runs on the same micro-batch,
// and the micro-batch losses are weighted and summed in the same order in double in both, then
// rounded once to float32. No reduction is regrouped, so there is no rounding to allow for.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>

#include "autograd/tape.h"
#include "nn/models.h"
#include "nn/optim.h"
#include "nn/parameter_checksum.h"
#include "pipeline/engine.h"
#include "pipeline/partition.h"
#include "tests/mpi/multi_rank_main.h"
#include "tests/mpi/pipeline_support.h"
#include "tests/support/test_util.h"

namespace mp::pipeline {
namespace {

std::unique_ptr<comm::Communicator> g_world;

struct Problem {
    nn::ModelSpec spec;
    Tensor inputs, targets;  // 24 rows: divisible by every M tested
};

// A tied GPT with dropout (evaluation must switch it off) and ignored targets (uneven counts).
Problem gpt_problem(double dropout) {
    nn::GPTConfig config;
    config.vocab = 23, config.context = 6, config.layers = 3, config.heads = 2, config.channels = 16;
    config.seed = 7;
    config.dropout = dropout;
    config.tie_embeddings = true;
    Tensor ids = mp::testing::random_ids({24, 6}, 23, 21);
    std::vector<int32_t> t = mp::testing::random_ids({24, 6}, 23, 22).to_vector<int32_t>();
    t[3] = t[50] = t[51] = -100;
    return {nn::gpt_spec(config), ids, Tensor::from_vector(t, {24, 6})};
}

// One process: the whole model in evaluation mode, micro-batch by micro-batch, each loss weighted
// by its count over the total and summed in double, rounded to float32 as the engine reports it.
double one_process_eval(const Problem& problem, int micro_batches) {
    auto model = problem.spec.build_all();
    model->eval();
    autograd::NoGradScope no_grad;
    const LossFunction loss = cross_entropy_loss();
    const int64_t micro = problem.inputs.size(0) / micro_batches;
    std::vector<double> counts, losses;
    double total = 0;
    for (int m = 0; m < micro_batches; ++m) {
        const Tensor targets = problem.targets.slice(m * micro, (m + 1) * micro);
        counts.push_back(loss.count(targets));
        total += counts.back();
        const Tensor logits = model->forward(problem.inputs.slice(m * micro, (m + 1) * micro));
        losses.push_back(loss.mean_loss(logits, targets).item());
    }
    double sum = 0;
    for (int m = 0; m < micro_batches; ++m) sum += counts[m] / total * losses[m];
    return static_cast<float>(sum);
}

using mp::testing::build_rank_stages;

std::string checksum(const std::vector<std::shared_ptr<nn::Sequential>>& modules) {
    std::vector<std::pair<std::string, Tensor>> named;
    for (const auto& module : modules)
        for (auto& entry : module->named_parameters()) named.push_back(entry);
    return nn::parameter_checksum(named);
}

class Evaluation : public mp::testing::AllRanksTest {};

TEST_F(Evaluation, EveryScheduleEqualsOneProcessBitForBit) {
    const Problem problem = gpt_problem(0.3);
    int configurations = 0;
    mp::testing::for_each_pipeline_size(*g_world, 2, problem.spec.size(), {1, 4}, [&](const auto& size) {
        const std::string& name = size.schedule.name;
        const double want = one_process_eval(problem, size.micro_batches);
        const Schedule schedule = make_schedule(name, size.ranks, size.micro_batches, size.virtual_stages);
        auto modules = build_rank_stages(problem.spec, schedule, uniform_partition(problem.spec.size(), size.stages()),
                                         size.group.rank());
        nn::SGD sgd(nn::unique_parameters(modules), {0.1, 0.0, 0.0});
        Engine engine(size.group, modules, schedule, sgd, cross_entropy_loss(), Rematerialization::Never,
                      Device::cpu());
        engine.tie_parameters(problem.spec.ties);
        const double got = engine.evaluate(problem.inputs, problem.targets);
        EXPECT_EQ(got, want) << "K=" << size.ranks << " v=" << size.virtual_stages << " M=" << size.micro_batches
                             << " " << name;
        // Again: the same value (nothing was consumed), and the stages back in training mode.
        EXPECT_EQ(engine.evaluate(problem.inputs, problem.targets), want) << name << " again";
        for (const auto& module : modules) EXPECT_TRUE(module->is_training()) << name;
        ++configurations;
    });
    if (g_world->rank() == 0) {
        EXPECT_GT(configurations, 0);
        std::printf("[ measured ] pipeline evaluation equals one process bit for bit in %d configurations\n",
                    configurations);
    }
}

// An evaluation between two steps: the losses and parameters of the steps are those of a run
// without it, bit for bit (with dropout: its masks are keyed by the steps run, which evaluation
// leaves alone), and the evaluation itself changes no parameter.
TEST_F(Evaluation, ChangesNeitherParametersNorLaterDropout) {
    const Problem problem = gpt_problem(0.3);
    const int ranks = std::min(g_world->size(), 4);
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < ranks ? 0 : -1);
    if (!group) return;
    for (const std::string name : {"1f1b", "zbv", "interleaved-1f1b"}) {
        const ScheduleInfo& info = schedule_info(name);
        const int v = info.default_virtual_stages, M = 4;
        if (ranks * v > problem.spec.size() || !info.rule(ranks, M, v).empty()) continue;
        const Schedule schedule = make_schedule(name, ranks, M, v);
        const std::vector<StageRange> ranges = uniform_partition(problem.spec.size(), ranks * v);
        std::vector<double> losses[2];
        std::string checksums[2];
        for (int with_eval = 0; with_eval < 2; ++with_eval) {
            auto modules = build_rank_stages(problem.spec, schedule, ranges, group->rank());
            nn::AdamW adamw(nn::unique_parameters(modules), {1e-2, 0.9, 0.999, 1e-8, 0.01});
            Engine engine(*group, modules, schedule, adamw, cross_entropy_loss(), Rematerialization::Never,
                          Device::cpu());
            engine.tie_parameters(problem.spec.ties);
            losses[with_eval].push_back(engine.step(problem.inputs, problem.targets).loss);
            if (with_eval) {
                const std::string before = checksum(modules);
                engine.evaluate(problem.inputs, problem.targets);
                EXPECT_EQ(checksum(modules), before) << name << ": evaluation changed a parameter";
            }
            losses[with_eval].push_back(engine.step(problem.inputs, problem.targets).loss);
            checksums[with_eval] = checksum(modules);
        }
        EXPECT_EQ(losses[1], losses[0]) << name;
        EXPECT_EQ(checksums[1], checksums[0]) << name;
    }
}

// 2 stages × 2 data-parallel replicas: each replica evaluates its half of the batch, and the loss
// is the one-process loss of the whole batch on every rank.
TEST_F(Evaluation, DataParallelReplicasEqualOneProcess) {
    if (g_world->size() != 4) GTEST_SKIP() << "needs exactly 4 ranks (2 stages × 2 replicas)";
    const int stages = 2, replicas = 2, M = 2;
    const int stage = g_world->rank() % stages, replica = g_world->rank() / stages;
    std::unique_ptr<comm::Communicator> pipeline_group = g_world->split(replica);
    std::unique_ptr<comm::Communicator> replica_group = g_world->split(stage);
    const Problem problem = gpt_problem(0.0);
    const Schedule schedule = make_schedule("gpipe", stages, M);
    auto modules = build_rank_stages(problem.spec, schedule, uniform_partition(problem.spec.size(), stages), stage);
    nn::SGD sgd(nn::unique_parameters(modules), {0.1, 0.0, 0.0});
    Engine engine(*pipeline_group, modules, schedule, sgd, cross_entropy_loss(), Rematerialization::Never,
                  Device::cpu(), replica_group.get());
    engine.tie_parameters(problem.spec.ties);
    const int64_t shard = problem.inputs.size(0) / replicas;
    const double got = engine.evaluate(problem.inputs.slice(replica * shard, (replica + 1) * shard),
                                       problem.targets.slice(replica * shard, (replica + 1) * shard));
    // The global batch is 2 × M micro-batches of 6 rows; one process evaluates them as 4. Each
    // replica's double sum is rounded to float32 before the replicas add them (in float32), and
    // that sum is rounded once more: three roundings of relative 2^-24 against the reference's one,
    // within 4 · 2^-24 = 2 · 2^-23 relative, rather than equality.
    const double want = one_process_eval(problem, replicas * M);
    EXPECT_NEAR(got, want, 2 * 0x1p-23 * std::fabs(want));
}

}  // namespace
}  // namespace mp::pipeline

int main(int argc, char** argv) {
    return mp::testing::run_multi_rank_tests(argc, argv, "test_eval", mp::pipeline::g_world);
}
