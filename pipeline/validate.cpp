// The validator: per-rank checks (check_rank_lists), then a replay of all ranks against each other
// under the strict rendezvous model (replay), which the simulator and add_communication reuse. On
// a deadlock the replay follows who-waits-for-whom to the waiting cycle and names it.
#include "pipeline/validate.h"

#include <algorithm>
#include <map>

#include "base/error.h"

namespace mp::pipeline {

namespace {

// "stage" where every rank holds one stage (stage s on rank s), else "rank".
const char* row_word(const Schedule& schedule) { return schedule.one_stage_per_rank() ? "stage" : "rank"; }

// "stage 2 action 5 (RecvGrad1)", or "rank 2 action 5 (3RecvGrad1)".
std::string where(const Schedule& schedule, int rank, int index, const Action& action) {
    return str(row_word(schedule), " ", rank, " action ", index, " (", display_name(schedule, action), ")");
}

ValidationResult failure(std::string error) { return {false, std::move(error)}; }

// What one rank has done so far for each (stage, micro-batch), while its list is checked in order.
struct RankProgress {
    RankProgress(int stages, int micro_batches)
        : micro_batches(micro_batches),
          forwarded(cells(stages)),
          input_gradient_done(cells(stages)),
          weight_gradient_done(cells(stages)),
          activation_sent(cells(stages)),
          activation_received(cells(stages)),
          gradient_sent(cells(stages)),
          gradient_received(cells(stages)) {}

    std::vector<bool> cells(int stages) const {
        return std::vector<bool>(static_cast<size_t>(stages) * static_cast<size_t>(micro_batches), false);
    }
    static size_t at(int stage, int micro_batch, int micro_batches) {
        return static_cast<size_t>(stage) * static_cast<size_t>(micro_batches) + static_cast<size_t>(micro_batch);
    }
    std::vector<bool>::reference operator()(std::vector<bool>& flags, int stage, int micro_batch) {
        return flags[at(stage, micro_batch, micro_batches)];
    }

