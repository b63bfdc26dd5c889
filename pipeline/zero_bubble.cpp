// The compute orders of zb-h1, zb-h2 and zbv, written as phases (warm-up, steady, cool-down) like
// 1F1B's, then their registry entries; the tests check their bubbles and stashes against
// the simulator.
#include "pipeline/zero_bubble.h"

#include <algorithm>
#include <deque>

#include "base/error.h"

namespace mp::pipeline {

namespace {

// One rank's list, with the Ws it holds back: input_backward queues the W, and the oldest queued
// Ws run once more than `held_back` are queued (flush runs them all).
struct RankList {
    std::vector<Action>& list;
    size_t held_back = 0;
    std::deque<Action> pending_weight;

    void forward(int stage, int m) { list.push_back({ActionKind::Forward, stage, m}); }
    void input_backward(int stage, int m) {
        list.push_back({ActionKind::InputBackward, stage, m});
        pending_weight.push_back({ActionKind::WeightBackward, stage, m});
        while (pending_weight.size() > held_back) {
            list.push_back(pending_weight.front());
            pending_weight.pop_front();
        }
    }
    void flush() {
        for (const Action& w : pending_weight) list.push_back(w);
        pending_weight.clear();
        list.push_back({ActionKind::OptimizerStep, -1, -1});
    }
};

// ZB-H1 and ZB-H2: `warmup(s)` forwards, then per micro-batch I, the Ws beyond `held_back(s)`, F.
template <typename Warmup, typename HeldBack>
Schedule one_stage_per_rank_zero_bubble(int ranks, int micro_batches, Warmup warmup, HeldBack held_back) {
    Schedule schedule = empty_schedule(ranks, micro_batches, identity_placement(ranks));
    for (int s = 0; s < ranks; ++s) {
        RankList rank{schedule.actions[static_cast<size_t>(s)], static_cast<size_t>(held_back(s)), {}};
        int forwarded = 0;
        for (; forwarded < std::min(warmup(s), micro_batches); ++forwarded) rank.forward(s, forwarded);
        for (int m = 0; m < micro_batches; ++m) {
            rank.input_backward(s, m);
            if (forwarded < micro_batches) rank.forward(s, forwarded++);
        }
        rank.flush();
    }
    return schedule;
}

Schedule generate_zb_h1(int ranks, int micro_batches, int) {
    return one_stage_per_rank_zero_bubble(
        ranks, micro_batches, [ranks](int s) { return ranks - s; }, [](int s) { return s; });
}

Schedule generate_zb_h2(int ranks, int micro_batches, int) {
    return one_stage_per_rank_zero_bubble(
        ranks, micro_batches, [ranks](int s) { return 2 * (ranks - s) - 1; }, [](int s) { return 2 * s; });
}

Schedule generate_zbv(int ranks, int micro_batches, int) {
    MP_REQUIRE(micro_batches >= ranks, "zbv needs micro_batches >= ranks (", ranks, "), got ", micro_batches);
    Schedule schedule = empty_schedule(ranks, micro_batches, v_shape_placement(ranks));
    const int M = micro_batches;
    for (int r = 0; r < ranks; ++r) {
        std::vector<Action>& list = schedule.actions[static_cast<size_t>(r)];
        // Chunk 0 is stage r (on the way down), chunk 1 stage 2K - 1 - r (on the way back up). Per
        // chunk: how many forwards, input backwards and weight backwards are in the list so far.
        const int stage[2] = {r, 2 * ranks - 1 - r};
        int forwards[2] = {0, 0}, inputs[2] = {0, 0}, weights[2] = {0, 0};
        auto add = [&](ActionKind kind, int chunk, int* counter) {
            list.push_back({kind, stage[chunk], counter[chunk]++});
        };
        auto f = [&](int chunk) { add(ActionKind::Forward, chunk, forwards); };
        auto i = [&](int chunk) { add(ActionKind::InputBackward, chunk, inputs); };
        auto w = [&](int chunk) { add(ActionKind::WeightBackward, chunk, weights); };  // the oldest pending
        // Warm-up: fill the way down, alternate, then start the way back up (F, I, W).
        for (int k = 0; k < 2 * (ranks - r) - 1 && forwards[0] < M; ++k) f(0);
        for (int k = 0; k < r; ++k) {
            if (forwards[1] < forwards[0]) f(1);
            if (forwards[0] < M) f(0);
        }
        for (int k = 0; k < ranks - r && forwards[1] < forwards[0]; ++k) {
            f(1);
            i(1);
            w(1);
        }
        // Steady: one micro-batch through each chunk, forward and both halves of its backward.
        while (forwards[1] < M) {
            if (forwards[0] < M) f(0);
            if (inputs[0] < forwards[0]) {
                i(0);
                w(0);
            }
            if (forwards[1] < forwards[0]) {
                f(1);
                i(1);
                w(1);
            }
        }
        // Cool-down: r pairs of input backwards (the ranks below wait for them), then K - r
        // chunk-0 input backwards each followed by a held-back W, then what is left: the input
        // backwards, the chunk-1 Ws, the chunk-0 Ws.
        for (int k = 0; k < r; ++k) {
            if (inputs[0] < forwards[0]) i(0);
            if (inputs[1] < forwards[1]) i(1);
        }
        for (int k = 0; k < ranks - r && inputs[0] < forwards[0]; ++k) {
            i(0);
            w(0);
        }
        while (inputs[0] < forwards[0]) i(0);
        while (inputs[1] < forwards[1]) i(1);
        while (weights[1] < inputs[1]) w(1);
        while (weights[0] < inputs[0]) w(0);
        list.push_back({ActionKind::OptimizerStep, -1, -1});
    }
    return schedule;
}

}  // namespace

ScheduleInfo zb_h1_schedule() {
    ScheduleInfo info;
    info.name = "zb-h1";
    info.description =
        "zero bubble H1 (Qi et al. 2024): I first, s Ws held back on stage s; bubble (K-1)(F+I-W), 1f1b's memory";
    info.rule = one_stage_per_rank_rule(info.name);
    info.generate = generate_zb_h1;
    info.exchange = Exchange::AtReadyTime;
    // (K-1)(F+I-W) idle: (K-1)/(3M+K-1), for M >= K
    info.unit_cost_bubble = [](int K, int M, int) {
        return M >= K ? unit_cost_fraction(K - 1, 3.0 * M) : no_closed_form(K, M, 1);
    };
    info.peak_stashed = [](int K, int M, int, int s) { return std::min(K - s, M); };  // 1f1b's
    return info;
}

ScheduleInfo zb_h2_schedule() {
    ScheduleInfo info;
    info.name = "zb-h2";
    info.description =
        "zero bubble H2: 2(K-s)-1 warm-up forwards, 2s Ws held back; no idle between steps without a barrier";
    info.rule = one_stage_per_rank_rule(info.name);
    info.generate = generate_zb_h2;
    info.exchange = Exchange::AtReadyTime;
    // (K-1)/(3M+K-1) per step, 0 between steps without a barrier, for M >= 2K-1
    info.unit_cost_bubble = [](int K, int M, int) {
        return M >= 2 * K - 1 ? unit_cost_fraction(K - 1, 3.0 * M) : no_closed_form(K, M, 1);
    };
    info.peak_stashed = [](int K, int M, int, int s) { return std::min(2 * (K - s) - 1, M); };  // its warm-up
    return info;
}

ScheduleInfo zbv_schedule() {
    ScheduleInfo info;
    info.name = "zbv";
    info.description =
        "zero bubble V: rank r holds stages r and 2K-1-r; half of zb-h1's bubble at 1f1b's memory; M >= K";
    info.default_virtual_stages = 2;
    info.rule = [name = info.name](int K, int M, int v) {
        if (v != 2) return str(name, " places two stages per rank in a V: virtual_stages must be 2, got ", v);
        return M >= K ? std::string() : str(name, " needs micro_batches >= ranks (", K, "), got ", M);
    };
    info.generate = generate_zbv;
    info.exchange = Exchange::AtReadyTime;
    // (K-1)/(6M+K-1) per step at chunk costs 1, 0 between steps without a barrier, for M >= 2K-1
    info.unit_cost_bubble = [](int K, int M, int) {
        return M >= 2 * K - 1 ? unit_cost_fraction(K - 1, 6.0 * M) : no_closed_form(K, M, 2);
    };
    info.peak_stashed = [](int K, int M, int, int r) { return std::min(2 * K, M + r + 1); };  // chunks
    return info;
}

}  // namespace mp::pipeline
