// The validator: per-stage checks (check_stages), then a replay of all stages against each other
// under the strict rendezvous model (replay), which the simulator reuses with real costs. On a
// deadlock the replay follows who-waits-for-whom to the root cause and names it.
#include "pipeline/validate.h"

#include <algorithm>
#include <array>

#include "kernels/common/error.h"

namespace mp::pipeline {

namespace {

constexpr int kNumKinds = 7;

int kind_index(ActionKind kind) { return static_cast<int>(kind); }

// "stage 2 action 5 (RecvGrad1)"
std::string where(int stage, int index, const Action& action) {
    return str("stage ", stage, " action ", index, " (", to_string(action), ")");
}

ValidationResult failure(std::string error) { return {false, std::move(error)}; }

// What one stage has done so far, while its list is checked in order.
struct StageProgress {
    explicit StageProgress(int micro_batches)
        : forwarded(micro_batches, false),
          backwarded(micro_batches, false),
          activation_sent(micro_batches, false),
          activation_received(micro_batches, false),
          gradient_sent(micro_batches, false),
          gradient_received(micro_batches, false) {}
    std::vector<bool> forwarded, backwarded;
    std::vector<bool> activation_sent, activation_received;
    std::vector<bool> gradient_sent, gradient_received;
};

// Checks one action against what its stage has done before it; returns "" when it is legal.
std::string check_action(const Action& action, int stage, int stages, StageProgress& done) {
    const int m = action.micro_batch;
    const bool last_stage = stage == stages - 1;
    switch (action.kind) {
        case ActionKind::Forward:
            if (done.forwarded[m]) return str("forwards micro-batch ", m, " a second time");
            if (stage > 0 && !done.activation_received[m])
                return str("forward of micro-batch ", m, " before its activation is received (no earlier RecvAct", m, ")");
            done.forwarded[m] = true;
            return "";
        case ActionKind::Backward:
            if (done.backwarded[m]) return str("backwards micro-batch ", m, " a second time");
            if (!done.forwarded[m]) return str("backward of micro-batch ", m, " before its forward (no earlier F", m, ")");
            if (!last_stage && !done.gradient_received[m])
                return str("backward of micro-batch ", m, " before its gradient is received (no earlier RecvGrad", m, ")");
            done.backwarded[m] = true;
            return "";
        case ActionKind::SendActivation:
            if (done.activation_sent[m]) return str("sends the activation of micro-batch ", m, " a second time");
            if (!done.forwarded[m]) return str("sends the activation of micro-batch ", m, " before its forward (no earlier F", m, ")");
            done.activation_sent[m] = true;
            return "";
        case ActionKind::RecvActivation:
            if (done.activation_received[m]) return str("receives the activation of micro-batch ", m, " a second time");
            done.activation_received[m] = true;
            return "";
        case ActionKind::SendGradient:
            if (done.gradient_sent[m]) return str("sends the gradient of micro-batch ", m, " a second time");
            if (!done.backwarded[m]) return str("sends the gradient of micro-batch ", m, " before its backward (no earlier B", m, ")");
            done.gradient_sent[m] = true;
            return "";
        case ActionKind::RecvGradient:
            if (done.gradient_received[m]) return str("receives the gradient of micro-batch ", m, " a second time");
            done.gradient_received[m] = true;
            return "";
        case ActionKind::OptimizerStep:
            for (int other = 0; other < static_cast<int>(done.forwarded.size()); ++other) {
                if (!done.forwarded[other]) return str("optimizer step before the forward of micro-batch ", other);
                if (!done.backwarded[other]) return str("optimizer step before the backward of micro-batch ", other);
            }
            return "";
    }
    return "unknown action kind";
}

// Shape of the action itself: micro-batch in range, a peer that exists, a well-formed group.
std::string check_shape(const std::vector<Action>& list, size_t index, int stage, int stages, int micro_batches) {
    const Action& action = list[index];
    if (action.kind != ActionKind::OptimizerStep && (action.micro_batch < 0 || action.micro_batch >= micro_batches))
        return str("micro-batch ", action.micro_batch, " is out of range [0, ", micro_batches, ")");
    if (is_communication(action.kind)) {
        int peer = peer_stage(stage, action.kind);
        if (peer < 0) return str("stage 0 has no previous stage to ", is_send(action.kind) ? "send to" : "receive from");
        if (peer >= stages)
            return str("the last stage (", stage, ") has no next stage to ", is_send(action.kind) ? "send to" : "receive from");
    }
    if (action.batched_with_next) {
        if (!is_communication(action.kind)) return "batched_with_next is set on an action that is not communication";
        if (index + 1 == list.size()) return "batched_with_next is set on the last action of the stage";
        if (!is_communication(list[index + 1].kind))
            return str("batched_with_next chains to ", to_string(list[index + 1]), ", which is not communication");
    }
    return "";
}

}  // namespace

ValidationResult check_stages(const Schedule& schedule) {
    const int stages = schedule.stages;
    const int micro_batches = schedule.micro_batches;
    if (stages < 1) return failure(str("schedule '", schedule.kind, "' has ", stages, " stages (need >= 1)"));
    if (micro_batches < 1)
        return failure(str("schedule '", schedule.kind, "' has ", micro_batches, " micro-batches (need >= 1)"));
    if (static_cast<int>(schedule.actions.size()) != stages)
        return failure(str("schedule '", schedule.kind, "' has ", schedule.actions.size(), " action lists for ", stages, " stages"));

    for (int stage = 0; stage < stages; ++stage) {
        const std::vector<Action>& list = schedule.actions[stage];
        StageProgress done(micro_batches);
        int steps = 0;
        for (size_t index = 0; index < list.size(); ++index) {
            const Action& action = list[index];
            const int position = static_cast<int>(index);
            if (steps > 0) return failure(where(stage, position, action) + ": comes after the optimizer step");
            std::string problem = check_shape(list, index, stage, stages, micro_batches);
            if (problem.empty()) problem = check_action(action, stage, stages, done);
            if (!problem.empty()) return failure(where(stage, position, action) + ": " + problem);
            if (action.kind == ActionKind::OptimizerStep) ++steps;
        }
        if (steps == 0) {
            for (int m = 0; m < micro_batches; ++m) {
                if (!done.forwarded[m]) return failure(str("stage ", stage, ": micro-batch ", m, " is never forwarded"));
                if (!done.backwarded[m]) return failure(str("stage ", stage, ": micro-batch ", m, " is never backwarded"));
            }
            return failure(str("stage ", stage, ": no OptimizerStep at the end of its ", list.size(), " actions"));
        }
    }
    return {};
}

namespace {

// The replay of all stages against each other. Each stage runs its compute actions at once and
// blocks at a communication group until every operation in it is matched; matching pairs the
// n-th send of a kind with the peer's n-th receive of the matching kind (FIFO channels).
class Replay {
  public:
    Replay(const Schedule& schedule, const std::function<double(int, const Action&)>& compute_time, double transfer)
        : schedule_(schedule), compute_time_(compute_time), transfer_(transfer) {
        const int stages = schedule.stages;
        ordinal_.resize(stages);
        indices_of_kind_.resize(stages);
        posted_count_.assign(stages, std::array<int, kNumKinds>{});
        post_time_.resize(stages);
        states_.resize(stages);
        result_.timeline.resize(stages);
        for (int stage = 0; stage < stages; ++stage) {
            const std::vector<Action>& list = schedule.actions[stage];
            post_time_[stage].assign(list.size(), 0.0);
            for (size_t index = 0; index < list.size(); ++index) {
                std::vector<int>& same_kind = indices_of_kind_[stage][kind_index(list[index].kind)];
                ordinal_[stage].push_back(static_cast<int>(same_kind.size()));
                same_kind.push_back(static_cast<int>(index));
            }
        }
    }

