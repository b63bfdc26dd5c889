// The vocabulary of schedules: what each action kind is (compute, transfer, its peer and matching
// kind), the names actions are shown by, message tags, the placements, and describe(). The
// registry and the generators are in schedules.cpp, the transfers pass in communication.cpp.
#include "pipeline/schedule.h"

#include <sstream>

#include "base/error.h"

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
            throw std::invalid_argument(
                str("message_tag: ", to_string(communication), " is not a communication action"));
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

Schedule empty_schedule(int ranks, int micro_batches, std::vector<int> placement) {
    Schedule schedule;
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

}  // namespace mp::pipeline
