// Schedule generators (naive, gpipe, 1f1b) and the small vocabulary around Action: names,
// peers, matching kinds. Each generator writes one stage's list with a StageWriter, which drops
// the communication that has no peer (stage 0 receives no activation, the last stage no gradient).
#include "pipeline/schedule.h"

#include <algorithm>
#include <initializer_list>
#include <sstream>

#include "kernels/common/error.h"

namespace mp::pipeline {

bool operator==(const Action& a, const Action& b) {
    return a.kind == b.kind && a.micro_batch == b.micro_batch && a.batched_with_next == b.batched_with_next;
}

bool operator!=(const Action& a, const Action& b) { return !(a == b); }

bool is_compute(ActionKind kind) { return kind == ActionKind::Forward || kind == ActionKind::Backward; }

bool is_communication(ActionKind kind) {
    return kind == ActionKind::SendActivation || kind == ActionKind::RecvActivation ||
           kind == ActionKind::SendGradient || kind == ActionKind::RecvGradient;
}

bool is_send(ActionKind kind) { return kind == ActionKind::SendActivation || kind == ActionKind::SendGradient; }

ActionKind matching_kind(ActionKind kind) {
    switch (kind) {
        case ActionKind::SendActivation: return ActionKind::RecvActivation;
        case ActionKind::RecvActivation: return ActionKind::SendActivation;
        case ActionKind::SendGradient: return ActionKind::RecvGradient;
        case ActionKind::RecvGradient: return ActionKind::SendGradient;
        default: break;
    }
    throw std::invalid_argument(str("matching_kind: ", to_string(kind), " is not a communication action"));
}

int peer_stage(int stage, ActionKind kind) {
    switch (kind) {
        case ActionKind::SendActivation:
        case ActionKind::RecvGradient: return stage + 1;
        case ActionKind::RecvActivation:
        case ActionKind::SendGradient: return stage - 1;
        default: break;
    }
    throw std::invalid_argument(str("peer_stage: ", to_string(kind), " is not a communication action"));
}

std::string to_string(ActionKind kind) {
    switch (kind) {
        case ActionKind::Forward: return "F";
        case ActionKind::Backward: return "B";
        case ActionKind::SendActivation: return "SendAct";
        case ActionKind::RecvActivation: return "RecvAct";
        case ActionKind::SendGradient: return "SendGrad";
        case ActionKind::RecvGradient: return "RecvGrad";
        case ActionKind::OptimizerStep: return "Step";
    }
    return "?";
}

std::string to_string(const Action& action) {
    if (action.kind == ActionKind::OptimizerStep) return to_string(action.kind);
    return to_string(action.kind) + std::to_string(action.micro_batch);
}

std::string describe(const Schedule& schedule) {
    std::ostringstream out;
    for (size_t stage = 0; stage < schedule.actions.size(); ++stage) {
        out << "stage " << stage << ":";
        bool in_group = false;
        for (const Action& action : schedule.actions[stage]) {
            out << " ";
            if (action.batched_with_next && !in_group) {
                out << "[";
                in_group = true;
            }
            out << to_string(action);
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

const std::vector<std::string>& schedule_kinds() {
    static const std::vector<std::string> kinds = {"naive", "gpipe", "1f1b"};
    return kinds;
}

namespace {

// Appends one stage's actions. Communication with a stage that does not exist is dropped, so
// the generators can be written once for every stage, as Megatron's recv_forward is a no-op on
// the first stage.
class StageWriter {
  public:
    StageWriter(int stage, int stages, std::vector<Action>& out) : stage_(stage), stages_(stages), out_(out) {}

    void forward(int micro_batch) { out_.push_back({ActionKind::Forward, micro_batch}); }
    void backward(int micro_batch) { out_.push_back({ActionKind::Backward, micro_batch}); }
    void optimizer_step() { out_.push_back({ActionKind::OptimizerStep, -1}); }

    // Receive the activation, forward, send the output — each transfer on its own.
    void forward_unbatched(int micro_batch) {
        communicate({{ActionKind::RecvActivation, micro_batch}});
        forward(micro_batch);
        communicate({{ActionKind::SendActivation, micro_batch}});
    }
    // Receive the output's gradient, backward, send the input's gradient.
    void backward_unbatched(int micro_batch) {
        communicate({{ActionKind::RecvGradient, micro_batch}});
        backward(micro_batch);
        communicate({{ActionKind::SendGradient, micro_batch}});
    }

    // Appends the operations that have a peer as one batched group (a single operation is a
    // group of one: batched_with_next stays false).
    void communicate(std::initializer_list<Action> operations) {
        size_t group_start = out_.size();
        for (const Action& operation : operations) {
            int peer = peer_stage(stage_, operation.kind);
            if (peer >= 0 && peer < stages_) out_.push_back({operation.kind, operation.micro_batch});
        }
        for (size_t i = group_start; i + 1 < out_.size(); ++i) out_[i].batched_with_next = true;
    }

  private:
    int stage_;
    int stages_;
    std::vector<Action>& out_;
};

Schedule empty_schedule(const std::string& kind, int stages, int micro_batches) {
    MP_REQUIRE(stages >= 1, "make_schedule(", kind, "): stages must be >= 1, got ", stages);
    MP_REQUIRE(micro_batches >= 1, "make_schedule(", kind, "): micro_batches must be >= 1, got ", micro_batches);
    Schedule schedule;
    schedule.kind = kind;
    schedule.stages = stages;
    schedule.micro_batches = micro_batches;
    schedule.actions.resize(stages);
    return schedule;
}

}  // namespace

Schedule make_naive_schedule(int stages, int micro_batches) {
    Schedule schedule = empty_schedule("naive", stages, micro_batches);
    for (int stage = 0; stage < stages; ++stage) {
        StageWriter write(stage, stages, schedule.actions[stage]);
        for (int m = 0; m < micro_batches; ++m) {
            write.forward_unbatched(m);
            write.backward_unbatched(m);
        }
        write.optimizer_step();
    }
    return schedule;
}

Schedule make_gpipe_schedule(int stages, int micro_batches) {
    Schedule schedule = empty_schedule("gpipe", stages, micro_batches);
    for (int stage = 0; stage < stages; ++stage) {
        StageWriter write(stage, stages, schedule.actions[stage]);
        for (int m = 0; m < micro_batches; ++m) write.forward_unbatched(m);
        for (int m = 0; m < micro_batches; ++m) write.backward_unbatched(m);
        write.optimizer_step();
    }
    return schedule;
}

Schedule make_1f1b_schedule(int stages, int micro_batches) {
    Schedule schedule = empty_schedule("1f1b", stages, micro_batches);
    for (int stage = 0; stage < stages; ++stage) {
        StageWriter write(stage, stages, schedule.actions[stage]);
        const int warmup = std::min(stages - stage - 1, micro_batches);
        const int steady = micro_batches - warmup;

        // Warm-up: forwards only, each sent on before the next is received.
        for (int m = 0; m < warmup; ++m) write.forward_unbatched(m);

        // Steady state: iteration i forwards micro-batch warmup + i and backwards micro-batch i.
        // The activation of the first steady forward is received on its own; every later one
        // arrives in the same group that sends the previous backward's gradient.
        if (steady > 0) write.communicate({{ActionKind::RecvActivation, warmup}});
        for (int i = 0; i < steady; ++i) {
            const int forward_micro_batch = warmup + i;
            const int backward_micro_batch = i;
            const bool last_iteration = i == steady - 1;
            write.forward(forward_micro_batch);
            write.communicate({{ActionKind::SendActivation, forward_micro_batch},
                               {ActionKind::RecvGradient, backward_micro_batch}});
            write.backward(backward_micro_batch);
            if (last_iteration) {
                write.communicate({{ActionKind::SendGradient, backward_micro_batch}});
            } else {
                write.communicate({{ActionKind::SendGradient, backward_micro_batch},
                                   {ActionKind::RecvActivation, forward_micro_batch + 1}});
            }
        }

        // Cool-down: the backwards of the warm-up forwards.
        for (int m = steady; m < micro_batches; ++m) write.backward_unbatched(m);
        write.optimizer_step();
    }
    return schedule;
}

Schedule make_schedule(const std::string& kind, int stages, int micro_batches) {
    if (kind == "naive") return make_naive_schedule(stages, micro_batches);
    if (kind == "gpipe") return make_gpipe_schedule(stages, micro_batches);
    if (kind == "1f1b") return make_1f1b_schedule(stages, micro_batches);
    throw std::invalid_argument(str("make_schedule: unknown schedule kind '", kind, "' (expected naive, gpipe or 1f1b)"));
}

}  // namespace mp::pipeline