    ReplayResult run() {
        bool progress = true;
        while (progress && result_.ok) {
            progress = false;
            for (int stage = 0; stage < schedule_.stages && result_.ok; ++stage)
                while (result_.ok && advance(stage)) progress = true;
        }
        if (result_.ok && !all_finished()) fail(explain_deadlock());
        return result_;
    }

  private:
    struct StageState {
        size_t next = 0;            // index of the next action to run
        bool group_posted = false;  // the group starting at `next` is posted and waiting
        size_t group_end = 0;       // one past the last action of the posted group
        double clock = 0.0;         // when the stage finished its previous action
    };

    // The operation that matches action `index` of `stage`, once the peer has it in its list.
    struct Partner {
        int stage = -1;
        int index = -1;  // -1: the peer's list has no such operation at all
        bool posted = false;
    };

    Partner partner_of(int stage, int index) const {
        const Action& action = schedule_.actions[stage][index];
        Partner partner;
        partner.stage = peer_stage(stage, action.kind);
        const int kind = kind_index(matching_kind(action.kind));
        const int ordinal = ordinal_[stage][index];
        const std::vector<int>& candidates = indices_of_kind_[partner.stage][kind];
        if (ordinal < static_cast<int>(candidates.size())) partner.index = candidates[ordinal];
        partner.posted = posted_count_[partner.stage][kind] > ordinal;
        return partner;
    }

