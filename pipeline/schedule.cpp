// The vocabulary around Action (names, peers, matching kinds, message tags), the placements, the
// compute-only generators (naive, gpipe, 1f1b, 1f1b-split, interleaved-1f1b; the zero-bubble ones
// live in zero_bubble.cpp), the pass that adds communication for a placement, and the registry
// that make_schedule, the config and the tests read.
#include "pipeline/schedule.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

#include "base/error.h"
#include "pipeline/validate.h"
#include "pipeline/zero_bubble.h"

namespace mp::pipeline {

bool operator==(const Action& a, const Action& b) {
    return a.kind == b.kind && a.stage == b.stage && a.micro_batch == b.micro_batch &&
           a.batched_with_next == b.batched_with_next;
}

bool operator!=(const Action& a, const Action& b) { return !(a == b); }

bool is_compute(ActionKind kind) {
    switch (kind) {
        case ActionKind::Forward:
        case ActionKind::Backward:
        case ActionKind::InputBackward:
        case ActionKind::WeightBackward: return true;
        case ActionKind::SendActivation:
        case ActionKind::RecvActivation:
        case ActionKind::SendGradient:
        case ActionKind::RecvGradient:
        case ActionKind::OptimizerStep: return false;
    }
    return false;
}

bool is_communication(ActionKind kind) {
    switch (kind) {
        case ActionKind::SendActivation:
        case ActionKind::RecvActivation:
        case ActionKind::SendGradient:
        case ActionKind::RecvGradient: return true;
        case ActionKind::Forward:
        case ActionKind::Backward:
        case ActionKind::InputBackward:
        case ActionKind::WeightBackward:
        case ActionKind::OptimizerStep: return false;
    }
    return false;
}

bool is_send(ActionKind kind) { return kind == ActionKind::SendActivation || kind == ActionKind::SendGradient; }

bool produces_input_gradient(ActionKind kind) {
    return kind == ActionKind::Backward || kind == ActionKind::InputBackward;
}

ActionKind matching_kind(ActionKind kind) {
    switch (kind) {
        case ActionKind::SendActivation: return ActionKind::RecvActivation;
        case ActionKind::RecvActivation: return ActionKind::SendActivation;
        case ActionKind::SendGradient: return ActionKind::RecvGradient;
        case ActionKind::RecvGradient: return ActionKind::SendGradient;
        case ActionKind::Forward:
        case ActionKind::Backward:
        case ActionKind::InputBackward:
        case ActionKind::WeightBackward:
        case ActionKind::OptimizerStep: break;
    }
    throw std::invalid_argument(str("matching_kind: ", to_string(kind), " is not a communication action"));
}

int peer_stage(const Action& action) {
    switch (action.kind) {
        case ActionKind::SendActivation:
        case ActionKind::RecvGradient: return action.stage + 1;
        case ActionKind::RecvActivation:
        case ActionKind::SendGradient: return action.stage - 1;
        case ActionKind::Forward:
        case ActionKind::Backward:
        case ActionKind::InputBackward:
        case ActionKind::WeightBackward:
        case ActionKind::OptimizerStep: break;
    }
    throw std::invalid_argument(str("peer_stage: ", to_string(action.kind), " is not a communication action"));
}

std::string to_string(ActionKind kind) {
    switch (kind) {
        case ActionKind::Forward: return "F";
        case ActionKind::Backward: return "B";
        case ActionKind::InputBackward: return "I";
        case ActionKind::WeightBackward: return "W";
        case ActionKind::SendActivation: return "SendAct";
        case ActionKind::RecvActivation: return "RecvAct";
        case ActionKind::SendGradient: return "SendGrad";
        case ActionKind::RecvGradient: return "RecvGrad";
        case ActionKind::OptimizerStep: return "Step";
    }
    return "?";
}

std::string short_name(const Action& action) {
    if (action.kind == ActionKind::OptimizerStep) return to_string(action.kind);
    return to_string(action.kind) + std::to_string(action.micro_batch);
}

std::string to_string(const Action& action) {
    if (action.kind == ActionKind::OptimizerStep) return to_string(action.kind);
    return std::to_string(action.stage) + short_name(action);
}

int message_tag(const Action& communication, int micro_batches) {
    int boundary = 0;   // the transfer crosses from stage `boundary` to `boundary + 1` or back
    int direction = 0;  // 0: activation (forward), 1: gradient (backward)
    switch (communication.kind) {
        case ActionKind::SendActivation: boundary = communication.stage; direction = 0; break;
        case ActionKind::RecvActivation: boundary = communication.stage - 1; direction = 0; break;
        case ActionKind::SendGradient: boundary = communication.stage - 1; direction = 1; break;
        case ActionKind::RecvGradient: boundary = communication.stage; direction = 1; break;
        case ActionKind::Forward:
        case ActionKind::Backward:
        case ActionKind::InputBackward:
        case ActionKind::WeightBackward:
        case ActionKind::OptimizerStep:
            throw std::invalid_argument(str("message_tag: ", to_string(communication), " is not a communication action"));
    }
    return (boundary * micro_batches + communication.micro_batch) * 2 + direction;
}

int tags_needed(int stages, int micro_batches) { return stages * micro_batches * 2; }

std::vector<int> identity_placement(int ranks) { return looped_placement(ranks, 1); }

std::vector<int> looped_placement(int ranks, int virtual_stages) {
    MP_REQUIRE(ranks >= 1 && virtual_stages >= 1, "looped_placement: need ranks >= 1 and virtual_stages >= 1, got ",
               ranks, " and ", virtual_stages);
    std::vector<int> placement(static_cast<size_t>(ranks * virtual_stages));
    for (size_t stage = 0; stage < placement.size(); ++stage) placement[stage] = static_cast<int>(stage) % ranks;
    return placement;
}

std::vector<int> v_shape_placement(int ranks) {
    MP_REQUIRE(ranks >= 1, "v_shape_placement: need ranks >= 1, got ", ranks);
    std::vector<int> placement(static_cast<size_t>(2 * ranks));
    for (int rank = 0; rank < ranks; ++rank) {
        placement[static_cast<size_t>(rank)] = rank;
        placement[static_cast<size_t>(2 * ranks - 1 - rank)] = rank;
    }
    return placement;
}

std::vector<int> Schedule::stages_of(int rank) const {
    std::vector<int> held;
    for (int stage = 0; stage < stages; ++stage)
        if (rank_of(stage) == rank) held.push_back(stage);
    return held;
}

bool Schedule::one_stage_per_rank() const {
    if (stages != ranks || static_cast<int>(placement.size()) != stages) return false;
    for (int stage = 0; stage < stages; ++stage)
        if (placement[static_cast<size_t>(stage)] != stage) return false;
    return true;
}

Schedule empty_schedule(const std::string& kind, int ranks, int micro_batches, std::vector<int> placement) {
    Schedule schedule;
    schedule.kind = kind;
    schedule.ranks = ranks;
    schedule.stages = static_cast<int>(placement.size());
    schedule.micro_batches = micro_batches;
    schedule.placement = std::move(placement);
    schedule.actions.resize(static_cast<size_t>(ranks));
    return schedule;
}

std::string display_name(const Schedule& schedule, const Action& action) {
    return schedule.one_stage_per_rank() ? short_name(action) : to_string(action);
}

std::string describe(const Schedule& schedule) {
    std::ostringstream out;
    const char* row_name = schedule.one_stage_per_rank() ? "stage " : "rank ";
    for (size_t rank = 0; rank < schedule.actions.size(); ++rank) {
        out << row_name << rank << ":";
        bool in_group = false;
        for (const Action& action : schedule.actions[rank]) {
            out << " ";
            if (action.batched_with_next && !in_group) {
                out << "[";
                in_group = true;
            }
            out << display_name(schedule, action);
            if (!action.batched_with_next && in_group) {
                out << "]";
                in_group = false;
            }
        }
        if (in_group) out << "]";
        out << "\n";
    }
    return out.str();
}

// ---- add_communication ---------------------------------------------------------------------

namespace {

// The transfer a compute action on `rank` needs before it runs, if its input (F) or its output's
// gradient (B, I) comes from a stage on another rank.
std::optional<Action> receive_before(const Schedule& schedule, int rank, const Action& action) {
    const int s = action.stage;
    switch (action.kind) {
        case ActionKind::Forward:
            if (s > 0 && schedule.rank_of(s - 1) != rank) return Action{ActionKind::RecvActivation, s, action.micro_batch};
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
            if (s > 0 && schedule.rank_of(s - 1) != rank) return Action{ActionKind::SendGradient, s, action.micro_batch};
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
        if (is_compute(list[consumer].kind) && needed && *needed == Action{receive.kind, receive.stage, receive.micro_batch})
            break;
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
    if (index > 0 && list[index - 1].batched_with_next && !send.batched_with_next) list[index - 1].batched_with_next = false;
    list.erase(list.begin() + static_cast<std::ptrdiff_t>(index));
    list.insert(list.begin() + static_cast<std::ptrdiff_t>(producer) + 1, Action{send.kind, send.stage, send.micro_batch});
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
            throw std::logic_error(str("add_communication: schedule '", schedule.kind, "' deadlocks in its compute ",
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
            MP_REQUIRE(!is_communication(action.kind), "add_communication: schedule '", schedule.kind, "' rank ", rank,
                       " already holds communication (", to_string(action), ")");
    }
    if (exchange == Exchange::AtReadyTime) {
        add_communication_at_ready_time(schedule);
        ValidationResult result = validate(schedule);
        if (!result.ok)
            throw std::logic_error(str("add_communication: schedule '", schedule.kind, "' at ready time: ", result.error));
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
                if (std::optional<Action> receive = receive_before(schedule, rank, compute[i])) with_transfers.push_back(*receive);
            for (size_t i = first; i < end; ++i) with_transfers.push_back(compute[i]);
            for (size_t i = first; i < end; ++i)
                if (std::optional<Action> send = send_after(schedule, rank, compute[i])) with_transfers.push_back(*send);
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
            throw std::logic_error(str("add_communication: schedule '", schedule.kind, "': ", replayed.error));
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
            throw std::logic_error(str("add_communication: schedule '", schedule.kind,
                                       "' deadlocks in its compute order (every rank of the cycle waits to receive): ",
                                       replayed.error));
    }
}

// ---- generators ----------------------------------------------------------------------------

namespace {


Action forward(int stage, int micro_batch) { return {ActionKind::Forward, stage, micro_batch}; }
Action backward(int stage, int micro_batch) { return {ActionKind::Backward, stage, micro_batch}; }
Action optimizer_step() { return {ActionKind::OptimizerStep, -1, -1}; }
Action input_backward(int stage, int micro_batch) { return {ActionKind::InputBackward, stage, micro_batch}; }
Action weight_backward(int stage, int micro_batch) { return {ActionKind::WeightBackward, stage, micro_batch}; }

// One micro-batch at a time through every stage, forward then backward (inter-layer model
// parallelism: only one stage is ever busy).
Schedule generate_naive(int ranks, int micro_batches, int) {
    Schedule schedule = empty_schedule("naive", ranks, micro_batches, identity_placement(ranks));
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

// All M forwards, then all M backwards, in micro-batch order.
Schedule generate_gpipe(int ranks, int micro_batches, int) {
    Schedule schedule = empty_schedule("gpipe", ranks, micro_batches, identity_placement(ranks));
    for (int stage = 0; stage < ranks; ++stage) {
        std::vector<Action>& list = schedule.actions[static_cast<size_t>(stage)];
        for (int m = 0; m < micro_batches; ++m) list.push_back(forward(stage, m));
        for (int m = 0; m < micro_batches; ++m) list.push_back(backward(stage, m));
        list.push_back(optimizer_step());
    }
    return schedule;
}

// PipeDream-Flush as in Megatron-LM, in three visible phases; with `split`, each backward is its
// two halves, I then W (see generate_1f1b_split).
Schedule one_f_one_b_order(const std::string& kind, int ranks, int micro_batches, bool split) {
    Schedule schedule = empty_schedule(kind, ranks, micro_batches, identity_placement(ranks));
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

Schedule generate_1f1b(int ranks, int micro_batches, int) {
    return one_f_one_b_order("1f1b", ranks, micro_batches, /*split=*/false);
}

// 1F1B with the backward in two halves (the first step towards zero-bubble schedules, Qi et al.
// 2024): each B becomes I then W. I sends the input's gradient upstream before W computes the
// weights' gradients, so the backward chain through the pipeline costs K·I instead of K·B and
// the bubble shrinks from (K − 1)(F + B) to (K − 1)(F + I). Same order, warm-up and stash as 1F1B.
Schedule generate_1f1b_split(int ranks, int micro_batches, int) {
    return one_f_one_b_order("1f1b-split", ranks, micro_batches, /*split=*/true);
}

// Interleaved 1F1B as in Megatron-LM: rank r holds stages r, r + K, ..., r + (v - 1)K (looped
// placement). The v·M forwards of a rank are taken in groups of K micro-batches per stage: the
// k-th forward of a rank runs micro-batch (k / (K v)) K + k mod K on its chunk (k / K) mod v, the
// k-th backward the same micro-batch on chunk v - 1 - (k / K) mod v. Warm-up: 2 (K - r - 1) +
// (v - 1) K forwards (all of them when fewer, or when M = K), then one forward one backward (each
// pair exchanging its transfers once: Exchange::PerForwardBackwardPair), then the cool-down.
Schedule generate_interleaved_1f1b(int ranks, int micro_batches, int virtual_stages) {
    Schedule schedule =
        empty_schedule("interleaved-1f1b", ranks, micro_batches, looped_placement(ranks, virtual_stages));
    const int total = micro_batches * virtual_stages;  // compute slots of each kind per rank
    auto micro_batch_of = [&](int k) { return (k / (ranks * virtual_stages)) * ranks + k % ranks; };
    auto forward_chunk = [&](int k) { return (k / ranks) % virtual_stages; };
    auto backward_chunk = [&](int k) { return virtual_stages - 1 - (k / ranks) % virtual_stages; };
    for (int rank = 0; rank < ranks; ++rank) {
        std::vector<Action>& list = schedule.actions[static_cast<size_t>(rank)];
        auto forward_slot = [&](int k) { return forward(forward_chunk(k) * ranks + rank, micro_batch_of(k)); };
        auto backward_slot = [&](int k) { return backward(backward_chunk(k) * ranks + rank, micro_batch_of(k)); };
        // With M = K every forward is warm-up (Megatron's all-warm-up case): all forwards, then all backwards.
        const int warmup = micro_batches == ranks ? total
                                                  : std::min(2 * (ranks - rank - 1) + (virtual_stages - 1) * ranks, total);
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

std::string interleaved_rule(int ranks, int micro_batches, int virtual_stages) {
    if (virtual_stages < 2)
        return str("interleaved-1f1b needs virtual_stages >= 2 (stages per rank), got ", virtual_stages,
                   "; with one stage per rank use 1f1b");
    if (micro_batches % ranks != 0)
        return str("interleaved-1f1b needs micro_batches to be a multiple of the ranks (", ranks, "), got ",
                   micro_batches);
    return "";
}

// The rule of the schedules that run one stage per rank.
std::string one_stage_per_rank_rule(const std::string& name, int virtual_stages) {
    if (virtual_stages == 1) return "";
    return str(name, " runs one stage per rank: virtual_stages must be 1, got ", virtual_stages);
}

// Bubble fractions at F = I = W = 1 with free transfers: idle / (busy + idle) per rank.
double fraction(double idle, double busy) { return idle + busy > 0 ? idle / (idle + busy) : 0.0; }
constexpr double kNoClosedForm = std::numeric_limits<double>::quiet_NaN();

}  // namespace

const std::vector<ScheduleInfo>& schedule_registry() {
    static const std::vector<ScheduleInfo> registry = {
        {"naive", "one micro-batch at a time through every stage (only one stage busy)", 1,
         [](int, int, int v) { return one_stage_per_rank_rule("naive", v); }, generate_naive,
         Exchange::AfterEveryAction, [](int K, int, int) { return double(K - 1) / K; }, "(K-1)/K", "1"},
        {"gpipe", "all forwards, then all backwards; every stage stashes M micro-batches", 1,
         [](int, int, int v) { return one_stage_per_rank_rule("gpipe", v); }, generate_gpipe,
         Exchange::AfterEveryAction, [](int K, int M, int) { return fraction(K - 1, M); }, "(K-1)/(M+K-1)", "M"},
        {"1f1b", "warm-up forwards, one forward one backward, cool-down backwards (PipeDream-Flush)", 1,
         [](int, int, int v) { return one_stage_per_rank_rule("1f1b", v); }, generate_1f1b,
         Exchange::AfterEveryAction, [](int K, int M, int) { return fraction(K - 1, M); }, "(K-1)/(M+K-1)",
         "min(K-s, M) on stage s"},
        {"1f1b-split", "1f1b with each backward split into I (sent upstream at once) then W; bubble (K-1)(F+I)", 1,
         [](int, int, int v) { return one_stage_per_rank_rule("1f1b-split", v); }, generate_1f1b_split,
         Exchange::AfterEveryAction, [](int K, int M, int) { return fraction(2.0 * (K - 1), 3.0 * M); },
         "(K-1)(F+I) idle: 2(K-1)/(3M+2(K-1))", "min(K-s, M) on stage s"},
        {"interleaved-1f1b", "1f1b over v looped stages per rank (Megatron-LM); M a multiple of the ranks", 2,
         interleaved_rule, generate_interleaved_1f1b, Exchange::PerForwardBackwardPair,
         [](int K, int M, int v) { return fraction(K - 1, double(v) * M); }, "(K-1)/(vM+K-1)",
         "min((v-1)K + 2(K-r-1) + 1, vM) chunks on rank r (vM when M = K)"},
        {"zb-h1", "zero bubble H1 (Qi et al. 2024): I first, s Ws held back on stage s; bubble (K-1)(F+I-W), 1f1b's memory", 1,
         [](int, int, int v) { return one_stage_per_rank_rule("zb-h1", v); }, generate_zb_h1, Exchange::AtReadyTime,
         [](int K, int M, int) { return M >= K ? fraction(K - 1, 3.0 * M) : kNoClosedForm; },
         "(K-1)(F+I-W) idle: (K-1)/(3M+K-1) for M >= K", "min(K-s, M) on stage s to I, K to W"},
        {"zb-h2", "zero bubble H2: 2(K-s)-1 warm-up forwards, 2s Ws held back; no idle between steps without a barrier", 1,
         [](int, int, int v) { return one_stage_per_rank_rule("zb-h2", v); }, generate_zb_h2, Exchange::AtReadyTime,
         [](int K, int M, int) { return M >= 2 * K - 1 ? fraction(K - 1, 3.0 * M) : kNoClosedForm; },
         "(K-1)/(3M+K-1) per step, 0 between steps without a barrier, for M >= 2K-1", "min(2(K-s)-1, M) on stage s to I, 2K-1 to W"},
        {"zbv", "zero bubble V: rank r holds stages r and 2K-1-r; half of zb-h1's bubble at 1f1b's memory; M >= K", 2,
         [](int K, int M, int v) {
             if (v != 2) return str("zbv places two stages per rank in a V: virtual_stages must be 2, got ", v);
             return M >= K ? std::string() : str("zbv needs micro_batches >= ranks (", K, "), got ", M);
         },
         generate_zbv, Exchange::AtReadyTime,
         [](int K, int M, int) { return M >= 2 * K - 1 ? fraction(K - 1, 6.0 * M) : kNoClosedForm; },
         "(K-1)/(6M+K-1) per step at chunk costs 1, 0 between steps without a barrier, for M >= 2K-1",
         "2K half-stage chunks per rank, to I and to W (1f1b's K whole stages)"},
    };
    return registry;
}

std::vector<std::string> schedule_kinds() {
    std::vector<std::string> names;
    for (const ScheduleInfo& info : schedule_registry()) names.push_back(info.name);
    return names;
}

const ScheduleInfo& schedule_info(const std::string& kind) {
    std::string choices;
    for (const ScheduleInfo& info : schedule_registry()) {
        if (info.name == kind) return info;
        choices += (choices.empty() ? "" : ", ") + info.name;
    }
    throw std::invalid_argument(str("make_schedule: unknown schedule kind '", kind, "' (expected one of ", choices, ")"));
}

Schedule make_compute_schedule(const std::string& kind, int ranks, int micro_batches, int virtual_stages) {
    const ScheduleInfo& info = schedule_info(kind);
    MP_REQUIRE(ranks >= 1, "make_schedule(", kind, "): ranks (pipeline stages) must be >= 1, got ", ranks);
    MP_REQUIRE(micro_batches >= 1, "make_schedule(", kind, "): micro_batches must be >= 1, got ", micro_batches);
    MP_REQUIRE(virtual_stages >= 1, "make_schedule(", kind, "): virtual_stages must be >= 1, got ", virtual_stages);
    const std::string broken = info.rule(ranks, micro_batches, virtual_stages);
    MP_REQUIRE(broken.empty(), "make_schedule(", kind, ", ", ranks, " ranks, ", micro_batches, " micro-batches): ", broken);
    Schedule schedule = info.generate(ranks, micro_batches, virtual_stages);
    schedule.kind = kind;
    return schedule;
}

Schedule make_schedule(const std::string& kind, int ranks, int micro_batches, int virtual_stages) {
    Schedule schedule = make_compute_schedule(kind, ranks, micro_batches, virtual_stages);
    add_communication(schedule, schedule_info(kind).exchange);
    return schedule;
}

}  // namespace mp::pipeline
