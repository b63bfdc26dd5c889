// Pipeline schedules as data: for every stage an ordered list of actions (forward, backward,
// point-to-point send/receive of an activation or a gradient, optimizer step) and the generators
// naive, gpipe and 1f1b. The same Schedule is validated, simulated, rendered and executed.
#pragma once

#include <string>
#include <vector>

namespace mp::pipeline {

// Activations flow from stage s to s + 1, gradients from s + 1 to s: the peer of a
// communication action is implied by its kind (see peer_stage).
enum class ActionKind {
    Forward,
    Backward,
    SendActivation,
    RecvActivation,
    SendGradient,
    RecvGradient,
    OptimizerStep,
};

// One step of one stage. Consecutive communication actions chained by batched_with_next form
// ONE group that the engine issues together (ncclGroupStart/End, or MPI Isend/Irecv + Waitall):
// the group completes when all of its operations have completed. micro_batch is -1 for the
// optimizer step.
struct Action {
    ActionKind kind;
    int micro_batch;
    bool batched_with_next = false;
};

bool operator==(const Action& a, const Action& b);
bool operator!=(const Action& a, const Action& b);

// Forward and Backward.
bool is_compute(ActionKind kind);
// The four send/receive kinds.
bool is_communication(ActionKind kind);
bool is_send(ActionKind kind);
// The kind that the peer posts to match this one: SendActivation <-> RecvActivation, and
// SendGradient <-> RecvGradient. Throws std::invalid_argument for a non-communication kind.
ActionKind matching_kind(ActionKind kind);
// The stage at the other end of a communication action of `kind` posted by `stage`
// (s + 1 for SendActivation and RecvGradient, s - 1 for RecvActivation and SendGradient).
int peer_stage(int stage, ActionKind kind);

// "F", "B", "SendAct", "RecvAct", "SendGrad", "RecvGrad", "Step".
std::string to_string(ActionKind kind);
// "F3", "B0", "SendAct2", "RecvGrad1", "Step".
std::string to_string(const Action& action);

struct Schedule {
    std::string kind;  // "naive", "gpipe", "1f1b", or a name given by whoever built it by hand
    int stages = 0;
    int micro_batches = 0;
    std::vector<std::vector<Action>> actions;  // actions[stage], in execution order
};

// Every stage's action list on one line, batched groups in brackets:
// "stage 0: F0 SendAct0 F1 [SendAct1 RecvGrad0] B0 RecvGrad1 B1 Step".
std::string describe(const Schedule& schedule);

// The generator names make_schedule accepts: "naive", "gpipe", "1f1b".
const std::vector<std::string>& schedule_kinds();

// The schedule of `kind` for `stages` (K >= 1) and `micro_batches` (M >= 1; M < K is allowed).
// Throws std::invalid_argument naming the bad kind or count.
Schedule make_schedule(const std::string& kind, int stages, int micro_batches);

// One micro-batch at a time through every stage, forward then backward (inter-layer model
// parallelism: only one stage is ever busy). No batched groups are needed.
Schedule make_naive_schedule(int stages, int micro_batches);
// All M forwards, then all M backwards (in micro-batch order); every stage stashes M
// micro-batches. Communication flows one way in each phase, so no batched groups are needed.
Schedule make_gpipe_schedule(int stages, int micro_batches);
// PipeDream-Flush as in Megatron-LM: stage s warms up with min(K - s - 1, M) forwards, then
// alternates one forward and one backward, then cools down with the remaining backwards. The
// steady state batches "send activation m + receive gradient k" and "send gradient k + receive
// activation m + 1" so that facing sends of neighbouring stages cannot deadlock.
Schedule make_1f1b_schedule(int stages, int micro_batches);

}  // namespace mp::pipeline