    const Action& action_at(int stage, size_t index) const { return schedule_.actions[stage][index]; }

    void fail(std::string error) {
        result_.ok = false;
        result_.error = std::move(error);
    }

    bool all_finished() const {
        for (int stage = 0; stage < schedule_.stages; ++stage)
            if (states_[stage].next < schedule_.actions[stage].size()) return false;
        return true;
    }

    // Runs the next action of `stage` if it can; returns whether anything changed.
    bool advance(int stage) {
        StageState& state = states_[stage];
        const std::vector<Action>& list = schedule_.actions[stage];
        if (state.next >= list.size()) return false;
        const Action& action = list[state.next];

        if (!is_communication(action.kind)) {
            const double duration = compute_time_(stage, action);
            result_.timeline[stage].push_back({static_cast<int>(state.next), action, state.clock, state.clock + duration});
            state.clock += duration;
            ++state.next;
            return true;
        }

        if (!state.group_posted) {
            size_t end = state.next;
            while (list[end].batched_with_next) ++end;
            state.group_end = end + 1;
            state.group_posted = true;
            for (size_t index = state.next; index < state.group_end; ++index) {
                post_time_[stage][index] = state.clock;
                ++posted_count_[stage][kind_index(list[index].kind)];
            }
            return true;
        }

        // Every operation of the group must be matched; a matched pair must agree on the micro-batch.
        for (size_t index = state.next; index < state.group_end; ++index) {
            Partner partner = partner_of(stage, static_cast<int>(index));
            if (!partner.posted) return false;
            if (action_at(partner.stage, partner.index).micro_batch != list[index].micro_batch) {
                fail(fifo_mismatch(stage, static_cast<int>(index), partner));
                return false;
            }
        }
        double group_done = state.clock;
        for (size_t index = state.next; index < state.group_end; ++index) {
            Partner partner = partner_of(stage, static_cast<int>(index));
            const double both_posted = std::max(post_time_[stage][index], post_time_[partner.stage][partner.index]);
            const double done = both_posted + transfer_;
            result_.timeline[stage].push_back({static_cast<int>(index), list[index], post_time_[stage][index], done});
            group_done = std::max(group_done, done);
        }
        state.clock = group_done;
        state.next = state.group_end;
        state.group_posted = false;
        return true;
    }

    // Names the receive first, whichever side noticed the mismatch.
    std::string fifo_mismatch(int stage, int index, const Partner& partner) const {
        int receive_stage = stage, receive_index = index, send_stage = partner.stage, send_index = partner.index;
        if (is_send(action_at(stage, index).kind)) {
            std::swap(receive_stage, send_stage);
            std::swap(receive_index, send_index);
        }
        const Action& receive = action_at(receive_stage, receive_index);
        const Action& send = action_at(send_stage, send_index);
        const char* what = receive.kind == ActionKind::RecvActivation ? "activation" : "gradient";
        return str(where(receive_stage, receive_index, receive), ": receives micro-batch ", receive.micro_batch,
                   ", but messages arrive in FIFO order and the oldest unmatched ", what, " from stage ", send_stage,
                   " is ", where(send_stage, send_index, send));
    }

    // The first operation of the stage's posted group that is still unmatched.
    int first_unmatched(int stage) const {
        const StageState& state = states_[stage];
        for (size_t index = state.next; index < state.group_end; ++index)
            if (!partner_of(stage, static_cast<int>(index)).posted) return static_cast<int>(index);
        return -1;  // not reached for a blocked stage
    }

