// add_communication: the one pass that gives a schedule of compute actions its sends and receives,
// for its placement and its Exchange. Generators never write transfers; make_schedule runs this on
// each one's output, so a new schedule gets correct, deadlock-free communication for free.
#pragma once

#include "pipeline/schedule.h"

namespace mp::pipeline {

// Inserts the sends and receives that `schedule`'s placement needs between its compute actions
// (stages on one rank hand activations and gradients over locally, with no action), placed as
// `exchange` says:
//
// - AfterEveryAction: a compute action's receive goes right before it, its send right after it.
// - PerForwardBackwardPair: the same, except that a forward and the backward right after it run back
//   to back, the pair's receives before it and its sends after it (Megatron-LM's interleaved steady
//   state: one exchange per forward-backward pair).
//
//   With either, transfers are then grouped only where the strict model (validate.h) would
//   otherwise deadlock, one waiting cycle at a time, replaying until the schedule runs through:
//   - for each rank of the cycle blocked in a send, the matching receive (with the receives from
//     the same sender before it, to keep their order) moves up into the receiver's blocked group;
//   - where every rank of the cycle waits to receive, a receive placed ahead of an action that does
//     not need it moves down to its consumer, or else a send held back behind a later action moves
//     up to its producer.
//   For 1F1B this batches the next action's receive into the gap: the steady state's "send
//   activation + receive gradient" and "send gradient + receive activation" groups.
//
// - AtReadyTime (the zero-bubble orders, whose unit-cost bubble needs it): the compute order is
//   timed at unit costs (F = I = W = 1, B = 2) with free transfers, and each transfer is posted by
//   both of its ranks at the boundary where its producer ends, a rank's transfers of one instant
//   forming one group. Under unit costs no rank then ever waits in a transfer, and messages between
//   two ranks keep one order on both sides. Under other costs a group can couple transfers that no
//   longer coincide (a rank waits in a group for a message its next action does not need);
//   non-blocking sends would remove that (see docs/schedules.md).
//
// Throws std::invalid_argument if the schedule already holds communication, and std::logic_error
// if the compute order itself deadlocks (a generator bug).
void add_communication(Schedule& schedule, Exchange exchange = Exchange::AfterEveryAction);

}  // namespace mp::pipeline
