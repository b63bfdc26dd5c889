// The additions task the demo learns, scored the way a person would check it: a held-out split of
// the sums (a hash of the operand pair keeps them out of the training corpus by construction),
// greedy completion of "a+b=" by a whole model, and the exact-match score over every answer digit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nn/data.h"
#include "nn/layers.h"

namespace mp::nn {

struct AdditionProblem {
    int64_t a = 0, b = 0;
    std::string prompt() const;  // "a+b="
    std::string answer() const;  // the digits of a + b
};

// Whether the sum of a and b belongs to the held-out split: a hash of the unordered pair, so a+b
// and b+a fall on the same side. About one pair in kHeldOutOneIn is held out, whatever the seed.
constexpr uint64_t kHeldOutOneIn = 10;
bool is_held_out(int64_t a, int64_t b);

// `count` distinct held-out problems with a and b uniform in [0, 10^max_digits), drawn from
// `seed`: the same list on every call and every rank. Refused (naming the values) when the range
// holds too few held-out problems for `count`, or max_digits is outside [1, 9].
std::vector<AdditionProblem> held_out_additions(int64_t count, int max_digits, uint64_t seed);

struct ExactMatch {
    int64_t correct = 0, total = 0;
    double accuracy() const { return total > 0 ? static_cast<double>(correct) / static_cast<double>(total) : 0.0; }
};

// The model's answer in `completion` (the text it generated after "a+b="): everything up to the
// first newline. Exact match: that answer is the sum's digits, all of them and nothing else.
std::string answer_of(const std::string& completion);
bool is_exact(const AdditionProblem& problem, const std::string& completion);
// Refused when the two lists differ in length (both sizes named).
ExactMatch score_additions(const std::vector<AdditionProblem>& problems, const std::vector<std::string>& completions);

// One line for a person: "  17+25= 42 ✓", or "  9+83= 91 ✗ (92)" with the right answer.
std::string answer_line(const AdditionProblem& problem, const std::string& completion);

// Greedy completions by `model` (the whole model, logits over at least data.vocab): for each
// prompt (encoded with `data`), up to max_new_tokens tokens, each the most likely within the
// data's vocabulary, stopping at `stop` ('\n'). Prompts of one length run as one batch; a
// prompt longer than `window` keeps its last `window` tokens. No gradients, no dropout; the
// model is left in training mode.
std::vector<std::string> complete_greedy(Sequential& model, const TokenDataset& data,
                                         const std::vector<std::string>& prompts, int64_t max_new_tokens,
                                         char stop, int64_t window);

// The held-out problems answered by `model`: each prompted as "\na+b=" (a line start, as in the
// corpus) and given max_digits + 2 tokens, enough for every answer digit and the newline.
std::vector<std::string> answer_additions(Sequential& model, const TokenDataset& data,
                                          const std::vector<AdditionProblem>& problems, int max_digits,
                                          int64_t window);

}  // namespace mp::nn
