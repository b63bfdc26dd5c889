// The compute orders of zb-h1, zb-h2 and zbv, written as phases (warm-up, steady, cool-down) like
// 1F1B's; their bubbles and memory bounds are proved by the simulator in the tests.
#include "pipeline/zero_bubble.h"

#include <algorithm>
#include <deque>

#include "kernels/common/error.h"

namespace mp::pipeline {

namespace {

Schedule empty(const std::string& kind, int ranks, int micro_batches, std::vector<int> placement) {
    Schedule schedule;
    schedule.kind = kind;
    schedule.ranks = ranks;
    schedule.stages = static_cast<int>(placement.size());
    schedule.micro_batches = micro_batches;
    schedule.placement = std::move(placement);
    schedule.actions.resize(static_cast<size_t>(ranks));
    return schedule;
}

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
Schedule one_stage_per_rank_zero_bubble(const std::string& kind, int ranks, int micro_batches, Warmup warmup,
                                        HeldBack held_back) {
    Schedule schedule = empty(kind, ranks, micro_batches, identity_placement(ranks));
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

}  // namespace

Schedule generate_zb_h1(int ranks, int micro_batches, int) {
    return one_stage_per_rank_zero_bubble(
        "zb-h1", ranks, micro_batches, [ranks](int s) { return ranks - s; }, [](int s) { return s; });
}

Schedule generate_zb_h2(int ranks, int micro_batches, int) {
    return one_stage_per_rank_zero_bubble(
        "zb-h2", ranks, micro_batches, [ranks](int s) { return 2 * (ranks - s) - 1; }, [](int s) { return 2 * s; });
}

Schedule generate_zbv(int ranks, int micro_batches, int) {
    MP_REQUIRE(micro_batches >= ranks, "zbv needs micro_batches >= ranks (", ranks, "), got ", micro_batches);
    Schedule schedule = empty("zbv", ranks, micro_batches, v_shape_placement(ranks));
    const int M = micro_batches;
    for (int r = 0; r < ranks; ++r) {
        RankList rank{schedule.actions[static_cast<size_t>(r)], 0, {}};  // W right after its I
        const int down = r, up = 2 * ranks - 1 - r;  // chunk 0 (on the way down), chunk 1 (back up)
        int forward_down = 0, forward_up = 0, input_down = 0, input_up = 0;
        auto f_down = [&] { rank.forward(down, forward_down++); };
        auto f_up = [&] { rank.forward(up, forward_up++); };
        auto i_down = [&] { rank.input_backward(down, input_down++); };
        auto i_up = [&] { rank.input_backward(up, input_up++); };
        // Warm-up: fill the way down, then alternate, then start the way back up.
        for (int k = 0; k < 2 * (ranks - r) - 1 && forward_down < M; ++k) f_down();
        for (int k = 0; k < r; ++k) {
            if (forward_up < forward_down) f_up();
            if (forward_down < M) f_down();
        }
        for (int k = 0; k < ranks - r && forward_up < forward_down; ++k) {
            f_up();
            i_up();
        }
        // Steady: one micro-batch through each chunk, forward and backward.
        while (forward_up < M) {
            if (forward_down < M) f_down();
            if (input_down < forward_down) i_down();
            if (forward_up < forward_down) {
                f_up();
                i_up();
            }
        }
        // Cool-down: the input backwards left (the ranks below wait for them), alternating chunks
        // first; the Ws held back to the end, where this rank would otherwise wait.
        rank.held_back = static_cast<size_t>(2 * M);
        for (int k = 0; k < r; ++k) {
            if (input_down < forward_down) i_down();
            if (input_up < forward_up) i_up();
        }
        while (input_down < forward_down) i_down();
        while (input_up < forward_up) i_up();
        rank.flush();
    }
    return schedule;
}

}  // namespace mp::pipeline