    // Called when no stage can move and some have not finished. First looks for an operation
    // whose partner does not exist anywhere (a missing send or receive); otherwise every blocked
    // stage waits for another blocked stage, and the two neighbours that wait for each other are
    // named, the lower stage first.
    std::string explain_deadlock() const {
        const int stages = schedule_.stages;
        std::vector<int> blocked;
        for (int stage = 0; stage < stages; ++stage)
            if (states_[stage].next < schedule_.actions[stage].size()) blocked.push_back(stage);

        for (int stage : blocked) {
            const StageState& state = states_[stage];
            for (size_t index = state.next; index < state.group_end; ++index) {
                Partner partner = partner_of(stage, static_cast<int>(index));
                if (partner.index >= 0) continue;
                const Action& action = action_at(stage, index);
                const ActionKind wanted = matching_kind(action.kind);
                const size_t available = indices_of_kind_[partner.stage][kind_index(wanted)].size();
                const bool peer_finished = states_[partner.stage].next >= schedule_.actions[partner.stage].size();
                return str(where(stage, static_cast<int>(index), action), ": waits forever: stage ", partner.stage,
                           peer_finished ? " has finished and" : "", " never posts the matching ", to_string(wanted),
                           " (it has ", available, " ", to_string(wanted), " in all, this is the ",
                           ordinal_[stage][index] + 1, ordinal_suffix(ordinal_[stage][index] + 1), " ",
                           to_string(action.kind), ")");
            }
        }

        // A stage only ever waits for a neighbour, so following the waits from the lowest blocked
        // stage (s -> s + 1 -> s + 2 ...) must turn back somewhere: two neighbours waiting for each
        // other. That pair is the deadlock; everyone else waits for it.
        std::vector<bool> visited(stages, false);
        int stage = blocked.front();
        int waits_for = peer_stage(stage, action_at(stage, first_unmatched(stage)).kind);
        while (!visited[waits_for]) {
            visited[stage] = true;
            stage = waits_for;
            waits_for = peer_stage(stage, action_at(stage, first_unmatched(stage)).kind);
        }
        const int first = std::min(stage, waits_for);
        const int second = std::max(stage, waits_for);
        const int first_index = first_unmatched(first);
        const int second_index = first_unmatched(second);
        return str(where(first, first_index, action_at(first, first_index)), ": waits forever: stage ", second,
                   " is blocked at action ", second_index, " (", to_string(action_at(second, second_index)),
                   "), which waits for stage ", first);
    }

    static const char* ordinal_suffix(int n) {
        if (n % 100 >= 11 && n % 100 <= 13) return "th";
        switch (n % 10) {
            case 1: return "st";
            case 2: return "nd";
            case 3: return "rd";
            default: return "th";
        }
    }

    const Schedule& schedule_;
    const std::function<double(int, const Action&)> compute_time_;
    const double transfer_;
    std::vector<std::vector<int>> ordinal_;                                 // [stage][index]: n-th of its kind
    std::vector<std::array<std::vector<int>, kNumKinds>> indices_of_kind_;  // [stage][kind]: action indices
    std::vector<std::array<int, kNumKinds>> posted_count_;                  // [stage][kind]: how many posted
    std::vector<std::vector<double>> post_time_;                            // [stage][index]
    std::vector<StageState> states_;
    ReplayResult result_;
};

}  // namespace

ReplayResult replay(const Schedule& schedule, const std::function<double(int stage, const Action& action)>& compute_time,
                    double transfer) {
    ValidationResult shape = check_stages(schedule);
    MP_REQUIRE(shape.ok, "replay: the schedule fails its per-stage checks: ", shape.error);
    return Replay(schedule, compute_time, transfer).run();
}

ValidationResult validate(const Schedule& schedule) {
    ValidationResult stages_ok = check_stages(schedule);
    if (!stages_ok.ok) return stages_ok;
    auto unit_time = [](int, const Action&) { return 1.0; };
    ReplayResult replayed = Replay(schedule, unit_time, 0.0).run();
    return {replayed.ok, replayed.error};
}

}  // namespace mp::pipeline
