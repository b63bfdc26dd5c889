// The additions task's held-out split (disjoint from the training corpus by construction, the same
// on every call) and its exact-match scorer, checked on hand-made model outputs and on a hand-made
// bigram model that greedy completion must follow token by token, and its place in the run summary.
#include <gtest/gtest.h>

#include <set>
#include <sstream>

#include "nn/additions.h"
#include "tests/support/test_util.h"
#include "train/summary.h"

using namespace mp;
using mp::testing::expect_invalid_argument;

namespace {
// The corpus's lines as (a, b) pairs, each checked to be "a+b=sum".
std::vector<std::pair<int64_t, int64_t>> corpus_pairs(const nn::TokenDataset& data) {
    std::vector<std::pair<int64_t, int64_t>> pairs;
    std::istringstream lines(data.decode(data.tokens));
    std::string line;
    while (std::getline(lines, line)) {
        long a = 0, b = 0, c = 0;
        EXPECT_EQ(std::sscanf(line.c_str(), "%ld+%ld=%ld", &a, &b, &c), 3) << line;  // decimal: zeros lead
        EXPECT_EQ(a + b, c) << line;
        pairs.emplace_back(a, b);
    }
    return pairs;
}
}  // namespace

TEST(Additions, HeldOutIsAPropertyOfTheUnorderedPair) {
    int64_t held_out = 0;
    for (int64_t a = 0; a < 100; ++a)
        for (int64_t b = 0; b < 100; ++b) {
            EXPECT_EQ(nn::is_held_out(a, b), nn::is_held_out(b, a)) << a << "+" << b;
            held_out += nn::is_held_out(a, b) ? 1 : 0;
        }
    // About one in ten of the 10 000 ordered pairs: 1000 expected; a hash this good stays within
    // ±20% (the binomial's standard deviation is 30, so this is ~7 of them).
    EXPECT_GT(held_out, 800);
    EXPECT_LT(held_out, 1200);
}

TEST(Additions, HeldOutProblemsAreDeterministicDistinctAndHeldOut) {
    const std::vector<nn::AdditionProblem> problems = nn::held_out_additions(200, 2, 1337);
    ASSERT_EQ(problems.size(), 200u);
    std::set<std::pair<int64_t, int64_t>> distinct;
    for (const nn::AdditionProblem& p : problems) {
        EXPECT_TRUE(nn::is_held_out(p.a, p.b)) << p.prompt();
        EXPECT_LT(p.a, 100);
        EXPECT_LT(p.b, 100);
        distinct.insert({p.a, p.b});
    }
    EXPECT_EQ(distinct.size(), 200u);
    const std::vector<nn::AdditionProblem> again = nn::held_out_additions(200, 2, 1337);
    for (size_t i = 0; i < problems.size(); ++i) EXPECT_EQ(problems[i].prompt(), again[i].prompt());
    // A prefix of a longer list: asking for more does not reshuffle the first ones.
    EXPECT_EQ(nn::held_out_additions(10, 2, 1337).back().prompt(), problems[9].prompt());
}

TEST(Additions, TrainingCorpusHoldsNoHeldOutSum) {
    for (int digits : {1, 2, 3}) {
        const nn::TokenDataset corpus = nn::synthetic_additions(5000, digits, 1337);
        const auto pairs = corpus_pairs(corpus);
        ASSERT_EQ(pairs.size(), 5000u);
        std::set<std::pair<int64_t, int64_t>> held_out;
        for (const nn::AdditionProblem& p : nn::held_out_additions(digits == 1 ? 2 : 50, digits, 1337))
            held_out.insert({p.a, p.b});
        for (const auto& [a, b] : pairs) {
            EXPECT_FALSE(nn::is_held_out(a, b)) << a << "+" << b << " is held out but in the corpus";
            EXPECT_EQ(held_out.count({a, b}) + held_out.count({b, a}), 0u) << a << "+" << b;
        }
    }
}

TEST(Additions, TooManyHeldOutProblemsAreRefusedWithTheNumbers) {
    // One-digit sums: 100 ordered pairs, about 10 held out.
    expect_invalid_argument([] { nn::held_out_additions(50, 1, 7); },
                            {"50 problems asked for", "up to 1-digit", "about 10 held-out"});
    expect_invalid_argument([] { nn::held_out_additions(5, 10, 7); }, {"max_digits 10", "[1, 9]"});
}

