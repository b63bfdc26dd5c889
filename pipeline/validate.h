// The schedule validator: checks each stage's list on its own (every micro-batch forwarded and
// backwarded once, in a legal order, step last), then replays all stages against each other
// under a strict communication model and proves that no stage waits forever, or names who does.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "pipeline/schedule.h"

namespace mp::pipeline {

// ok, or the first problem found, naming the stage, the action's index in that stage's list and
// the action: "stage 2 action 5 (RecvGrad1): waits forever: stage 3 is blocked at action 4 (SendAct2), ...".
struct ValidationResult {
    bool ok = true;
    std::string error;
};

// The communication model (strict, like NCCL with no eager buffering):
// - a stage posts its current group (one communication action, or several chained by
//   batched_with_next) all at once, and moves on only when every operation in it has completed;
// - an operation completes when the peer has posted the matching operation (a send does not
//   complete until its receive is posted, and vice versa);
// - messages from one stage to a neighbour in one direction match in FIFO order: the n-th
//   SendActivation of stage s meets the n-th RecvActivation of stage s + 1 and must carry the
//   same micro-batch (likewise for gradients, s + 1 -> s).
// Per-stage semantics: Forward m on a stage s > 0 only after RecvActivation m; SendActivation m
// only after Forward m; Backward m only after Forward m and, unless on the last stage, after
// RecvGradient m; SendGradient m only after Backward m; each micro-batch forwarded and
// backwarded exactly once; one OptimizerStep, last. Stage 0 has no previous stage to receive
// activations from; the last stage has no next stage (it computes the loss itself).
ValidationResult validate(const Schedule& schedule);

// Only the per-stage checks above (shape of the schedule, micro-batch ranges, peers that exist,
// groups made of communication actions, the ordering rules); no replay.
ValidationResult check_stages(const Schedule& schedule);

// When one action ran in a replay. For a communication action, start is when its group was
// posted and end is when this operation completed (both sides posted, plus the transfer time).
struct TimedAction {
    int index = 0;  // position in the stage's action list
    Action action{ActionKind::Forward, 0};
    double start = 0.0;
    double end = 0.0;
};

struct ReplayResult {
    bool ok = true;
    std::string error;                                // as in ValidationResult
    std::vector<std::vector<TimedAction>> timeline;   // per stage, the actions that completed
};

// Replays the communication model above with times: compute_time(stage, action) is the
// duration of a Forward, Backward or OptimizerStep on that stage; every message takes
// `transfer`. A group posted at time t completes at the max over its operations of
// max(t, the peer's post time) + transfer. Assumes check_stages passed (validate and simulate
// call it first); reports a FIFO mismatch or the deadlock, if any.
ReplayResult replay(const Schedule& schedule, const std::function<double(int stage, const Action& action)>& compute_time,
                    double transfer);

}  // namespace mp::pipeline
