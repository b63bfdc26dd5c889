// Pipeline schedules as data: a stage-to-rank placement and, for every rank, an ordered list of
// actions (forward, backward — whole, or its input and weight halves —, send/receive of an
// activation or a gradient, optimizer step), each naming its (virtual) stage and micro-batch.
// Generators write compute actions only; add_communication inserts the transfers for the
// placement. One registry names every schedule. The same Schedule is validated, simulated,
// rendered and executed.
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
    std::string kind;       // a registry name, or one given by whoever built it by hand
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

// What every generator starts from: the sizes and the placement set, every rank's list empty.
Schedule empty_schedule(const std::string& kind, int ranks, int micro_batches, std::vector<int> placement);

// The name an action is shown by in this schedule: short_name when every rank holds one stage,
// to_string otherwise.
std::string display_name(const Schedule& schedule, const Action& action);

// Every rank's action list on one line, batched groups in brackets. With one stage per rank the
// rows are called stages and the actions drop their stage:
// "stage 0: F0 SendAct0 F1 [SendAct1 RecvGrad0] B0 RecvGrad1 B1 Step"; otherwise
// "rank 0: 0F0 2F0 [2SendAct0 0RecvGrad0] ...".
std::string describe(const Schedule& schedule);

// Inserts the sends and receives the placement needs into a schedule of compute actions: a
// compute action's received input goes right before it, its sent output right after it; stages
// on the same rank hand activations and gradients over locally, with no action. Transfers are
// then grouped only where the strict model (see validate.h) would otherwise deadlock: for each
// rank of a waiting cycle that is blocked in a send, the matching receive (with the receives from
// the same sender before it, to keep their order) moves up into the receiver's blocked group, and
// the replay is repeated until it runs through. Where every rank of a cycle waits to receive, a
// receive placed ahead of an action that does not need it moves down to its consumer, or a send
// held back behind a later action moves up to its producer. For 1F1B this batches the next
// action's receive into the gap — the steady state's "send activation + receive gradient" and
// "send gradient + receive activation" groups; for interleaved 1F1B (Exchange::
// PerForwardBackwardPair) it gives Megatron-LM's one exchange per forward-backward pair. Throws
// std::invalid_argument if the schedule already holds communication, and std::logic_error if the
// compute order itself deadlocks (a generator bug).
// Where transfers may go between compute actions. Between every two (the default); or, as in
// Megatron-LM's interleaved steady state, not between a forward and the backward right after it:
// the pair runs back to back, its receives before it and its sends after it.
// Or at the instant the data is ready (the zero-bubble orders, whose unit-cost bubble needs it): the
// compute order is timed at unit costs (F = I = W = 1, B = 2) with free transfers, and each
// transfer is posted by both of its ranks at the boundary where its producer ends, every transfer
// of a rank at one instant forming one group. Under unit costs no rank then ever waits in a
// transfer, and messages between two ranks keep one order on both sides; under other costs the
// groups can couple transfers that no longer coincide (a rank waits in a group for a message its
// next action does not need). Non-blocking sends would remove both problems; see docs/schedules.md.
enum class Exchange { AfterEveryAction, PerForwardBackwardPair, AtReadyTime };
void add_communication(Schedule& schedule, Exchange exchange = Exchange::AfterEveryAction);

// One registered schedule: its name, a one-line description, the rule its sizes must follow, and
// the generator of its compute actions.
struct ScheduleInfo {
    std::string name;
    std::string description;
    int default_virtual_stages = 1;
    // "" when (ranks, micro_batches, virtual_stages) suit the schedule, else the reason they do not.
    std::function<std::string(int ranks, int micro_batches, int virtual_stages)> rule;
    // Compute actions only (and the optimizer step), with ranks, stages, micro_batches, placement set.
    std::function<Schedule(int ranks, int micro_batches, int virtual_stages)> generate;
    // How add_communication places the transfers between the compute actions.
    Exchange exchange = Exchange::AfterEveryAction;
    // The closed form of each rank's bubble fraction per step (1 - busy / step time) at F = I = W
    // = 1 (B = 2) with free transfers, or NaN where the sizes are outside the formula's range; and
    // the formula as text for --help and the docs.
    std::function<double(int ranks, int micro_batches, int virtual_stages)> unit_cost_bubble;
    std::string bubble_formula;
    // The most micro-batches a rank stashes at once (forwarded, not yet through B or I), as text.
    std::string stash_bound;
};

// Every schedule, in the order --help lists them. A new schedule is one generator and one line here.
const std::vector<ScheduleInfo>& schedule_registry();
// The registered names, in registry order.
std::vector<std::string> schedule_kinds();
// The registry entry of `kind`; throws std::invalid_argument naming the kind and the choices.
const ScheduleInfo& schedule_info(const std::string& kind);

// The schedule of `kind` for `ranks` (K >= 1), `micro_batches` (M >= 1; M < K is allowed where
// the rule allows it) and `virtual_stages` stages per rank: the registry's generator, then
// add_communication. Throws std::invalid_argument naming the bad kind or count, or the rule broken.
Schedule make_schedule(const std::string& kind, int ranks, int micro_batches, int virtual_stages = 1);

// The compute actions of the schedule of `kind` (before add_communication), checked as make_schedule checks.
Schedule make_compute_schedule(const std::string& kind, int ranks, int micro_batches, int virtual_stages = 1);

}  // namespace mp::pipeline
