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

// Written at fixed width, zero-padded: operands of `digits` digits, the sum of digits + 1 ("07+25=032"
// for 2 digits). Every line of the corpus then has the same length and every digit a fixed position,
// which a small transformer learns far sooner than variable-width numbers.
struct AdditionProblem {
    int64_t a = 0, b = 0;
    int digits = 1;
    std::string prompt() const;  // "07+25="
    std::string answer() const;  // "032"
    std::string line() const { return prompt() + answer() + "\n"; }
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

// One line for a person: "  17+25= 042 ✓", or "  09+83= 091 ✗ (092)" with the right answer.
std::string answer_line(const AdditionProblem& problem, const std::string& completion);

// Greedy completions by `model` (the whole model, logits over at least data.vocab): for each
// prompt (encoded with `data`), up to max_new_tokens tokens, each the most likely within the
// data's vocabulary, stopping at `stop` ('\n'). Prompts of one length run as one batch; a
// prompt longer than `window` keeps its last `window` tokens. No gradients, no dropout; the
// model is left in training mode.
std::vector<std::string> complete_greedy(Sequential& model, const TokenDataset& data,
                                         const std::vector<std::string>& prompts, int64_t max_new_tokens,
                                         char stop, int64_t window);

// The held-out problems answered by `model`: each prompted as "a+b=" at the window's start, where
// training windows start too (TokenDataset::record_tokens), and given digits + 2 tokens, enough for
// every answer digit and the newline.
std::vector<std::string> answer_additions(Sequential& model, const TokenDataset& data,
                                          const std::vector<AdditionProblem>& problems, int64_t window);

}  // namespace mp::nn