    int micro_batches;
    std::vector<bool> forwarded, input_gradient_done, weight_gradient_done;
    std::vector<bool> activation_sent, activation_received;
    std::vector<bool> gradient_sent, gradient_received;
};

// Checks that the input of F(s, m) is there on this rank; "" when it is.
std::string check_input_ready(const Schedule& schedule, int rank, const Action& action, RankProgress& done) {
    const int s = action.stage, m = action.micro_batch;
    if (s == 0) return "";
    if (schedule.rank_of(s - 1) == rank) {
        if (done(done.forwarded, s - 1, m)) return "";
        return str("forward of micro-batch ", m, " before stage ", s - 1, " on this rank forwards it (no earlier ",
                   display_name(schedule, Action{ActionKind::Forward, s - 1, m}), ")");
    }
    if (done(done.activation_received, s, m)) return "";
    return str("forward of micro-batch ", m, " before its activation is received (no earlier ",
               display_name(schedule, Action{ActionKind::RecvActivation, s, m}), ")");
}

// Checks that the gradient of the output of stage s for micro-batch m is there; "" when it is.
std::string check_output_gradient_ready(const Schedule& schedule, int rank, const Action& action, RankProgress& done) {
    const int s = action.stage, m = action.micro_batch;
    const char* what = action.kind == ActionKind::Backward ? "backward" : "input backward";
    if (s == schedule.stages - 1) return "";
    if (schedule.rank_of(s + 1) == rank) {
        if (done(done.input_gradient_done, s + 1, m)) return "";
        return str(what, " of micro-batch ", m, " before stage ", s + 1, " on this rank backwards it (no earlier ",
                   display_name(schedule, Action{ActionKind::Backward, s + 1, m}), " or ",
                   display_name(schedule, Action{ActionKind::InputBackward, s + 1, m}), ")");
    }
    if (done(done.gradient_received, s, m)) return "";
    return str(what, " of micro-batch ", m, " before its gradient is received (no earlier ",
               display_name(schedule, Action{ActionKind::RecvGradient, s, m}), ")");
}

// Checks one action against what its rank has done before it; returns "" when it is legal.
std::string check_action(const Schedule& schedule, int rank, const Action& action, RankProgress& done) {
    const int s = action.stage, m = action.micro_batch;
    auto name = [&](ActionKind kind) { return display_name(schedule, Action{kind, s, m}); };
    switch (action.kind) {
        case ActionKind::Forward: {
            if (done(done.forwarded, s, m)) return str("forwards micro-batch ", m, " a second time");
            std::string problem = check_input_ready(schedule, rank, action, done);
            if (!problem.empty()) return problem;
            done(done.forwarded, s, m) = true;
            return "";
        }
        case ActionKind::Backward:
        case ActionKind::InputBackward: {
            const bool whole = action.kind == ActionKind::Backward;
            if (done(done.input_gradient_done, s, m))
                return str(whole ? "backwards" : "input-backwards", " micro-batch ", m, " a second time");
            if (whole && done(done.weight_gradient_done, s, m))
                return str("backwards micro-batch ", m, " after its weight backward");
            if (!done(done.forwarded, s, m))
                return str(whole ? "backward" : "input backward", " of micro-batch ", m,
                           " before its forward (no earlier ", name(ActionKind::Forward), ")");
            std::string problem = check_output_gradient_ready(schedule, rank, action, done);
            if (!problem.empty()) return problem;
            done(done.input_gradient_done, s, m) = true;
            if (whole) done(done.weight_gradient_done, s, m) = true;
            return "";
        }
        case ActionKind::WeightBackward:
            if (done(done.weight_gradient_done, s, m))
                return str("computes the weight gradients of micro-batch ", m, " a second time");
            if (!done(done.input_gradient_done, s, m))
                return str("weight backward of micro-batch ", m, " before its input backward (no earlier ",
                           name(ActionKind::InputBackward), ")");
            done(done.weight_gradient_done, s, m) = true;
            return "";
        case ActionKind::SendActivation:
            if (done(done.activation_sent, s, m))
                return str("sends the activation of micro-batch ", m, " a second time");
            if (!done(done.forwarded, s, m))
                return str("sends the activation of micro-batch ", m, " before its forward (no earlier ",
                           name(ActionKind::Forward), ")");
            done(done.activation_sent, s, m) = true;
            return "";
        case ActionKind::RecvActivation:
            if (done(done.activation_received, s, m))
                return str("receives the activation of micro-batch ", m, " a second time");
            done(done.activation_received, s, m) = true;
            return "";
        case ActionKind::SendGradient:
            if (done(done.gradient_sent, s, m)) return str("sends the gradient of micro-batch ", m, " a second time");
            if (!done(done.input_gradient_done, s, m))
                return str("sends the gradient of micro-batch ", m, " before its backward (no earlier ",
                           name(ActionKind::Backward), " or ", name(ActionKind::InputBackward), ")");
            done(done.gradient_sent, s, m) = true;
            return "";
        case ActionKind::RecvGradient:
            if (done(done.gradient_received, s, m))
                return str("receives the gradient of micro-batch ", m, " a second time");
            done(done.gradient_received, s, m) = true;
            return "";
        case ActionKind::OptimizerStep:
            for (int stage : schedule.stages_of(rank)) {
                const std::string of_stage = schedule.one_stage_per_rank() ? "" : str(" of stage ", stage);
                for (int other = 0; other < schedule.micro_batches; ++other) {
                    if (!done(done.forwarded, stage, other))
                        return str("optimizer step before the forward", of_stage, " of micro-batch ", other);
                    if (!done(done.input_gradient_done, stage, other))
                        return str("optimizer step before the backward", of_stage, " of micro-batch ", other);
                    if (!done(done.weight_gradient_done, stage, other))
                        return str("optimizer step before the weight backward", of_stage, " of micro-batch ", other);
                }
            }
            return "";
    }
    return "unknown action kind";
}

// Shape of the action itself: stage on this rank, micro-batch in range, a peer that exists on
// another rank, a well-formed group.
std::string check_shape(const Schedule& schedule, int rank, const std::vector<Action>& list, size_t index) {
    const Action& action = list[index];
    if (action.kind != ActionKind::OptimizerStep) {
        if (action.stage < 0 || action.stage >= schedule.stages)
            return str("stage ", action.stage, " is out of range [0, ", schedule.stages, ")");
        if (schedule.rank_of(action.stage) != rank)
            return str("stage ", action.stage, " runs on rank ", schedule.rank_of(action.stage), ", not on rank ",
                       rank);
        if (action.micro_batch < 0 || action.micro_batch >= schedule.micro_batches)
            return str("micro-batch ", action.micro_batch, " is out of range [0, ", schedule.micro_batches, ")");
    }
    if (is_communication(action.kind)) {
        const int peer = peer_stage(action);
        const char* verb = is_send(action.kind) ? "send to" : "receive from";
        if (peer < 0) return str("stage 0 has no previous stage to ", verb);
        if (peer >= schedule.stages) return str("the last stage (", action.stage, ") has no next stage to ", verb);
        if (schedule.rank_of(peer) == rank)
            return str("stage ", peer, " is on this rank too: neighbouring stages on one rank hand over locally, "
                       "without a transfer");
    }
    if (action.batched_with_next) {
        if (!is_communication(action.kind)) return "batched_with_next is set on an action that is not communication";
        if (index + 1 == list.size()) return "batched_with_next is set on the last action of the list";
        if (!is_communication(list[index + 1].kind))
            return str("batched_with_next chains to ", display_name(schedule, list[index + 1]),
                       ", which is not communication");
    }
    return "";
}

// The whole schedule's shape: sizes, the placement, one list per rank.
std::string check_schedule_shape(const Schedule& schedule) {
    const std::string name = str("schedule '", schedule.name, "'");
    if (schedule.ranks < 1) return str(name, " has ", schedule.ranks, " ranks (need >= 1)");
    if (schedule.micro_batches < 1) return str(name, " has ", schedule.micro_batches, " micro-batches (need >= 1)");
    if (schedule.stages < schedule.ranks)
        return str(name, " has ", schedule.stages, " stages for ", schedule.ranks,
                   " ranks (need at least one per rank)");
    if (static_cast<int>(schedule.placement.size()) != schedule.stages)
        return str(name, " places ", schedule.placement.size(), " stages but has ", schedule.stages);
    std::vector<int> held(static_cast<size_t>(schedule.ranks), 0);
    for (int stage = 0; stage < schedule.stages; ++stage) {
        const int rank = schedule.placement[static_cast<size_t>(stage)];
        if (rank < 0 || rank >= schedule.ranks)
            return str(name, " places stage ", stage, " on rank ", rank, ", out of range [0, ", schedule.ranks, ")");
        ++held[static_cast<size_t>(rank)];
    }
    for (int rank = 0; rank < schedule.ranks; ++rank)
        if (held[static_cast<size_t>(rank)] == 0) return str(name, " places no stage on rank ", rank);
    if (static_cast<int>(schedule.actions.size()) != schedule.ranks) {
        const char* unit = schedule.one_stage_per_rank() ? "stages" : "ranks";
        return str(name, " has ", schedule.actions.size(), " action lists for ", schedule.ranks, " ", unit);
    }
    return "";
}

}  // namespace

ValidationResult check_rank_lists(const Schedule& schedule) {
    std::string shape = check_schedule_shape(schedule);
    if (!shape.empty()) return failure(shape);

    for (int rank = 0; rank < schedule.ranks; ++rank) {
        const std::vector<Action>& list = schedule.actions[static_cast<size_t>(rank)];
        RankProgress done(schedule.stages, schedule.micro_batches);
        int steps = 0;
        for (size_t index = 0; index < list.size(); ++index) {
            const Action& action = list[index];
            const int position = static_cast<int>(index);
            if (steps > 0) return failure(where(schedule, rank, position, action) + ": comes after the optimizer step");
            std::string problem = check_shape(schedule, rank, list, index);
            if (problem.empty()) problem = check_action(schedule, rank, action, done);
            if (!problem.empty()) return failure(where(schedule, rank, position, action) + ": " + problem);
            if (action.kind == ActionKind::OptimizerStep) ++steps;
        }
        if (steps == 0) {
            const std::string row = str(row_word(schedule), " ", rank);
            for (int stage : schedule.stages_of(rank)) {
                const std::string of_stage = schedule.one_stage_per_rank() ? "" : str(" of stage ", stage);
                for (int m = 0; m < schedule.micro_batches; ++m) {
                    if (!done(done.forwarded, stage, m))
                        return failure(str(row, ": micro-batch ", m, of_stage, " is never forwarded"));
                    if (!done(done.input_gradient_done, stage, m))
                        return failure(str(row, ": micro-batch ", m, of_stage, " is never backwarded"));
                    if (!done(done.weight_gradient_done, stage, m))
                        return failure(str(row, ": micro-batch ", m, of_stage, " never gets its weight backward"));
                }
            }
            return failure(str(row, ": no OptimizerStep at the end of its ", list.size(), " actions"));
        }
    }
    return {};
}

namespace {

// The replay of all ranks against each other. Each rank runs its compute actions at once and
// blocks at a communication group until every operation in it is matched; matching pairs the
// n-th send from rank a to rank b with the n-th receive on b from a (FIFO channels).
class Replay {
  public:
    Replay(const Schedule& schedule, const std::function<double(int, const Action&)>& compute_time, double transfer)
        : schedule_(schedule), compute_time_(compute_time), transfer_(transfer) {
        const int ranks = schedule.ranks;
        ordinal_.resize(ranks);
        peer_rank_.resize(ranks);
        channel_indices_.resize(ranks);
        posted_count_.resize(ranks);
        post_time_.resize(ranks);
        states_.resize(ranks);
        result_.timeline.resize(ranks);
        for (int rank = 0; rank < ranks; ++rank) {
            const std::vector<Action>& list = schedule.actions[rank];
            post_time_[rank].assign(list.size(), 0.0);
            ordinal_[rank].assign(list.size(), -1);
            peer_rank_[rank].assign(list.size(), -1);
            for (size_t index = 0; index < list.size(); ++index) {
                if (!is_communication(list[index].kind)) continue;
                const int peer = schedule.rank_of(peer_stage(list[index]));
                peer_rank_[rank][index] = peer;
                std::vector<int>& same_channel = channel_indices_[rank][{peer, is_send(list[index].kind)}];
                ordinal_[rank][index] = static_cast<int>(same_channel.size());
                same_channel.push_back(static_cast<int>(index));
            }
        }
    }

