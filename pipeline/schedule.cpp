// The vocabulary around Action (names, peers, matching kinds, message tags), the placements, the
// compute-only generators (naive, gpipe, 1f1b), the pass that adds communication for a placement,
// and the registry that make_schedule, the config and the tests read.
#include "pipeline/schedule.h"

#include <algorithm>
#include <optional>
#include <sstream>

#include "kernels/common/error.h"
#include "pipeline/validate.h"

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

// Chains every communication action between the two compute actions around `index` into one
// group; returns whether anything changed.
bool batch_the_gap(std::vector<Action>& list, size_t index) {
    size_t first = index, last = index;
    while (first > 0 && is_communication(list[first - 1].kind)) --first;
    while (last + 1 < list.size() && is_communication(list[last + 1].kind)) ++last;
    bool changed = false;
    for (size_t i = first; i < last; ++i) {
        changed = changed || !list[i].batched_with_next;
        list[i].batched_with_next = true;
    }
    return changed;
}

}  // namespace

void add_communication(Schedule& schedule) {
    for (int rank = 0; rank < static_cast<int>(schedule.actions.size()); ++rank) {
        std::vector<Action> with_transfers;
        for (const Action& action : schedule.actions[static_cast<size_t>(rank)]) {
            MP_REQUIRE(!is_communication(action.kind), "add_communication: schedule '", schedule.kind, "' rank ", rank,
                       " already holds communication (", to_string(action), ")");
            if (std::optional<Action> receive = receive_before(schedule, rank, action)) with_transfers.push_back(*receive);
            with_transfers.push_back(action);
            if (std::optional<Action> send = send_after(schedule, rank, action)) with_transfers.push_back(*send);
        }
        schedule.actions[static_cast<size_t>(rank)] = std::move(with_transfers);
    }

    // Group only where posting one transfer at a time would deadlock. Each round merges the gaps of
    // the ranks in one waiting cycle; a schedule has finitely many gaps, so the loop ends.
    auto unit_time = [](int, const Action&) { return 1.0; };
    for (;;) {
        ReplayResult replayed = replay(schedule, unit_time, 0.0);
        if (replayed.ok) return;
        if (replayed.waiting_cycle.empty())
            throw std::logic_error(str("add_communication: schedule '", schedule.kind, "': ", replayed.error));
        bool changed = false;
        for (const auto& [rank, index] : replayed.waiting_cycle)
            changed = batch_the_gap(schedule.actions[static_cast<size_t>(rank)], static_cast<size_t>(index)) || changed;
        if (!changed)
            throw std::logic_error(str("add_communication: schedule '", schedule.kind,
                                       "' deadlocks even with its transfers batched: ", replayed.error));
    }
}

// ---- generators ----------------------------------------------------------------------------

namespace {

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

Action forward(int stage, int micro_batch) { return {ActionKind::Forward, stage, micro_batch}; }
Action backward(int stage, int micro_batch) { return {ActionKind::Backward, stage, micro_batch}; }
Action optimizer_step() { return {ActionKind::OptimizerStep, -1, -1}; }

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

// PipeDream-Flush as in Megatron-LM, in three visible phases.
Schedule generate_1f1b(int ranks, int micro_batches, int) {
    Schedule schedule = empty_schedule("1f1b", ranks, micro_batches, identity_placement(ranks));
    for (int stage = 0; stage < ranks; ++stage) {
        std::vector<Action>& list = schedule.actions[static_cast<size_t>(stage)];
        const int warmup = std::min(ranks - stage - 1, micro_batches);
        const int steady = micro_batches - warmup;
        // Warm-up: forwards only.
        for (int m = 0; m < warmup; ++m) list.push_back(forward(stage, m));
        // Steady state: iteration i forwards micro-batch warmup + i and backwards micro-batch i.
        for (int i = 0; i < steady; ++i) {
            list.push_back(forward(stage, warmup + i));
            list.push_back(backward(stage, i));
        }
        // Cool-down: the backwards of the warm-up forwards.
        for (int m = steady; m < micro_batches; ++m) list.push_back(backward(stage, m));
        list.push_back(optimizer_step());
    }
    return schedule;
}

// The rule of the schedules that run one stage per rank.
std::string one_stage_per_rank_rule(const std::string& name, int virtual_stages) {
    if (virtual_stages == 1) return "";
    return str(name, " runs one stage per rank: virtual_stages must be 1, got ", virtual_stages);
}

}  // namespace

const std::vector<ScheduleInfo>& schedule_registry() {
    static const std::vector<ScheduleInfo> registry = {
        {"naive", "one micro-batch at a time through every stage (only one stage busy)", 1,
         [](int, int, int v) { return one_stage_per_rank_rule("naive", v); }, generate_naive},
        {"gpipe", "all forwards, then all backwards; every stage stashes M micro-batches", 1,
         [](int, int, int v) { return one_stage_per_rank_rule("gpipe", v); }, generate_gpipe},
        {"1f1b", "warm-up forwards, one forward one backward, cool-down backwards (PipeDream-Flush)", 1,
         [](int, int, int v) { return one_stage_per_rank_rule("1f1b", v); }, generate_1f1b},
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
    add_communication(schedule);
    return schedule;
}

}  // namespace mp::pipeline
