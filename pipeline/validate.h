// The schedule validator: checks each rank's list on its own (every micro-batch of every stage it
// holds forwarded and backwarded once, in a legal order, step last), then replays all ranks against
// each other under a strict communication model and proves that no rank waits forever, or names who does.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "pipeline/schedule.h"

namespace mp::pipeline {

// ok, or the first problem found, naming the rank, the action's index in that rank's list and
// the action: "rank 2 action 5 (1RecvGrad1): waits forever: rank 3 is blocked at action 4 (3SendAct2), ...".
// Where every rank holds one stage (stage s on rank s) rows are called stages and actions are
// named without their stage, as describe() writes them: "stage 2 action 5 (RecvGrad1)".
struct ValidationResult {
    bool ok = true;
    std::string error;
};

// The communication model (strict, like NCCL with no eager buffering):
// - a rank posts its current group (one communication action, or several chained by
//   batched_with_next) all at once, and moves on only when every operation in it has completed;
// - an operation completes when the peer rank has posted the matching operation (a send does not
//   complete until its receive is posted, and vice versa);
// - messages from one rank to another match in FIFO order whatever they carry: the n-th send from
//   rank a to rank b meets the n-th receive on b from a, and the two must be the same message
//   (SendActivation of stage s, m with RecvActivation of stage s + 1, m; SendGradient of stage s,
//   m with RecvGradient of stage s - 1, m).
// Per-rank semantics, for each stage s the rank holds and micro-batch m: Forward only after its
// input is there (s = 0: the batch; stage s - 1 on the same rank: after its Forward; else after
// RecvActivation); SendActivation only after Forward; Backward or InputBackward only after Forward
// and after the output's gradient is there (the last stage computes the loss itself; stage s + 1
// on the same rank: after its Backward or InputBackward; else after RecvGradient);
// WeightBackward only after InputBackward; SendGradient only after Backward or InputBackward;
// each of them at most once, Backward excluding InputBackward and WeightBackward; communication
// only with a stage on another rank; one OptimizerStep, last, after every stage the rank holds
// has forwarded and backwarded (input and weights) every micro-batch.
ValidationResult validate(const Schedule& schedule);

// Only the per-rank checks above (shape of the schedule and its placement, stage and micro-batch
// ranges, peers that exist on other ranks, groups made of communication actions, the ordering
// rules); no replay.
ValidationResult check_rank_lists(const Schedule& schedule);

// When one action ran in a replay. For a communication action, start is when its group was
// posted and end is when this operation completed (both sides posted, plus the transfer time).
struct TimedAction {
    int index = 0;  // position in the rank's action list
    Action action{ActionKind::Forward, 0, 0};
    double start = 0.0;
    double end = 0.0;
};

struct ReplayResult {
    bool ok = true;
    std::string error;                                // as in ValidationResult
    std::vector<std::vector<TimedAction>> timeline;   // per rank, the actions that completed
    // On a deadlock where ranks wait for each other in a cycle: for each rank of the cycle, from
    // the lowest, where it is blocked and what it waits for (what add_communication resolves).
    // Empty otherwise.
    struct Wait {
        int rank = 0;
        int index = 0;                         // its first unmatched operation
        int group_begin = 0, group_end = 0;    // its posted group: [group_begin, group_end)
        int partner_rank = 0, partner_index = 0;  // the matching operation, not yet posted
    };
    std::vector<Wait> waiting_cycle;
};

// Replays the communication model above with times: compute_time(rank, action) is the duration
// of a compute action or OptimizerStep on that rank (the action names its stage); every message
// takes `transfer`. A group posted at time t completes at the max over its operations of
// max(t, the peer's post time) + transfer. Assumes check_rank_lists passed (validate and simulate
// call it first); reports a FIFO mismatch or the deadlock, if any.
ReplayResult replay(const Schedule& schedule, const std::function<double(int rank, const Action& action)>& compute_time,
                    double transfer);

}  // namespace mp::pipeline