    ReplayResult run() {
        bool progress = true;
        while (progress && result_.ok) {
            progress = false;
            for (int rank = 0; rank < schedule_.ranks && result_.ok; ++rank)
                while (result_.ok && advance(rank)) progress = true;
        }
        if (result_.ok && !all_finished()) fail(explain_deadlock());
        return result_;
    }

  private:
    struct RankState {
        size_t next = 0;            // index of the next action to run
        bool group_posted = false;  // the group starting at `next` is posted and waiting
        size_t group_end = 0;       // one past the last action of the posted group
        double clock = 0.0;         // when the rank finished its previous action
    };

    // The operation that matches action `index` of `rank`, once the peer has it in its list.
    struct Partner {
        int rank = -1;
        int index = -1;  // -1: the peer's list has no such operation at all
        bool posted = false;
    };

    using Channel = std::pair<int, bool>;  // (peer rank, whether this side sends)

    const std::vector<int>& channel(int rank, const Channel& key) const {
        static const std::vector<int> none;
        auto found = channel_indices_[rank].find(key);
        return found == channel_indices_[rank].end() ? none : found->second;
    }

    int posted_on(int rank, const Channel& key) const {
        auto found = posted_count_[rank].find(key);
        return found == posted_count_[rank].end() ? 0 : found->second;
    }