TEST(Additions, ExactMatchNeedsEveryAnswerDigitAndNothingElse) {
    const std::vector<nn::AdditionProblem> problems = {{17, 25, 2}, {9, 83, 2}, {50, 50, 2},
                                                       {3, 4, 2},   {60, 2, 2}, {1, 1, 2}};
    EXPECT_EQ(problems[1].prompt(), "09+83=");
    EXPECT_EQ(problems[1].answer(), "092");
    EXPECT_EQ(problems[2].line(), "50+50=100\n");
    // What a model might generate after "a+b=": its answer runs to the first newline.
    const std::vector<std::string> completions = {
        "042\n",   // right
        "091\n9",  // wrong digit (092)
        "100\n",   // right
        "007",     // right, cut off before the newline (tokens ran out)
        "62\n",    // the sum without its padding: not every answer digit
        "\n2\n",   // nothing before the newline
    };
    const nn::ExactMatch score = nn::score_additions(problems, completions);
    EXPECT_EQ(score.correct, 3);
    EXPECT_EQ(score.total, 6);
    EXPECT_DOUBLE_EQ(score.accuracy(), 0.5);
    EXPECT_EQ(nn::answer_line(problems[0], completions[0]), "  17+25= 042 ✓");
    EXPECT_EQ(nn::answer_line(problems[1], completions[1]), "  09+83= 091 ✗ (092)");
    EXPECT_EQ(nn::answer_line(problems[5], completions[5]), "  01+01= (nothing) ✗ (002)");
    expect_invalid_argument([&] { nn::score_additions(problems, {"042\n"}); }, {"6 problems", "1 completions"});
}

// A bigram model (an embedding whose row for token t is the logits of the next token) that
// always writes "042\n" after "=": greedy completion follows it, stops at the newline (never
// reaching its digits + 2 = 4 token budget's end here), and the scorer counts the one sum that is 42.
TEST(Additions, GreedyCompletionOfAHandMadeModel) {
    const nn::TokenDataset corpus = nn::synthetic_additions(10, 2, 1);  // for its 13-character vocabulary
    const int64_t vocab = corpus.vocab;
    Generator gen(3);
    auto embedding = std::make_shared<nn::Embedding>(vocab, vocab, gen);
    std::vector<float> logits(static_cast<size_t>(vocab * vocab), 0.0f);
    auto next = [&](char from, char to) {
        const int32_t row = corpus.encode(std::string(1, from))[0], column = corpus.encode(std::string(1, to))[0];
        logits[static_cast<size_t>(row * vocab + column)] = 1;
    };
    next('=', '0'), next('0', '4'), next('4', '2'), next('2', '\n');
    embedding->weight.copy_from(Tensor::from_vector(logits, {vocab, vocab}));
    nn::Sequential model;
    model.add("bigram", embedding);
    const std::vector<nn::AdditionProblem> problems = {{17, 25, 2}, {9, 83, 2}, {40, 2, 2}, {1, 1, 2}};
    const std::vector<std::string> answers = nn::answer_additions(model, corpus, problems, 8);
    ASSERT_EQ(answers.size(), 4u);
    for (const std::string& answer : answers) EXPECT_EQ(answer, "042\n");
    EXPECT_EQ(nn::score_additions(problems, answers).correct, 2);
}

// The run summary carries every scoring and the last one's fraction; summaries written before
// the accuracy fields still read.
TEST(Additions, AccuracyReachesTheRunSummary) {
    train::RunSummary summary;
    summary.parameter_checksum = "ab12";
    summary.accuracies = {{50, 12, 200}, {100, 150, 200}};
    const nlohmann::json json = nlohmann::json::parse(train::to_json(summary).dump());
    EXPECT_DOUBLE_EQ(json.at("accuracy").get<double>(), 0.75);
    ASSERT_EQ(json.at("accuracies").size(), 2u);
    EXPECT_EQ(json["accuracies"][0]["step"], 50);
    EXPECT_EQ(json["accuracies"][0]["correct"], 12);
    EXPECT_EQ(json["accuracies"][0]["total"], 200);
    const train::RunSummary read = train::run_summary_from_json(json);
    ASSERT_EQ(read.accuracies.size(), 2u);
    EXPECT_EQ(read.accuracies[1].correct, 150);
    EXPECT_EQ(read.accuracies[1].step, 100);
    nlohmann::json older = json;
    older.erase("accuracy"), older.erase("accuracies");
    EXPECT_TRUE(train::run_summary_from_json(older).accuracies.empty());
    older["accuracies"] = {{{"step", 1}, {"correct", 0.5}, {"total", 2}}};
    expect_invalid_argument([&] { train::run_summary_from_json(older); }, {"accuracies", "integers"});
    EXPECT_TRUE(train::to_json(train::RunSummary{}).at("accuracy").is_null());
}
