// Pipeline schedules as data (for every rank an ordered list of actions over a stage-to-rank
// placement) and the registry of named schedules: one Schedule is validated, simulated, rendered and
// executed. Actions, placements: schedule.cpp; the registry: schedules.cpp; transfers: communication.h.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace mp::pipeline {

// Activations flow from stage s to s + 1, gradients from s + 1 to s. A communication action is
// posted by the stage it names: SendActivation of stage s sends s's output to s + 1,
// RecvActivation of stage s receives s's input from s - 1, SendGradient of stage s sends the
// gradient of s's input to s - 1, RecvGradient of stage s receives the gradient of s's output from
// s + 1. The rank at the other end comes from the schedule's placement.
enum class ActionKind {
    Forward,
    Backward,        // the whole backward: InputBackward then WeightBackward, in one piece
    InputBackward,   // gradients to the stage's input (what the previous stage waits for)
    WeightBackward,  // gradients to the stage's weights (nobody waits for them but the step)
    SendActivation,
    RecvActivation,
    SendGradient,
    RecvGradient,
    OptimizerStep,
};

// One step of one rank. Consecutive communication actions chained by batched_with_next form ONE
// group that the engine issues together (ncclGroupStart/End, or MPI Isend/Irecv + Waitall): the
// group completes when all of its operations have completed. stage and micro_batch are -1 for the
// optimizer step (it steps every stage the rank holds).
struct Action {
    ActionKind kind;
    int stage;
    int micro_batch;
    bool batched_with_next = false;
};

bool operator==(const Action& a, const Action& b);
bool operator!=(const Action& a, const Action& b);

// Forward, Backward, InputBackward, WeightBackward.
bool is_compute(ActionKind kind);
// The four send/receive kinds.
bool is_communication(ActionKind kind);
bool is_send(ActionKind kind);
// Backward or InputBackward: the actions that produce the gradient of the stage's input.
bool produces_input_gradient(ActionKind kind);
// The kind that the peer posts to match this one: SendActivation <-> RecvActivation, and
// SendGradient <-> RecvGradient. Throws std::invalid_argument for a non-communication kind.
ActionKind matching_kind(ActionKind kind);
// The stage at the other end of a communication action (stage + 1 for SendActivation and
// RecvGradient, stage - 1 for RecvActivation and SendGradient). Throws std::invalid_argument for
// a non-communication action.
int peer_stage(const Action& action);

// "F", "B", "I", "W", "SendAct", "RecvAct", "SendGrad", "RecvGrad", "Step".
std::string to_string(ActionKind kind);
// With the stage, as torch.distributed.pipelining writes them: "0F3" (stage 0, forward,
// micro-batch 3), "2W1", "1SendAct2", "Step".
std::string to_string(const Action& action);
// Without the stage ("F3", "SendAct2", "Step"): enough where a rank holds one stage.
std::string short_name(const Action& action);

// Message tags: a transfer is named by the boundary it crosses (between stages b and b + 1), the
// micro-batch and the direction, so that several stages on one rank never collide. A send and
// the receive that matches it get the same tag. Tags lie in [0, tags_needed(stages, M)).
int message_tag(const Action& communication, int micro_batches);
int tags_needed(int stages, int micro_batches);

// Stage-to-rank placements.
// One stage per rank: stage s on rank s.
std::vector<int> identity_placement(int ranks);
// `virtual_stages` stages per rank, looped (interleaved 1F1B): stage s on rank s mod K.
std::vector<int> looped_placement(int ranks, int virtual_stages);
// Two stages per rank in a V (ZBV, DualPipeV): rank r holds stages r and 2K - 1 - r.
std::vector<int> v_shape_placement(int ranks);

struct Schedule {
    std::string name;       // the registry's name, or one given by whoever built it by hand
    int ranks = 0;          // K
    int stages = 0;         // S = K · v
    int micro_batches = 0;  // M
    std::vector<int> placement;                // placement[stage] = the rank that runs it
    std::vector<std::vector<Action>> actions;  // actions[rank], in execution order

    int rank_of(int stage) const { return placement.at(static_cast<size_t>(stage)); }
    // The stages rank `rank` runs, in increasing order.
    std::vector<int> stages_of(int rank) const;
    // Whether stage s's actions are named without their stage (every rank holds exactly one
    // stage, stage s on rank s): the describe/render/trace names of the classic schedules.
    bool one_stage_per_rank() const;
};

// What every generator starts from: the sizes and the placement set, every rank's list empty (the
// name is the registry's, set by make_schedule).
Schedule empty_schedule(int ranks, int micro_batches, std::vector<int> placement);