    Partner partner_of(int rank, int index) const {
        const Action& action = action_at(rank, index);
        Partner partner;
        partner.rank = peer_rank_[rank][index];
        const Channel mirrored{rank, !is_send(action.kind)};
        const int ordinal = ordinal_[rank][index];
        const std::vector<int>& candidates = channel(partner.rank, mirrored);
        if (ordinal < static_cast<int>(candidates.size())) partner.index = candidates[ordinal];
        partner.posted = posted_on(partner.rank, mirrored) > ordinal;
        return partner;
    }

    const Action& action_at(int rank, size_t index) const { return schedule_.actions[rank][index]; }

    std::string where_at(int rank, size_t index) const {
        return where(schedule_, rank, static_cast<int>(index), action_at(rank, index));
    }

    void fail(std::string error) {
        result_.ok = false;
        result_.error = std::move(error);
    }

    bool all_finished() const {
        for (int rank = 0; rank < schedule_.ranks; ++rank)
            if (!finished(rank)) return false;
        return true;
    }

    bool finished(int rank) const { return states_[rank].next >= schedule_.actions[rank].size(); }

    // Whether two matched operations carry the same message.
    static bool same_message(const Action& mine, const Action& theirs) {
        return theirs.kind == matching_kind(mine.kind) && theirs.stage == peer_stage(mine) &&
               theirs.micro_batch == mine.micro_batch;
    }

