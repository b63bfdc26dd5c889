// The additions task's held-out split, its exact-match scorer and the greedy completion that
// feeds it (see nn/additions.h): how `make demo` shows that the model learned to add, not to recite.
#include "nn/additions.h"

#include <algorithm>
#include <map>
#include <set>

#include "autograd/tape.h"
#include "base/error.h"
#include "kernels/common/counter_rng.h"
#include "nn/layers.h"
#include "tensor/ops/elementwise.h"

namespace mp::nn {

namespace {
std::string zero_padded(int64_t value, int width) {
    std::string digits = std::to_string(value);
    return std::string(static_cast<size_t>(std::max<int>(0, width - static_cast<int>(digits.size()))), '0') + digits;
}
}  // namespace

std::string AdditionProblem::prompt() const { return zero_padded(a, digits) + "+" + zero_padded(b, digits) + "="; }
std::string AdditionProblem::answer() const { return zero_padded(a + b, digits + 1); }

bool is_held_out(int64_t a, int64_t b) {
    const uint64_t low = static_cast<uint64_t>(std::min(a, b)), high = static_cast<uint64_t>(std::max(a, b));
    return rng::mix64(rng::mix64(low) ^ (high * 0x9E3779B97F4A7C15ULL)) % kHeldOutOneIn == 0;
}

std::vector<AdditionProblem> held_out_additions(int64_t count, int max_digits, uint64_t seed) {
    MP_REQUIRE(count >= 0 && max_digits >= 1 && max_digits <= 9, "held_out_additions: count ", count,
               " must be >= 0 and max_digits ", max_digits, " in [1, 9]");
    int64_t limit = 1;
    for (int d = 0; d < max_digits; ++d) limit *= 10;
    // Ordered pairs, so up to limit² problems; about one in kHeldOutOneIn is held out.
    const double held_out_expected = static_cast<double>(limit) * static_cast<double>(limit) / kHeldOutOneIn;
    MP_REQUIRE(static_cast<double>(count) <= held_out_expected / 2, "held_out_additions: ", count,
               " problems asked for, but sums of up to ", max_digits, "-digit numbers hold only about ",
               static_cast<int64_t>(held_out_expected), " held-out ones (ask for at most half)");
    // A stream of its own, apart from the training corpus's draws of the same seed.
    const uint64_t stream = rng::mix64(seed ^ 0x48454C444F5554ULL);  // "HELDOUT"
    std::vector<AdditionProblem> problems;
    std::set<std::pair<int64_t, int64_t>> seen;
    // Every pair is drawn many times over long before this bound; reaching it means the range holds
    // fewer distinct held-out problems than asked for (the estimate above can err for tiny ranges).
    const uint64_t max_draws = 2 * (64 * static_cast<uint64_t>(limit * limit) + 1024);
    for (uint64_t draw = 0; static_cast<int64_t>(problems.size()) < count; draw += 2) {
        MP_REQUIRE(draw < max_draws, "held_out_additions: found only ", problems.size(),
                   " distinct held-out sums of up to ", max_digits, "-digit numbers, ", count, " asked for");
        const int64_t a = static_cast<int64_t>(rng::uniform01(stream, draw) * static_cast<double>(limit));
        const int64_t b = static_cast<int64_t>(rng::uniform01(stream, draw + 1) * static_cast<double>(limit));
        if (is_held_out(a, b) && seen.insert({a, b}).second) problems.push_back({a, b, max_digits});
    }
    return problems;
}

std::string answer_of(const std::string& completion) { return completion.substr(0, completion.find('\n')); }

bool is_exact(const AdditionProblem& problem, const std::string& completion) {
    return answer_of(completion) == problem.answer();
}

ExactMatch score_additions(const std::vector<AdditionProblem>& problems, const std::vector<std::string>& completions) {
    MP_REQUIRE(problems.size() == completions.size(), "score_additions: ", problems.size(), " problems but ",
               completions.size(), " completions");
    ExactMatch score;
    score.total = static_cast<int64_t>(problems.size());
    for (size_t i = 0; i < problems.size(); ++i) score.correct += is_exact(problems[i], completions[i]) ? 1 : 0;
    return score;
}

std::string answer_line(const AdditionProblem& problem, const std::string& completion) {
    const std::string given = answer_of(completion);
    const std::string shown = given.empty() ? "(nothing)" : given;
    if (given == problem.answer()) return str("  ", problem.prompt(), " ", shown, " ✓");
    return str("  ", problem.prompt(), " ", shown, " ✗ (", problem.answer(), ")");
}

std::vector<std::string> complete_greedy(Sequential& model, const TokenDataset& data,
                                         const std::vector<std::string>& prompts, int64_t max_new_tokens,
                                         char stop, int64_t window) {
    MP_REQUIRE(max_new_tokens >= 1 && window >= 1, "complete_greedy: max_new_tokens ", max_new_tokens,
               " and window ", window, " must be positive");
    autograd::NoGradScope no_grad;
    model.eval();  // no dropout while answering
    struct BackToTraining {
        Sequential& model;
        ~BackToTraining() { model.train(); }
    } back_to_training{model};
    const int32_t stop_token = data.encode(std::string(1, stop)).front();
    std::vector<std::string> completions(prompts.size());
    // Prompts of one token length form one batch: the model is causal, so no padding is needed.
    std::map<size_t, std::vector<size_t>> by_length;
    std::vector<std::vector<int32_t>> encoded(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
        encoded[i] = data.encode(prompts[i]);
        MP_REQUIRE(!encoded[i].empty(), "complete_greedy: prompt ", i, " is empty");
        by_length[encoded[i].size()].push_back(i);
    }
    for (const auto& [length, rows] : by_length) {
        const int64_t n = static_cast<int64_t>(rows.size());
        std::vector<std::vector<int32_t>> context;
        for (size_t i : rows) context.push_back(encoded[i]);
        std::vector<bool> stopped(rows.size(), false);
        for (int64_t t = 0; t < max_new_tokens; ++t) {
            const int64_t total = static_cast<int64_t>(context.front().size());
            const int64_t used = std::min(total, window);
            std::vector<int32_t> ids;
            ids.reserve(static_cast<size_t>(n * used));
            for (const std::vector<int32_t>& row : context) ids.insert(ids.end(), row.end() - used, row.end());
            Tensor logits = model.forward(Tensor::from_vector(ids, {n, used}));
            const int64_t vocab = logits.size(-1);
            MP_REQUIRE(vocab >= data.vocab, "complete_greedy: the model gives ", vocab, " logits but the data has ",
                       data.vocab, " tokens");
            // Under mixed precision the logits are bfloat16: read them as float32 (exact).
            const std::vector<float> all = logits.dtype() == DType::Float32
                                               ? logits.to_vector<float>()
                                               : ops::cast(logits, DType::Float32).to_vector<float>();
            bool all_stopped = true;
            for (int64_t r = 0; r < n; ++r) {
                const float* last = all.data() + (r * used + used - 1) * vocab;
                int32_t next = 0;  // greedy over the data's vocabulary (the model's may be padded)
                for (int32_t v = 1; v < data.vocab; ++v)
                    if (last[v] > last[next]) next = v;
                context[static_cast<size_t>(r)].push_back(next);
                if (!stopped[static_cast<size_t>(r)]) {
                    completions[rows[static_cast<size_t>(r)]] += data.token_text[static_cast<size_t>(next)];
                    stopped[static_cast<size_t>(r)] = next == stop_token;
                }
                all_stopped = all_stopped && stopped[static_cast<size_t>(r)];
            }
            if (all_stopped) break;
        }
    }
    return completions;
}

std::vector<std::string> answer_additions(Sequential& model, const TokenDataset& data,
                                          const std::vector<AdditionProblem>& problems, int64_t window) {
    std::vector<std::string> prompts;
    prompts.reserve(problems.size());
    int digits = 1;
    for (const AdditionProblem& problem : problems) {
        prompts.push_back(problem.prompt());
        digits = std::max(digits, problem.digits);
    }
    return complete_greedy(model, data, prompts, digits + 2, '\n', window);
}

}  // namespace mp::nn
