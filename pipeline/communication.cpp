// add_communication: the sends and receives a schedule's placement needs, inserted between its
// compute actions and grouped where the strict model would otherwise deadlock (see
// communication.h); split from schedule.cpp so that the vocabulary and this algorithm read apart.
#include "pipeline/communication.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>

#include "base/error.h"
#include "pipeline/validate.h"

namespace mp::pipeline {

namespace {

// The transfer a compute action on `rank` needs before it runs, if its input (F) or its output's
// gradient (B, I) comes from a stage on another rank.
std::optional<Action> receive_before(const Schedule& schedule, int rank, const Action& action) {
    const int s = action.stage;
    switch (action.kind) {
        case ActionKind::Forward:
            if (s > 0 && schedule.rank_of(s - 1) != rank)
                return Action{ActionKind::RecvActivation, s, action.micro_batch};
            return std::nullopt;
        case ActionKind::Backward:
        case ActionKind::InputBackward:
            if (s < schedule.stages - 1 && schedule.rank_of(s + 1) != rank)
                return Action{ActionKind::RecvGradient, s, action.micro_batch};
            return std::nullopt;
        case ActionKind::WeightBackward:
        case ActionKind::SendActivation:
        case ActionKind::RecvActivation:
        case ActionKind::SendGradient:
        case ActionKind::RecvGradient:
        case ActionKind::OptimizerStep: return std::nullopt;
    }
    return std::nullopt;
}

// The transfer a compute action on `rank` is followed by, if its output (F) or its input's
// gradient (B, I) goes to a stage on another rank.
std::optional<Action> send_after(const Schedule& schedule, int rank, const Action& action) {
    const int s = action.stage;
    switch (action.kind) {
        case ActionKind::Forward:
            if (s < schedule.stages - 1 && schedule.rank_of(s + 1) != rank)
                return Action{ActionKind::SendActivation, s, action.micro_batch};
            return std::nullopt;
        case ActionKind::Backward:
        case ActionKind::InputBackward:
            if (s > 0 && schedule.rank_of(s - 1) != rank)
                return Action{ActionKind::SendGradient, s, action.micro_batch};
            return std::nullopt;
        case ActionKind::WeightBackward:
        case ActionKind::SendActivation:
        case ActionKind::RecvActivation:
        case ActionKind::SendGradient:
        case ActionKind::RecvGradient:
        case ActionKind::OptimizerStep: return std::nullopt;
    }
    return std::nullopt;
}

// Resolves one edge of a waiting cycle: rank `wait.rank` is blocked in a send whose receive sits
// later in the list of `receiver` (blocked in its own group [receiver_group_begin, receiver_group_end)).
// The receive — with every receive from the same sender between that group and it, so that
// messages on the channel keep their order — moves up into the receiver's group, which is then
// posted together. Receiving earlier is always legal: a receive needs only its buffer. Where the
// receive is the next action after the group this is just batching the gap ("send gradient +
// receive activation" in 1F1B); further away it is the prefetch of Megatron's interleaved schedule.
void hoist_receive(const Schedule& schedule, std::vector<Action>& receiver, int sender, size_t receiver_group_end,
                   size_t receive_index) {
    // Group numbers of the actions after the receiver's group, so that what stays keeps its groups.
    std::vector<int> group_of(receiver.size(), 0);
    int group = 0;
    for (size_t i = receiver_group_end; i < receiver.size(); ++i) {
        group_of[i] = group;
        if (!receiver[i].batched_with_next) ++group;
    }
    std::vector<Action> hoisted, rest;
    std::vector<int> rest_groups;
    for (size_t i = receiver_group_end; i < receiver.size(); ++i) {
        const Action& action = receiver[i];
        const bool from_sender = is_communication(action.kind) && !is_send(action.kind) &&
                                 schedule.rank_of(peer_stage(action)) == sender;
        if (i <= receive_index && from_sender) {
            hoisted.push_back(action);
        } else {
            rest.push_back(action);
            rest_groups.push_back(group_of[i]);
        }
    }
    for (size_t i = 0; i < rest.size(); ++i)
        rest[i].batched_with_next = i + 1 < rest.size() && rest_groups[i + 1] == rest_groups[i];
    for (Action& action : hoisted) action.batched_with_next = true;
    hoisted.back().batched_with_next = false;
    receiver.resize(receiver_group_end);
    receiver.back().batched_with_next = true;  // the group now goes on with the hoisted receives
    receiver.insert(receiver.end(), hoisted.begin(), hoisted.end());
    receiver.insert(receiver.end(), rest.begin(), rest.end());
}

// Moves the receive at `index` down to right before the compute action that needs it, if another
// compute action comes first; returns whether it moved. The groups it leaves keep their members.
bool sink_receive(const Schedule& schedule, std::vector<Action>& list, int rank, size_t index) {
    const Action receive = list[index];
    size_t consumer = index + 1;
    while (consumer < list.size()) {
        std::optional<Action> needed = receive_before(schedule, rank, list[consumer]);
        const Action wanted{receive.kind, receive.stage, receive.micro_batch};
        if (is_compute(list[consumer].kind) && needed && *needed == wanted) break;
        ++consumer;
    }
    bool compute_between = false;
    for (size_t i = index + 1; i < consumer; ++i) compute_between = compute_between || is_compute(list[i].kind);
    if (consumer == list.size() || !compute_between) return false;
    // Unlink it from its group: the action before it in the group ends the group where it ended.
    if (index > 0 && list[index - 1].batched_with_next && !receive.batched_with_next)
        list[index - 1].batched_with_next = false;
    list.erase(list.begin() + static_cast<std::ptrdiff_t>(index));
    Action moved{receive.kind, receive.stage, receive.micro_batch};
    list.insert(list.begin() + static_cast<std::ptrdiff_t>(consumer - 1), moved);
    return true;
}

// Moves the send at `index` up to right after the compute action that produced it, if another
// compute action comes between them; returns whether it moved.
bool raise_send(std::vector<Action>& list, size_t index) {
    const Action send = list[index];
    if (!is_send(send.kind)) return false;
    size_t producer = index;
    bool compute_between = false;
    while (producer > 0) {
        --producer;
        const Action& action = list[producer];
        const bool produces = action.stage == send.stage && action.micro_batch == send.micro_batch &&
                              (send.kind == ActionKind::SendActivation ? action.kind == ActionKind::Forward
                                                                        : produces_input_gradient(action.kind));
        if (produces) break;
        compute_between = compute_between || is_compute(action.kind);
    }
    if (!compute_between) return false;
    if (index > 0 && list[index - 1].batched_with_next && !send.batched_with_next)
        list[index - 1].batched_with_next = false;
    list.erase(list.begin() + static_cast<std::ptrdiff_t>(index));
    list.insert(list.begin() + static_cast<std::ptrdiff_t>(producer) + 1,
                Action{send.kind, send.stage, send.micro_batch});
    return true;
}

// When each compute action of a compute-only schedule starts and ends at unit costs (F = I = W =
// 1, B = 2, the step 0) with free transfers: each rank runs its list in order, each action as
// soon as the rank is free and its input (or its output's gradient) is ready. [rank][index].
struct UnitTimes {
    std::vector<std::vector<long>> start, end;
};

UnitTimes unit_times(const Schedule& schedule) {
    const size_t ranks = schedule.actions.size();
    UnitTimes times;
    times.start.resize(ranks);
    times.end.resize(ranks);
    for (size_t r = 0; r < ranks; ++r) {
        times.start[r].assign(schedule.actions[r].size(), -1);
        times.end[r].assign(schedule.actions[r].size(), -1);
    }
    // Finish times of forwards and of input gradients, by (stage, micro-batch).
    std::map<std::pair<int, int>, long> forward_end, input_end;
    std::vector<size_t> next(ranks, 0);
    std::vector<long> free_at(ranks, 0);
    for (bool progress = true; progress;) {
        progress = false;
        for (size_t r = 0; r < ranks; ++r) {
            const std::vector<Action>& list = schedule.actions[r];
            while (next[r] < list.size()) {
                const Action& a = list[next[r]];
                long ready = free_at[r];
                long duration = 0;
                bool waits = false;
                auto need = [&](const std::map<std::pair<int, int>, long>& done, int stage, int m) {
                    auto it = done.find({stage, m});
                    if (it == done.end()) waits = true;
                    else ready = std::max(ready, it->second);
                };
                switch (a.kind) {
                    case ActionKind::Forward:
                        if (a.stage > 0) need(forward_end, a.stage - 1, a.micro_batch);
                        duration = 1;
                        break;
                    case ActionKind::Backward:
                    case ActionKind::InputBackward:
                        need(forward_end, a.stage, a.micro_batch);
                        if (a.stage < schedule.stages - 1) need(input_end, a.stage + 1, a.micro_batch);
                        duration = a.kind == ActionKind::Backward ? 2 : 1;
                        break;
                    case ActionKind::WeightBackward:
                        need(input_end, a.stage, a.micro_batch);
                        duration = 1;
                        break;
                    case ActionKind::OptimizerStep: break;
                    case ActionKind::SendActivation:
                    case ActionKind::RecvActivation:
                    case ActionKind::SendGradient:
                    case ActionKind::RecvGradient:
                        throw std::logic_error("add_communication: unit_times of a schedule with transfers");
                }
                if (waits) break;
                times.start[r][next[r]] = ready;
                times.end[r][next[r]] = free_at[r] = ready + duration;
                if (a.kind == ActionKind::Forward) forward_end[{a.stage, a.micro_batch}] = ready + duration;
                if (produces_input_gradient(a.kind)) input_end[{a.stage, a.micro_batch}] = ready + duration;
                ++next[r];
                progress = true;
            }
        }
    }
    for (size_t r = 0; r < ranks; ++r)
        if (next[r] < schedule.actions[r].size())
            throw std::logic_error(str("add_communication: schedule '", schedule.name, "' deadlocks in its compute ",
                                       "order: rank ", r, " waits forever at action ", next[r], " (",
                                       to_string(schedule.actions[r][next[r]]), ")"));
    return times;
}

// Exchange::AtReadyTime: every transfer at the instant its producer ends under unit costs, on both
// ranks, grouped per rank and instant, before the first compute action that starts at or after it.
void add_communication_at_ready_time(Schedule& schedule) {
    const UnitTimes times = unit_times(schedule);
    const size_t ranks = schedule.actions.size();
    // Transfers of each rank by instant; the sends in the order they were produced, then the receives.
    std::vector<std::map<long, std::vector<Action>>> sends(ranks), receives(ranks);
    for (size_t r = 0; r < ranks; ++r) {
        const std::vector<Action>& list = schedule.actions[r];
        for (size_t i = 0; i < list.size(); ++i) {
            std::optional<Action> send = send_after(schedule, static_cast<int>(r), list[i]);
            if (!send) continue;
            const long at = times.end[r][i];
            sends[r][at].push_back(*send);
            const size_t receiver = static_cast<size_t>(schedule.rank_of(peer_stage(*send)));
            receives[receiver][at].push_back(Action{matching_kind(send->kind), peer_stage(*send), send->micro_batch});
        }
    }
    for (size_t r = 0; r < ranks; ++r) {
        const std::vector<Action> compute = schedule.actions[r];
        std::vector<Action> with_transfers;
        std::map<long, std::vector<Action>> groups;
        for (auto& [at, list] : sends[r]) groups[at] = list;
        for (auto& [at, list] : receives[r]) groups[at].insert(groups[at].end(), list.begin(), list.end());
        auto flush_until = [&](long until) {
            while (!groups.empty() && groups.begin()->first <= until) {
                std::vector<Action>& group = groups.begin()->second;
                for (size_t k = 0; k < group.size(); ++k) {
                    group[k].batched_with_next = k + 1 < group.size();
                    with_transfers.push_back(group[k]);
                }
                groups.erase(groups.begin());
            }
        };
        for (size_t i = 0; i < compute.size(); ++i) {
            // The step goes after every transfer; a compute action after those of its start.
            flush_until(compute[i].kind == ActionKind::OptimizerStep ? std::numeric_limits<long>::max()
                                                                     : times.start[r][i]);
            with_transfers.push_back(compute[i]);
        }
        flush_until(std::numeric_limits<long>::max());
        schedule.actions[r] = std::move(with_transfers);
    }
}

}  // namespace

void add_communication(Schedule& schedule, Exchange exchange) {
    for (int rank = 0; rank < static_cast<int>(schedule.actions.size()); ++rank) {
        const std::vector<Action>& compute = schedule.actions[static_cast<size_t>(rank)];
        for (const Action& action : compute)
            MP_REQUIRE(!is_communication(action.kind), "add_communication: schedule '", schedule.name, "' rank ", rank,
                       " already holds communication (", to_string(action), ")");
    }
    if (exchange == Exchange::AtReadyTime) {
        add_communication_at_ready_time(schedule);
        ValidationResult result = validate(schedule);
        if (!result.ok)
            throw std::logic_error(
                str("add_communication: schedule '", schedule.name, "' at ready time: ", result.error));
        return;
    }
    for (int rank = 0; rank < static_cast<int>(schedule.actions.size()); ++rank) {
        const std::vector<Action>& compute = schedule.actions[static_cast<size_t>(rank)];
        // Units of compute actions that run back to back: one action, or with
        // Exchange::PerForwardBackwardPair a forward and the backward right after it.
        std::vector<Action> with_transfers;
        for (size_t first = 0; first < compute.size();) {
            size_t end = first + 1;
            if (exchange == Exchange::PerForwardBackwardPair && compute[first].kind == ActionKind::Forward &&
                end < compute.size() && produces_input_gradient(compute[end].kind))
                ++end;
            for (size_t i = first; i < end; ++i)
                if (std::optional<Action> receive = receive_before(schedule, rank, compute[i]))
                    with_transfers.push_back(*receive);
            for (size_t i = first; i < end; ++i) with_transfers.push_back(compute[i]);
            for (size_t i = first; i < end; ++i)
                if (std::optional<Action> send = send_after(schedule, rank, compute[i]))
                    with_transfers.push_back(*send);
            first = end;
        }
        schedule.actions[static_cast<size_t>(rank)] = std::move(with_transfers);
    }

    // Group only where posting one transfer at a time would deadlock. Each round resolves one
    // waiting cycle: every rank of it that is blocked in a send gets the matching receive moved
    // up into the receiver's posted group. Receives only ever move up, and each round moves at
    // least one, so the loop ends.
    auto unit_time = [](int, const Action&) { return 1.0; };
    for (;;) {
        ReplayResult replayed = replay(schedule, unit_time, 0.0);
        if (replayed.ok) return;
        if (replayed.waiting_cycle.empty())
            throw std::logic_error(str("add_communication: schedule '", schedule.name, "': ", replayed.error));
        // Each rank of the cycle is the receiver of exactly one edge, so moving actions inside one
        // rank's list leaves the indices of the others' edges intact.
        bool changed = false;
        for (const ReplayResult::Wait& wait : replayed.waiting_cycle) {
            const Action& blocked = schedule.actions[static_cast<size_t>(wait.rank)][static_cast<size_t>(wait.index)];
            if (!is_send(blocked.kind)) continue;
            // The receiver's own posted group, from the same replay.
            const ReplayResult::Wait* receiver_wait = nullptr;
            for (const ReplayResult::Wait& other : replayed.waiting_cycle)
                if (other.rank == wait.partner_rank) receiver_wait = &other;
            if (receiver_wait == nullptr) continue;
            hoist_receive(schedule, schedule.actions[static_cast<size_t>(wait.partner_rank)], wait.rank,
                          static_cast<size_t>(receiver_wait->group_end), static_cast<size_t>(wait.partner_index));
            changed = true;
        }
        // Every rank of the cycle waits to receive: a receive posted ahead of a compute action
        // it is not needed by (a forward-backward pair's receives go before the pair) moves down
        // to right before the action that needs it.
        // Or a send held back behind a later compute action (a pair's sends go after the pair)
        // moves up to right after the action that produced it.
        for (const ReplayResult::Wait& wait : replayed.waiting_cycle) {
            if (changed) break;
            changed = sink_receive(schedule, schedule.actions[static_cast<size_t>(wait.rank)], wait.rank,
                                   static_cast<size_t>(wait.index));
        }
        for (const ReplayResult::Wait& wait : replayed.waiting_cycle) {
            if (changed) break;
            changed = raise_send(schedule.actions[static_cast<size_t>(wait.partner_rank)],
                                 static_cast<size_t>(wait.partner_index));
        }
        if (!changed)
            throw std::logic_error(str("add_communication: schedule '", schedule.name,
                                       "' deadlocks in its compute order (every rank of the cycle waits to receive): ",
                                       replayed.error));
    }
}

}  // namespace mp::pipeline