    // Runs the next action of `rank` if it can; returns whether anything changed.
    bool advance(int rank) {
        RankState& state = states_[rank];
        const std::vector<Action>& list = schedule_.actions[rank];
        if (state.next >= list.size()) return false;
        const Action& action = list[state.next];

        if (!is_communication(action.kind)) {
            const double duration = compute_time_(rank, action);
            result_.timeline[rank].push_back(
                {static_cast<int>(state.next), action, state.clock, state.clock + duration});
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
                post_time_[rank][index] = state.clock;
                ++posted_count_[rank][{peer_rank_[rank][index], is_send(list[index].kind)}];
            }
            return true;
        }

        // Every operation of the group must be matched; a matched pair must be the same message.
        for (size_t index = state.next; index < state.group_end; ++index) {
            Partner partner = partner_of(rank, static_cast<int>(index));
            if (!partner.posted) return false;
            if (!same_message(list[index], action_at(partner.rank, partner.index))) {
                fail(fifo_mismatch(rank, static_cast<int>(index), partner));
                return false;
            }
        }
        double group_done = state.clock;
        for (size_t index = state.next; index < state.group_end; ++index) {
            Partner partner = partner_of(rank, static_cast<int>(index));
            const double both_posted = std::max(post_time_[rank][index], post_time_[partner.rank][partner.index]);
            const double done = both_posted + transfer_;
            result_.timeline[rank].push_back({static_cast<int>(index), list[index], post_time_[rank][index], done});
            group_done = std::max(group_done, done);
        }
        state.clock = group_done;
        state.next = state.group_end;
        state.group_posted = false;
        return true;
    }

    // Names the receive first, whichever side noticed the mismatch.
    std::string fifo_mismatch(int rank, int index, const Partner& partner) const {
        int receive_rank = rank, receive_index = index, send_rank = partner.rank, send_index = partner.index;
        if (is_send(action_at(rank, index).kind)) {
            std::swap(receive_rank, send_rank);
            std::swap(receive_index, send_index);
        }
        const Action& receive = action_at(receive_rank, receive_index);
        const Action& send = action_at(send_rank, send_index);
        const bool same_kind = send.kind == matching_kind(receive.kind);
        const char* what = !same_kind ? "message"
                           : receive.kind == ActionKind::RecvActivation ? "activation"
                                                                        : "gradient";
        const std::string received = same_kind && send.stage == peer_stage(receive)
                                         ? str("micro-batch ", receive.micro_batch)
                                         : str("the ", what, " of stage ", receive.stage, ", micro-batch ",
                                               receive.micro_batch);
        return str(where_at(receive_rank, receive_index), ": receives ", received,
                   ", but messages arrive in FIFO order and the oldest unmatched ", what, " from ", row_word(schedule_),
                   " ", send_rank, " is ", where_at(send_rank, send_index));
    }

    // The first operation of the rank's posted group that is still unmatched.
    int first_unmatched(int rank) const {
        const RankState& state = states_[rank];
        for (size_t index = state.next; index < state.group_end; ++index)
            if (!partner_of(rank, static_cast<int>(index)).posted) return static_cast<int>(index);
        return -1;  // not reached for a blocked rank
    }

