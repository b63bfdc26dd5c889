// Partitioning: uniform sizes, balanced splits against brute force, explicit balance lists,
// and the errors for impossible requests (naming the numbers).
#include <gtest/gtest.h>

#include <functional>

#include "nn/models.h"
#include "pipeline/partition.h"
#include "tests/support/test_util.h"

using namespace mp;
using namespace mp::pipeline;
using mp::testing::expect_invalid_argument;

TEST(Partition, UniformSizesDifferByAtMostOne) {
    std::vector<StageRange> r = uniform_partition(14, 4);
    ASSERT_EQ(r.size(), 4u);
    EXPECT_EQ(r[0], (StageRange{0, 4}));
    EXPECT_EQ(r[1], (StageRange{4, 8}));
    EXPECT_EQ(r[2], (StageRange{8, 11}));
    EXPECT_EQ(r[3], (StageRange{11, 14}));
    EXPECT_EQ(uniform_partition(5, 5).back(), (StageRange{4, 5}));
}

TEST(Partition, BalancedMatchesBruteForce) {
    // Brute force over every way to cut 8 layers into K stages: the largest stage cost must equal ours.
    std::vector<double> costs = {5, 1, 1, 8, 2, 2, 9, 3};
    for (int stages = 1; stages <= 8; ++stages) {
        double best = 1e300;
        std::function<void(int, int, double)> search = [&](int start, int left, double worst) {
            if (left == 0) {
                if (start == 8) best = std::min(best, worst);
                return;
            }
            double sum = 0;
            for (int end = start + 1; end <= 8 - (left - 1); ++end) {
                sum += costs[end - 1];
                search(end, left - 1, std::max(worst, sum));
            }
        };
        search(0, stages, 0);
        std::vector<StageRange> r = balanced_partition(costs, stages);
        ASSERT_EQ(static_cast<int>(r.size()), stages);
        double worst = 0;
        int64_t expected_begin = 0;
        for (const StageRange& range : r) {
            EXPECT_EQ(range.begin, expected_begin);
            EXPECT_GE(range.size(), 1);
            double sum = 0;
            for (int64_t i = range.begin; i < range.end; ++i) sum += costs[i];
            worst = std::max(worst, sum);
            expected_begin = range.end;
        }
        EXPECT_EQ(expected_begin, 8);
        EXPECT_EQ(worst, best) << stages << " stages";
    }
}

TEST(Partition, ByParametersBalancesAGpt) {
    nn::GPTConfig config;
    config.layers = 6;
    config.vocab = 1024;  // embed and head are heavy: the balanced split gives them smaller stages
    nn::ModelSpec spec = nn::gpt_spec(config);
    std::vector<StageRange> r = partition(spec, 4, PartitionMethod::Parameters);
    ASSERT_EQ(r.size(), 4u);
    EXPECT_EQ(r.front().begin, 0);
    EXPECT_EQ(r.back().end, spec.size());
    EXPECT_LE(r.front().size(), 2);  // the embedding (73k parameters) needs few blocks beside it
}

TEST(Partition, ExplicitBalance) {
    std::vector<StageRange> r = explicit_partition({4, 3, 3, 4}, 14);
    EXPECT_EQ(r[2], (StageRange{7, 10}));
    expect_invalid_argument([] { explicit_partition({4, 3, 3}, 14); }, {"balance [4, 3, 3]", "sums to 10", "14 layers"});
    expect_invalid_argument([] { explicit_partition({4, 0, 10}, 14); }, {"balance [4, 0, 10]", "0 layers"});
    nn::ModelSpec spec = nn::mlp_spec({4, 4, 4, 4}, 0);  // 5 layers
    expect_invalid_argument([&] { partition(spec, 3, PartitionMethod::Balance, {2, 3}); }, {"2 stages", "3 were asked for"});
}

TEST(Partition, ImpossibleRequestsNameTheNumbers) {
    expect_invalid_argument([] { uniform_partition(4, 5); }, {"5 stages", "only 4 layers"});
    expect_invalid_argument([] { balanced_partition({1, 2}, 3); }, {"3 stages", "only 2 layers"});
    expect_invalid_argument([] { uniform_partition(4, 0); }, {"stages must be >= 1", "0"});
    expect_invalid_argument([] { parse_enum<PartitionMethod>("random", "partition"); },
                            {"partition: \"random\" is not one of uniform | parameters | time | balance"});
    nn::ModelSpec spec = nn::mlp_spec({4, 4}, 0);
    expect_invalid_argument([&] { partition(spec, 1, PartitionMethod::Time, {}, {1.0, 2.0}); }, {"2 layer times", "1 layers"});
}

TEST(Partition, ProfilesEveryLayer) {
    nn::ModelSpec spec = nn::mlp_spec({16, 32, 32, 4}, 0);
    Tensor x = mp::testing::random_tensor({8, 16}, 1);
    std::vector<double> times = profile_layer_times(spec, x, Device::cpu(), 2);
    ASSERT_EQ(static_cast<int64_t>(times.size()), spec.size());
    for (double t : times) EXPECT_GT(t, 0.0);
    std::vector<StageRange> r = partition(spec, 2, PartitionMethod::Time, {}, times);
    EXPECT_EQ(r.size(), 2u);
}
