// The list scheduler behind zb-h1, zb-h2 and zbv: a unit-time simulation that decides, for every
// rank, which compute action comes next (I first, then F within the stash bound, then W).
#include "pipeline/zero_bubble.h"

#include <deque>
#include <optional>
#include <stdexcept>

#include "kernels/common/error.h"

namespace mp::pipeline {

namespace {

constexpr long kNever = -1;  // "not finished yet" in the finish-time tables

}  // namespace

Schedule list_schedule_zero_bubble(const std::string& kind, int ranks, int micro_batches, std::vector<int> placement,
                                   const std::vector<int>& stash_bound) {
    MP_REQUIRE(ranks >= 1 && micro_batches >= 1, "list_schedule_zero_bubble(", kind, "): need ranks >= 1 and "
               "micro_batches >= 1, got ", ranks, " and ", micro_batches);
    MP_REQUIRE(static_cast<int>(stash_bound.size()) == ranks, "list_schedule_zero_bubble(", kind, "): ",
               stash_bound.size(), " stash bounds for ", ranks, " ranks");
    for (int rank = 0; rank < ranks; ++rank)
        MP_REQUIRE(stash_bound[static_cast<size_t>(rank)] >= 1, "list_schedule_zero_bubble(", kind, "): rank ", rank,
                   " may stash ", stash_bound[static_cast<size_t>(rank)], " micro-batches (need >= 1)");
    const int stages = static_cast<int>(placement.size());
    for (int stage = 0; stage < stages; ++stage)
        MP_REQUIRE(placement[static_cast<size_t>(stage)] >= 0 && placement[static_cast<size_t>(stage)] < ranks,
                   "list_schedule_zero_bubble(", kind, "): stage ", stage, " placed on rank ",
                   placement[static_cast<size_t>(stage)], " of ", ranks);

    Schedule schedule;
    schedule.kind = kind;
    schedule.ranks = ranks;
    schedule.stages = stages;
    schedule.micro_batches = micro_batches;
    schedule.placement = std::move(placement);
    schedule.actions.resize(static_cast<size_t>(ranks));

    // When each stage's forward and input backward of each micro-batch finish (kNever: not yet).
    std::vector<std::vector<long>> forward_done(static_cast<size_t>(stages),
                                                std::vector<long>(static_cast<size_t>(micro_batches), kNever));
    std::vector<std::vector<long>> input_done = forward_done;
    std::vector<int> next_forward(static_cast<size_t>(stages), 0), next_input(static_cast<size_t>(stages), 0);
    std::vector<std::deque<Action>> pending_weight(static_cast<size_t>(ranks));
    std::vector<int> stashed(static_cast<size_t>(ranks), 0);
    std::vector<long> free_at(static_cast<size_t>(ranks), 0);
    std::vector<std::vector<int>> held(static_cast<size_t>(ranks));
    for (int stage = 0; stage < stages; ++stage) held[static_cast<size_t>(schedule.rank_of(stage))].push_back(stage);

    auto finished_by = [](long done, long t) { return done != kNever && done <= t; };
    const long total = 3L * stages * micro_batches;
    long scheduled = 0;
    for (long t = 0; scheduled < total; ++t) {
        MP_REQUIRE(t <= 4 * total + 4, "list_schedule_zero_bubble(", kind, "): no progress (a bug)");
        for (int rank = 0; rank < ranks; ++rank) {
            const size_t r = static_cast<size_t>(rank);
            if (free_at[r] > t) continue;
            std::optional<Action> pick;
            // 1. The latest stage's ready input backward.
            for (auto it = held[r].rbegin(); it != held[r].rend() && !pick; ++it) {
                const int s = *it;
                const int m = next_input[static_cast<size_t>(s)];
                if (m >= next_forward[static_cast<size_t>(s)]) continue;
                const bool output_gradient_here =
                    s == stages - 1 || finished_by(input_done[static_cast<size_t>(s + 1)][static_cast<size_t>(m)], t);
                if (finished_by(forward_done[static_cast<size_t>(s)][static_cast<size_t>(m)], t) && output_gradient_here)
                    pick = Action{ActionKind::InputBackward, s, m};
            }
            // 2. The latest stage's ready forward, within the stash bound.
            for (auto it = held[r].rbegin(); it != held[r].rend() && !pick && stashed[r] < stash_bound[r]; ++it) {
                const int s = *it;
                const int m = next_forward[static_cast<size_t>(s)];
                if (m >= micro_batches) continue;
                if (s == 0 || finished_by(forward_done[static_cast<size_t>(s - 1)][static_cast<size_t>(m)], t))
                    pick = Action{ActionKind::Forward, s, m};
            }
            // 3. The oldest pending weight backward.
            if (!pick && !pending_weight[r].empty()) {
                pick = pending_weight[r].front();
                pending_weight[r].pop_front();
            }
            if (!pick) continue;
            const size_t s = static_cast<size_t>(pick->stage), m = static_cast<size_t>(pick->micro_batch);
            switch (pick->kind) {
                case ActionKind::Forward:
                    forward_done[s][m] = t + 1;
                    ++next_forward[s];
                    ++stashed[r];
                    break;
                case ActionKind::InputBackward:
                    input_done[s][m] = t + 1;
                    ++next_input[s];
                    --stashed[r];
                    pending_weight[r].push_back(Action{ActionKind::WeightBackward, pick->stage, pick->micro_batch});
                    break;
                case ActionKind::WeightBackward: break;
                case ActionKind::Backward:
                case ActionKind::SendActivation:
                case ActionKind::RecvActivation:
                case ActionKind::SendGradient:
                case ActionKind::RecvGradient:
                case ActionKind::OptimizerStep: throw std::logic_error("list_schedule_zero_bubble: unexpected pick");
            }
            free_at[r] = t + 1;
            schedule.actions[r].push_back(*pick);
            ++scheduled;
        }
    }
    for (std::vector<Action>& list : schedule.actions) list.push_back(Action{ActionKind::OptimizerStep, -1, -1});
    return schedule;
}

Schedule generate_zb_h1(int ranks, int micro_batches, int) {
    std::vector<int> bound(static_cast<size_t>(ranks));
    for (int stage = 0; stage < ranks; ++stage) bound[static_cast<size_t>(stage)] = ranks - stage;
    return list_schedule_zero_bubble("zb-h1", ranks, micro_batches, identity_placement(ranks), bound);
}

Schedule generate_zb_h2(int ranks, int micro_batches, int) {
    std::vector<int> bound(static_cast<size_t>(ranks));
    for (int stage = 0; stage < ranks; ++stage) bound[static_cast<size_t>(stage)] = 2 * (ranks - stage) - 1;
    return list_schedule_zero_bubble("zb-h2", ranks, micro_batches, identity_placement(ranks), bound);
}

Schedule generate_zbv(int ranks, int micro_batches, int) {
    return list_schedule_zero_bubble("zbv", ranks, micro_batches, v_shape_placement(ranks),
                                     std::vector<int>(static_cast<size_t>(ranks), 2 * ranks));
}

}  // namespace mp::pipeline
