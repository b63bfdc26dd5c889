// Multi-rank tests of tied embeddings and of the Hugging Face GPT-2 import over pipeline stages
// (mpirun -np 2 and -np 4, CPU, MPI): a tied GPT trained over 2..4 stages with every schedule,
// with clipping and with data-parallel replicas equals one-process tied training; the imported
// GPT-2 fixture split over stages gives transformers' loss and gradients; copies that drift apart
// stop every rank, naming them.
//
// Tolerances: pipeline against one process is the reasoning of tests/mpi/test_pipeline.cpp (float32
// reassociation of micro-batch sums, carried unamplified by SGD: 1e-5 relative, 1e-7 absolute);
// the tied gradient adds one more sum of two float32 terms, well inside it. The fixture split over
// stages is the one-process fixture check (tests/test_hf_gpt2.cpp: rtol 2e-4, atol 1e-6, derived
// there) plus that reassociation.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/tape.h"
#include "nn/hf_gpt2.h"
#include "nn/models.h"
#include "nn/optim.h"
#include "pipeline/engine.h"
#include "pipeline/partition.h"
#include "tests/mpi/multi_rank_main.h"
#include "tests/mpi/pipeline_support.h"
#include "tests/support/test_util.h"

namespace mp::pipeline {
namespace {

std::unique_ptr<comm::Communicator> g_world;

constexpr int kSteps = 3;
const nn::SGDOptions kSgd{0.1, 0.9, 0.0};

struct Problem {
    nn::ModelSpec spec;
    Tensor inputs, targets;  // 24 rows: divisible by every M tested
};

Problem tied_gpt(double dropout = 0.0) {
    nn::GPTConfig config;
    config.vocab = 23, config.context = 6, config.layers = 3, config.heads = 2, config.channels = 16;
    config.seed = 5;
    config.dropout = dropout;
    config.tie_embeddings = true;
    Tensor ids = mp::testing::random_ids({24, 6}, 23, 11);
    std::vector<int32_t> t = mp::testing::random_ids({24, 6}, 23, 12).to_vector<int32_t>();
    t[7] = t[40] = -100;  // ignored targets make the micro-batches' counts differ
    return {nn::gpt_spec(config), ids, Tensor::from_vector(t, {24, 6})};
}

// The name of a parameter in the one-process model: a tied copy is its source there.
std::string one_process_name(const nn::ModelSpec& spec, const std::string& name) {
    for (const nn::TiedParameter& tie : spec.ties)
        if (tie.copy == name) return tie.source;
    return name;
}

using Reference = mp::testing::OneProcessTraining;
using mp::testing::build_rank_stages;

Reference train_one_process(const Problem& problem, double grad_clip = 0) {
    return mp::testing::train_one_process(problem.spec, cross_entropy_loss(), problem.inputs, problem.targets, kSgd,
                                          kSteps, grad_clip);
}

void expect_matches(const std::vector<std::shared_ptr<nn::Sequential>>& modules, const std::vector<double>& losses,
                    const Reference& ref, const nn::ModelSpec& spec, const std::string& what) {
    for (int step = 0; step < kSteps; ++step)
        EXPECT_NEAR(losses[step], ref.losses[step], 1e-5 * std::fabs(ref.losses[step])) << what << " step " << step;
    for (const auto& module : modules)
        for (auto& [name, p] : module->named_parameters())
            mp::testing::expect_close(p, ref.parameters.at(one_process_name(spec, name)), 1e-5, 1e-7,
                                      what + " parameter " + name);
}

class TiedEmbeddings : public mp::testing::AllRanksTest {};

// Every schedule (zbv puts the first and the last stage on rank 0: one parameter there), K = 2..4,
// uniform and uneven partitions, with and without re-materialization, with clipping.
TEST_F(TiedEmbeddings, EveryScheduleEqualsOneProcessTiedTraining) {
    const Problem problem = tied_gpt();
    const Reference ref = train_one_process(problem), clipped_ref = train_one_process(problem, 0.05);
    int configurations = 0;
    double worst = 0;
    mp::testing::for_each_pipeline_size(*g_world, 2, problem.spec.size(), {1, 4}, [&](const auto& size) {
        const int stages = size.stages();
        for (const std::string partitioning : {"uniform", "uneven"}) {
            std::vector<int64_t> balance(static_cast<size_t>(stages), 1);
            balance.back() = problem.spec.size() - (stages - 1);
            const std::vector<StageRange> ranges = partitioning == "uniform"
                                                       ? uniform_partition(problem.spec.size(), stages)
                                                       : explicit_partition(balance, problem.spec.size());
            for (double clip : {0.0, 0.05}) {
                const Schedule schedule =
                    make_schedule(size.schedule.name, size.ranks, size.micro_batches, size.virtual_stages);
                auto modules = build_rank_stages(problem.spec, schedule, ranges, size.group.rank());
                nn::SGD sgd(nn::unique_parameters(modules), kSgd);
                Engine engine(size.group, modules, schedule, sgd, cross_entropy_loss(),
                              clip > 0 ? Rematerialization::Always : Rematerialization::Never, Device::cpu());
                engine.set_grad_clip(clip);
                engine.tie_parameters(problem.spec.ties);
                std::vector<double> losses;
                for (int step = 0; step < kSteps; ++step)
                    losses.push_back(engine.step(problem.inputs, problem.targets).loss);
                const std::string what = str("K=", size.ranks, " v=", size.virtual_stages, " M=", size.micro_batches,
                                             " ", size.schedule.name, " ", partitioning, clip > 0 ? " clipped" : "");
                expect_matches(modules, losses, clip > 0 ? clipped_ref : ref, problem.spec, what);
                for (const auto& module : modules)
                    for (auto& [name, p] : module->named_parameters()) {
                        const Tensor& want =
                            (clip > 0 ? clipped_ref : ref).parameters.at(one_process_name(problem.spec, name));
                        std::vector<double> a = mp::testing::to_doubles(p), b = mp::testing::to_doubles(want);
                        for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
                    }
                ++configurations;
            }
        }
    });
    if (g_world->rank() == 0) {
        EXPECT_GT(configurations, 0);
        std::printf("[ measured ] tied pipeline vs one process: %d configurations, parameters max abs error %.3g\n",
                    configurations, worst);
    }
}

// 2 stages × 2 data-parallel replicas (rank = replica · 2 + stage), with dropout: the tied gradient
// is summed over the replicas and over the two stages, and equals one process's.
TEST_F(TiedEmbeddings, DataParallelReplicasEqualOneProcessTiedTraining) {
    if (g_world->size() != 4) GTEST_SKIP() << "needs exactly 4 ranks (2 stages × 2 replicas)";
    const int stages = 2, replicas = 2;
    const int stage = g_world->rank() % stages, replica = g_world->rank() / stages;
    std::unique_ptr<comm::Communicator> pipeline_group = g_world->split(replica);
    std::unique_ptr<comm::Communicator> replica_group = g_world->split(stage);
    for (double dropout : {0.0, 0.3}) {
        const Problem problem = tied_gpt(dropout);
        const Reference ref = train_one_process(problem);
        const Schedule schedule = make_schedule("1f1b", stages, 3);
        auto modules = build_rank_stages(problem.spec, schedule, uniform_partition(problem.spec.size(), stages), stage);
        nn::SGD sgd(nn::unique_parameters(modules), kSgd);
        Engine engine(*pipeline_group, modules, schedule, sgd, cross_entropy_loss(), Rematerialization::Never,
                      Device::cpu(), replica_group.get());
        engine.tie_parameters(problem.spec.ties);
        const int64_t shard = problem.inputs.size(0) / replicas;
        std::vector<double> losses;
        for (int step = 0; step < kSteps; ++step)
            losses.push_back(engine.step(problem.inputs.slice(replica * shard, (replica + 1) * shard),
                                         problem.targets.slice(replica * shard, (replica + 1) * shard))
                                 .loss);
        expect_matches(modules, losses, ref, problem.spec, str("data parallel, dropout ", dropout));
    }
}

// Copies that drift apart (here: one element of the last stage's copy changed by hand) stop
// every rank at the next update, the two holding them naming both.
TEST_F(TiedEmbeddings, CopiesThatDifferStopEveryRank) {
    const int ranks = std::min(g_world->size(), 4);
    std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < ranks ? 0 : -1);
    if (!group) return;
    const Problem problem = tied_gpt();
    const Schedule schedule = make_schedule("1f1b", ranks, 2);
    auto modules =
        build_rank_stages(problem.spec, schedule, uniform_partition(problem.spec.size(), ranks), group->rank());
    nn::SGD sgd(nn::unique_parameters(modules), kSgd);
    Engine engine(*group, modules, schedule, sgd, cross_entropy_loss(), Rematerialization::Never, Device::cpu());
    engine.tie_parameters(problem.spec.ties);
    engine.step(problem.inputs, problem.targets);
    const bool last = group->rank() == ranks - 1;
    if (last) {
        Tensor copy = modules.back()->named_parameters().back().second;  // head.weight
        std::vector<float> values = copy.to_vector<float>();
        values[5] += 1e-3f;
        copy.copy_from(Tensor::from_vector(values, copy.shape()));
    }
    try {
        engine.step(problem.inputs, problem.targets);
        ADD_FAILURE() << "diverged copies were not noticed";
    } catch (const std::runtime_error& e) {
        const std::string message = e.what();
        const bool holds_one = group->rank() == 0 || last;
        const std::string wanted = holds_one ? "'embed.wte' and 'head.weight' differ after the update of step 1"
                                             : "the tied copies of the first and last stages differ";
        EXPECT_NE(message.find(wanted), std::string::npos) << message;
    }
}

// The Hugging Face fixture over K stages (every split of its 4 layers into K): the loss and every
// gradient of transformers, each stage reading only its own tensors.
TEST_F(TiedEmbeddings, HfFixtureSplitOverStagesMatchesTransformers) {
    const std::string dir = std::string(MP_SOURCE_DIR) + "/tests/fixtures/hf_gpt2_tiny";
    std::ifstream in(dir + "/expected.json");
    const nlohmann::json f = nlohmann::json::parse(in);
    const nn::HfGpt2Config hf = nn::read_hf_gpt2_config(dir);
    nn::HfGpt2Config grads_file = hf;
    grads_file.weights_path = dir + "/expected_grads.safetensors";
    const nn::ModelSpec spec = nn::gpt_spec(hf.gpt);
    const int64_t B = f.at("batch"), T = f.at("time");
    Tensor ids = Tensor::from_vector(f.at("ids").get<std::vector<int32_t>>(), {B, T});
    Tensor targets = Tensor::from_vector(f.at("targets").get<std::vector<int32_t>>(), {B, T});
    const double want_loss = f.at("loss");
    for (int ranks = 2; ranks <= std::min(g_world->size(), 4); ranks += 2) {
        std::unique_ptr<comm::Communicator> group = g_world->split(g_world->rank() < ranks ? 0 : -1);
        if (!group) continue;
        using Balances = std::vector<std::vector<int64_t>>;
        const Balances balances = ranks == 2 ? Balances{{1, 3}, {2, 2}, {3, 1}} : Balances{{1, 1, 1, 1}};
        for (const std::vector<int64_t>& balance : balances) {
            const Schedule schedule = make_schedule("1f1b", ranks, 2);
            const std::vector<StageRange> ranges = explicit_partition(balance, spec.size());
            auto modules = build_rank_stages(spec, schedule, ranges, group->rank());
            for (const auto& module : modules) nn::load_hf_gpt2(hf, *module);
            nn::SGD sgd(nn::unique_parameters(modules), {1e-30, 0.0, 0.0});  // the gradients are what is checked
            Engine engine(*group, modules, schedule, sgd, cross_entropy_loss(), Rematerialization::Never,
                          Device::cpu());
            engine.tie_parameters(spec.ties);
            const double loss = engine.step(ids, targets).loss;
            const std::string what = str("K=", ranks, " balance ", balance[0], "...");
            EXPECT_NEAR(loss, want_loss, 2e-4 * want_loss) << what;
            for (const auto& module : modules) {
                // The expected gradients, stored like the weights: imported into the same layers.
                auto expected = spec.build(ranges[static_cast<size_t>(group->rank())].begin,
                                           ranges[static_cast<size_t>(group->rank())].end);
                nn::load_hf_gpt2(grads_file, *expected);
                auto want = expected->named_parameters();
                auto got = module->named_parameters();
                ASSERT_EQ(got.size(), want.size()) << what;
                for (size_t i = 0; i < got.size(); ++i)
                    mp::testing::expect_close(autograd::grad_of(got[i].second), want[i].second, 2e-4, 1e-6,
                                              what + " gradient of " + got[i].first);
            }
        }
    }
}

}  // namespace
}  // namespace mp::pipeline

int main(int argc, char** argv) {
    return mp::testing::run_multi_rank_tests(argc, argv, "test_tied_embeddings", mp::pipeline::g_world);
}