    // Called when no rank can move and some have not finished. First looks for an operation whose
    // partner does not exist anywhere (a missing send or receive); otherwise every blocked rank
    // waits for another blocked rank, and the cycle of ranks that wait for each other is named,
    // starting from its lowest rank.
    std::string explain_deadlock() {
        const int ranks = schedule_.ranks;
        const char* row = row_word(schedule_);
        std::vector<int> blocked;
        for (int rank = 0; rank < ranks; ++rank)
            if (!finished(rank)) blocked.push_back(rank);

        for (int rank : blocked) {
            const RankState& state = states_[rank];
            for (size_t index = state.next; index < state.group_end; ++index) {
                Partner partner = partner_of(rank, static_cast<int>(index));
                if (partner.index >= 0) continue;
                const Action& action = action_at(rank, index);
                const Action wanted{matching_kind(action.kind), peer_stage(action), action.micro_batch};
                const bool sends = is_send(action.kind);
                const size_t available = channel(partner.rank, {rank, !sends}).size();
                const int nth = ordinal_[rank][index] + 1;
                return str(where_at(rank, index), ": waits forever: ", row, " ", partner.rank,
                           finished(partner.rank) ? " has finished and" : "", " never posts the matching ",
                           display_name(schedule_, wanted), " (it posts ", available, sends ? " receive" : " send",
                           available == 1 ? "" : "s", sends ? " from " : " to ", row, " ", rank,
                           " in all, this is the ", nth, ordinal_suffix(nth), sends ? " send to " : " receive from ",
                           row, " ", partner.rank, ")");
            }
        }

        // Following the waits from the lowest blocked rank must come back to a rank already seen:
        // that cycle is the deadlock; everyone else waits for it.
        std::vector<int> visit_order(ranks, -1);
        int rank = blocked.front();
        int step = 0;
        while (visit_order[rank] < 0) {
            visit_order[rank] = step++;
            rank = peer_rank_[rank][first_unmatched(rank)];
        }
        std::vector<int> cycle = {rank};
        for (int next = peer_rank_[rank][first_unmatched(rank)]; next != rank;
             next = peer_rank_[next][first_unmatched(next)])
            cycle.push_back(next);
        std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
        for (int member : cycle) {
            ReplayResult::Wait wait;
            wait.rank = member;
            wait.index = first_unmatched(member);
            wait.group_begin = static_cast<int>(states_[member].next);
            wait.group_end = static_cast<int>(states_[member].group_end);
            const Partner partner = partner_of(member, wait.index);
            wait.partner_rank = partner.rank;
            wait.partner_index = partner.index;
            result_.waiting_cycle.push_back(wait);
        }

        const int first = cycle.front();
        std::string text = str(where_at(first, first_unmatched(first)), ": waits forever: ");
        for (size_t i = 1; i < cycle.size(); ++i) {
            const int member = cycle[i];
            const int index = first_unmatched(member);
            text += str(i > 1 ? ", which waits for " : "", row, " ", member, i > 1 ? ", blocked" : " is blocked",
                        " at action ", index, " (", display_name(schedule_, action_at(member, index)), ")");
        }
        return text + str(", which waits for ", row, " ", first);
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
    std::vector<std::vector<int>> ordinal_;                          // [rank][index]: n-th on its channel
    std::vector<std::vector<int>> peer_rank_;                        // [rank][index]: the other end, or -1
    std::vector<std::map<Channel, std::vector<int>>> channel_indices_;  // [rank][channel]: action indices
    std::vector<std::map<Channel, int>> posted_count_;               // [rank][channel]: how many posted
    std::vector<std::vector<double>> post_time_;                     // [rank][index]
    std::vector<RankState> states_;
    ReplayResult result_;
};

}  // namespace

ReplayResult replay(const Schedule& schedule, const std::function<double(int rank, const Action& action)>& compute_time,
                    double transfer) {
    ValidationResult shape = check_rank_lists(schedule);
    MP_REQUIRE(shape.ok, "replay: the schedule fails its per-rank checks: ", shape.error);
    return Replay(schedule, compute_time, transfer).run();
}

ValidationResult validate(const Schedule& schedule) {
    ValidationResult lists_ok = check_rank_lists(schedule);
    if (!lists_ok.ok) return lists_ok;
    auto unit_time = [](int, const Action&) { return 1.0; };
    ReplayResult replayed = Replay(schedule, unit_time, 0.0).run();
    return {replayed.ok, replayed.error};
}

}  // namespace mp::pipeline