// The name an action is shown by in this schedule: short_name when every rank holds one stage,
// to_string otherwise.
std::string display_name(const Schedule& schedule, const Action& action);

// Every rank's action list on one line, batched groups in brackets. With one stage per rank the
// rows are called stages and the actions drop their stage:
// "stage 0: F0 SendAct0 F1 [SendAct1 RecvGrad0] B0 RecvGrad1 B1 Step"; otherwise
// "rank 0: 0F0 2F0 [2SendAct0 0RecvGrad0] ...".
std::string describe(const Schedule& schedule);

// ---- the registry (pipeline/schedules.cpp) ------------------------------------------------------

// Where add_communication (pipeline/communication.h, which describes each) puts the transfers
// between a schedule's compute actions.
enum class Exchange {
    AfterEveryAction,        // around each compute action; grouped only where a wait would deadlock
    PerForwardBackwardPair,  // a forward and the backward right after it run back to back (Megatron)
    AtReadyTime,             // at the instant the data is ready, timed at unit costs (zero-bubble)
};

// "" when (ranks, micro_batches, virtual_stages) suit a schedule, else the reason they do not.
using ScheduleRule = std::function<std::string(int ranks, int micro_batches, int virtual_stages)>;

// Helpers for the functions that build registry entries. The rule of a schedule that runs one
// stage per rank (virtual_stages = 1), its message naming the schedule:
ScheduleRule one_stage_per_rank_rule(const std::string& name);
// A bubble fraction from a rank's idle and busy time per step: idle / (idle + busy), 0 if both are 0.
double unit_cost_fraction(double idle, double busy);
// ScheduleInfo::unit_cost_bubble where there is no closed form: NaN for every size.
double no_closed_form(int ranks, int micro_batches, int virtual_stages);

// One registered schedule. Each is built field by field, one per line, by a function next to its
// generator (pipeline/schedules.cpp, pipeline/zero_bubble.cpp); its name is written there only.
// K = ranks, M = micro-batches, v = stages per rank, r = rank.
struct ScheduleInfo {
    // What the config's pipeline.schedule, --help and make_schedule call it.
    std::string name;
    // One line for --help.
    std::string description;
    // Stages per rank when the config leaves pipeline.virtual_stages at 0.
    int default_virtual_stages = 1;
    // "" when (K, M, v) suit the schedule, else the reason they do not (shown to the user).
    ScheduleRule rule;
    // Compute actions and the final optimizer step only, on an empty_schedule with its placement.
    // Called only with sizes the rule accepts.
    std::function<Schedule(int ranks, int micro_batches, int virtual_stages)> generate;
    // How add_communication places the transfers between the compute actions.
    Exchange exchange = Exchange::AfterEveryAction;
    // The closed form of each rank's bubble fraction per step (1 - busy / step time) at F = I = W
    // = 1 (B = 2) with free transfers, or NaN outside the formula's range; the tests compare it with
    // the simulator wherever it is a number. Left as no_closed_form where there is none.
    std::function<double(int ranks, int micro_batches, int virtual_stages)> unit_cost_bubble = no_closed_form;
    // The most activations rank r stashes at once: (stage, micro-batch) pairs forwarded and not yet
    // through B or I. Exact: the tests check it against the simulator's and the engine's peak.
    std::function<int(int ranks, int micro_batches, int virtual_stages, int rank)> peak_stashed;
};

// Every schedule, in the order --help lists them. A new schedule is a generator, the function
// that builds its ScheduleInfo, and one entry here (see docs/schedules.md, "Adding a schedule").
const std::vector<ScheduleInfo>& schedule_registry();
// The registered names, in registry order.
std::vector<std::string> schedule_kinds();
// The registry entry called `name`; throws std::invalid_argument naming it and the choices.
const ScheduleInfo& schedule_info(const std::string& name);
// Each schedule's default stages per rank, for --help: "interleaved-1f1b and zbv 2, the others 1".
std::string describe_default_virtual_stages();

// The schedule called `name` for `ranks` (K >= 1), `micro_batches` (M >= 1; M < K is allowed where
// the rule allows it) and `virtual_stages` stages per rank: the registry's generator, then
// add_communication. Throws std::invalid_argument naming the bad name or count, or the rule broken.
Schedule make_schedule(const std::string& name, int ranks, int micro_batches, int virtual_stages = 1);

// The compute actions of the schedule called `name` (before add_communication), checked as
// make_schedule checks them.
Schedule make_compute_schedule(const std::string& name, int ranks, int micro_batches, int virtual_stages = 1);

}  // namespace mp::pipeline
