// Every registered schedule: the classic generators (naive, gpipe, 1f1b, 1f1b-split,
// interleaved-1f1b), each followed by the function that registers it, then the registry itself and
// make_schedule. A new schedule is one more such pair and one line in schedule_registry().
#include "pipeline/schedule.h"

#include <algorithm>
#include <limits>
#include <map>

#include "base/error.h"
#include "pipeline/communication.h"
#include "pipeline/zero_bubble.h"

namespace mp::pipeline {

double no_closed_form(int, int, int) { return std::numeric_limits<double>::quiet_NaN(); }

double unit_cost_fraction(double idle, double busy) { return idle + busy > 0 ? idle / (idle + busy) : 0.0; }

ScheduleRule one_stage_per_rank_rule(const std::string& name) {
    return [name](int, int, int virtual_stages) {
        if (virtual_stages == 1) return std::string();
        return str(name, " runs one stage per rank: virtual_stages must be 1, got ", virtual_stages);
    };
}

namespace {

Action forward(int stage, int micro_batch) { return {ActionKind::Forward, stage, micro_batch}; }
Action backward(int stage, int micro_batch) { return {ActionKind::Backward, stage, micro_batch}; }
Action optimizer_step() { return {ActionKind::OptimizerStep, -1, -1}; }
Action input_backward(int stage, int micro_batch) { return {ActionKind::InputBackward, stage, micro_batch}; }
Action weight_backward(int stage, int micro_batch) { return {ActionKind::WeightBackward, stage, micro_batch}; }

// Megatron's warm-up forwards of interleaved 1F1B on rank r: 2 (K - r - 1) + (v - 1) K, or all v M
// of them when fewer, or when M = K (Megatron's all-warm-up case).
int interleaved_warmup(int K, int M, int v, int r) {
    const int total = M * v;
    return M == K ? total : std::min(2 * (K - r - 1) + (v - 1) * K, total);
}

// ---- naive ------------------------------------------------------------------------------------

// One micro-batch at a time through every stage, forward then backward (inter-layer model
// parallelism: only one stage is ever busy).
Schedule generate_naive(int ranks, int micro_batches, int) {
    Schedule schedule = empty_schedule(ranks, micro_batches, identity_placement(ranks));
    for (int stage = 0; stage < ranks; ++stage) {
        std::vector<Action>& list = schedule.actions[static_cast<size_t>(stage)];
        for (int m = 0; m < micro_batches; ++m) {
            list.push_back(forward(stage, m));
            list.push_back(backward(stage, m));
        }
        list.push_back(optimizer_step());
    }
    return schedule;
}

ScheduleInfo naive_schedule() {
    ScheduleInfo info;
    info.name = "naive";
    info.description = "one micro-batch at a time through every stage (only one stage busy)";
    info.rule = one_stage_per_rank_rule(info.name);
    info.generate = generate_naive;
    info.unit_cost_bubble = [](int K, int, int) { return double(K - 1) / K; };  // (K-1)/K
    info.peak_stashed = [](int, int, int, int) { return 1; };
    return info;
}

// ---- gpipe ------------------------------------------------------------------------------------

// All M forwards, then all M backwards, in micro-batch order.
Schedule generate_gpipe(int ranks, int micro_batches, int) {
    Schedule schedule = empty_schedule(ranks, micro_batches, identity_placement(ranks));
    for (int stage = 0; stage < ranks; ++stage) {
        std::vector<Action>& list = schedule.actions[static_cast<size_t>(stage)];
        for (int m = 0; m < micro_batches; ++m) list.push_back(forward(stage, m));
        for (int m = 0; m < micro_batches; ++m) list.push_back(backward(stage, m));
        list.push_back(optimizer_step());
    }
    return schedule;
}

ScheduleInfo gpipe_schedule() {
    ScheduleInfo info;
    info.name = "gpipe";
    info.description = "all forwards, then all backwards; every stage stashes M micro-batches";
    info.rule = one_stage_per_rank_rule(info.name);
    info.generate = generate_gpipe;
    info.unit_cost_bubble = [](int K, int M, int) { return unit_cost_fraction(K - 1, M); };  // (K-1)/(M+K-1)
    info.peak_stashed = [](int, int M, int, int) { return M; };
    return info;
}

// ---- 1f1b and 1f1b-split ----------------------------------------------------------------------

// PipeDream-Flush as in Megatron-LM, in three visible phases; with `split`, each backward is its
// two halves, I then W (see one_f_one_b_split_schedule).
Schedule one_f_one_b_order(int ranks, int micro_batches, bool split) {
    Schedule schedule = empty_schedule(ranks, micro_batches, identity_placement(ranks));
    for (int stage = 0; stage < ranks; ++stage) {
        std::vector<Action>& list = schedule.actions[static_cast<size_t>(stage)];
        auto backward_of = [&](int m) {
            if (!split) {
                list.push_back(backward(stage, m));
                return;
            }
            list.push_back(input_backward(stage, m));
            list.push_back(weight_backward(stage, m));
        };
        const int warmup = std::min(ranks - stage - 1, micro_batches);
        const int steady = micro_batches - warmup;
        // Warm-up: forwards only.
        for (int m = 0; m < warmup; ++m) list.push_back(forward(stage, m));
        // Steady state: iteration i forwards micro-batch warmup + i and backwards micro-batch i.
        for (int i = 0; i < steady; ++i) {
            list.push_back(forward(stage, warmup + i));
            backward_of(i);
        }
        // Cool-down: the backwards of the warm-up forwards.
        for (int m = steady; m < micro_batches; ++m) backward_of(m);
        list.push_back(optimizer_step());
    }
    return schedule;
}

// Stage s warms up with K - s - 1 forwards, so it holds at most K - s micro-batches.
int one_f_one_b_peak(int K, int M, int, int s) { return std::min(K - s, M); }

ScheduleInfo one_f_one_b_schedule() {
    ScheduleInfo info;
    info.name = "1f1b";
    info.description = "warm-up forwards, one forward one backward, cool-down backwards (PipeDream-Flush)";
    info.rule = one_stage_per_rank_rule(info.name);
    info.generate = [](int K, int M, int) { return one_f_one_b_order(K, M, /*split=*/false); };
    info.unit_cost_bubble = [](int K, int M, int) { return unit_cost_fraction(K - 1, M); };  // (K-1)/(M+K-1)
    info.peak_stashed = one_f_one_b_peak;
    return info;
}

// 1F1B with the backward in two halves (the first step towards zero-bubble schedules, Qi et al.
// 2024): each B becomes I then W. I sends the input's gradient upstream before W computes the
// weights' gradients, so the backward chain through the pipeline costs K·I instead of K·B and
// the bubble shrinks from (K − 1)(F + B) to (K − 1)(F + I). Same order, warm-up and stash as 1F1B.
ScheduleInfo one_f_one_b_split_schedule() {
    ScheduleInfo info;
    info.name = "1f1b-split";
    info.description = "1f1b with each backward split into I (sent upstream at once) then W; bubble (K-1)(F+I)";
    info.rule = one_stage_per_rank_rule(info.name);
    info.generate = [](int K, int M, int) { return one_f_one_b_order(K, M, /*split=*/true); };
    // (K-1)(F+I) idle: 2(K-1)/(3M+2(K-1))
    info.unit_cost_bubble = [](int K, int M, int) { return unit_cost_fraction(2.0 * (K - 1), 3.0 * M); };
    info.peak_stashed = one_f_one_b_peak;
    return info;
}

// ---- interleaved-1f1b -------------------------------------------------------------------------

// Interleaved 1F1B as in Megatron-LM: rank r holds stages r, r + K, ..., r + (v - 1)K (looped
// placement). The v·M forwards of a rank are taken in groups of K micro-batches per stage: the
// k-th forward of a rank runs micro-batch (k / (K v)) K + k mod K on its chunk (k / K) mod v, the
// k-th backward the same micro-batch on chunk v - 1 - (k / K) mod v. Warm-up: 2 (K - r - 1) +
// (v - 1) K forwards (all of them when fewer, or when M = K), then one forward one backward (each
// pair exchanging its transfers once: Exchange::PerForwardBackwardPair), then the cool-down.
Schedule generate_interleaved_1f1b(int ranks, int micro_batches, int virtual_stages) {
    Schedule schedule = empty_schedule(ranks, micro_batches, looped_placement(ranks, virtual_stages));
    const int total = micro_batches * virtual_stages;  // compute slots of each kind per rank
    auto micro_batch_of = [&](int k) { return (k / (ranks * virtual_stages)) * ranks + k % ranks; };
    auto forward_chunk = [&](int k) { return (k / ranks) % virtual_stages; };
    auto backward_chunk = [&](int k) { return virtual_stages - 1 - (k / ranks) % virtual_stages; };
    for (int rank = 0; rank < ranks; ++rank) {
        std::vector<Action>& list = schedule.actions[static_cast<size_t>(rank)];
        auto forward_slot = [&](int k) { return forward(forward_chunk(k) * ranks + rank, micro_batch_of(k)); };
        auto backward_slot = [&](int k) { return backward(backward_chunk(k) * ranks + rank, micro_batch_of(k)); };
        const int warmup = interleaved_warmup(ranks, micro_batches, virtual_stages, rank);
        const int steady = total - warmup;
        for (int k = 0; k < warmup; ++k) list.push_back(forward_slot(k));
        for (int i = 0; i < steady; ++i) {
            list.push_back(forward_slot(warmup + i));
            list.push_back(backward_slot(i));
        }
        for (int k = steady; k < total; ++k) list.push_back(backward_slot(k));
        list.push_back(optimizer_step());
    }
    return schedule;
}

ScheduleInfo interleaved_1f1b_schedule() {
    ScheduleInfo info;
    info.name = "interleaved-1f1b";
    info.description = "1f1b over v looped stages per rank (Megatron-LM); M a multiple of the ranks";
    info.default_virtual_stages = 2;
    info.rule = [name = info.name](int K, int M, int v) {
        if (v < 2)
            return str(name, " needs virtual_stages >= 2 (stages per rank), got ", v,
                       "; with one stage per rank use 1f1b");
        if (M % K != 0) return str(name, " needs micro_batches to be a multiple of the ranks (", K, "), got ", M);
        return std::string();
    };
    info.generate = generate_interleaved_1f1b;
    info.exchange = Exchange::PerForwardBackwardPair;
    // (K-1)/(vM+K-1)
    info.unit_cost_bubble = [](int K, int M, int v) { return unit_cost_fraction(K - 1, double(v) * M); };
    // The warm-up's forwards and the steady state's one (all vM when every forward is warm-up).
    info.peak_stashed = [](int K, int M, int v, int r) { return std::min(interleaved_warmup(K, M, v, r) + 1, v * M); };
    return info;
}

}  // namespace

// ---- the registry ------------------------------------------------------------------------------

const std::vector<ScheduleInfo>& schedule_registry() {
    static const std::vector<ScheduleInfo> registry = {
        naive_schedule(), gpipe_schedule(), one_f_one_b_schedule(), one_f_one_b_split_schedule(),
        interleaved_1f1b_schedule(), zb_h1_schedule(), zb_h2_schedule(), zbv_schedule(),
    };
    return registry;
}

std::vector<std::string> schedule_kinds() {
    std::vector<std::string> names;
    for (const ScheduleInfo& info : schedule_registry()) names.push_back(info.name);
    return names;
}

const ScheduleInfo& schedule_info(const std::string& name) {
    std::string choices;
    for (const ScheduleInfo& info : schedule_registry()) {
        if (info.name == name) return info;
        choices += (choices.empty() ? "" : ", ") + info.name;
    }
    throw std::invalid_argument(
        str("make_schedule: unknown schedule kind '", name, "' (expected one of ", choices, ")"));
}

std::string describe_default_virtual_stages() {
    // The most common default is "the others"; the rest are named, grouped by their default.
    std::map<int, std::vector<std::string>> by_default;
    for (const ScheduleInfo& info : schedule_registry())
        by_default[info.default_virtual_stages].push_back(info.name);
    int most_common = by_default.begin()->first;
    for (const auto& [stages, names] : by_default)
        if (names.size() > by_default[most_common].size()) most_common = stages;
    std::string text;
    for (const auto& [stages, names] : by_default) {
        if (stages == most_common) continue;
        std::string listed;
        for (size_t i = 0; i < names.size(); ++i)
            listed += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
        text += str(listed, " ", stages, ", ");
    }
    return text.empty() ? str(most_common, " for every schedule") : str(text, "the others ", most_common);
}

Schedule make_compute_schedule(const std::string& name, int ranks, int micro_batches, int virtual_stages) {
    const ScheduleInfo& info = schedule_info(name);
    MP_REQUIRE(ranks >= 1, "make_schedule(", name, "): ranks (pipeline stages) must be >= 1, got ", ranks);
    MP_REQUIRE(micro_batches >= 1, "make_schedule(", name, "): micro_batches must be >= 1, got ", micro_batches);
    MP_REQUIRE(virtual_stages >= 1, "make_schedule(", name, "): virtual_stages must be >= 1, got ", virtual_stages);
    const std::string broken = info.rule(ranks, micro_batches, virtual_stages);
    MP_REQUIRE(broken.empty(), "make_schedule(", name, ", ", ranks, " ranks, ", micro_batches, " micro-batches): ",
               broken);
    Schedule schedule = info.generate(ranks, micro_batches, virtual_stages);
    schedule.name = name;
    return schedule;
}

Schedule make_schedule(const std::string& name, int ranks, int micro_batches, int virtual_stages) {
    Schedule schedule = make_compute_schedule(name, ranks, micro_batches, virtual_stages);
    add_communication(schedule, schedule_info(name).exchange);
    return schedule;
}

}  // namespace mp::pipeline
