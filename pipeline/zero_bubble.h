// The registry entries of the zero-bubble schedules: the backward split into I (the input's
// gradient, on the critical path upstream) and W (the weights' gradient, which nobody waits for),
// Ws moved to where a rank would otherwise idle. Each generator is described at its entry.
#pragma once

#include "pipeline/schedule.h"

namespace mp::pipeline {

// ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024): one stage per rank. Stage s
// forwards K - s micro-batches (1F1B's warm-up), then for each micro-batch in turn runs its I, the
// oldest pending W if more than s are pending, and the next forward; the s held-back Ws run at the
// end, where stage s would otherwise wait for the stages below it to finish. Per step each rank
// idles (K - 1)(F + I - W): a third of 1F1B's at F = I = W (M >= K). Stage s stashes at most K - s
// micro-batches (F to I) and holds at most K (F to W): 1F1B's peak, that of its first stage.
ScheduleInfo zb_h1_schedule();

// ZB-H2: as ZB-H1 with 2(K - s) - 1 warm-up forwards and up to 2s held-back Ws on stage s. No
// rank idles between its first and last action (M >= 2K - 1): steps that follow each other
// without a barrier have no bubble; within one step the K - 1 of the ramp remains. Stashes at most
// 2(K - s) - 1, holds at most 2K - 1: about twice 1F1B's.
ScheduleInfo zb_h2_schedule();

// ZBV (the V-shaped ZB-V of Qi et al., "Pipeline Parallelism with Controllable Memory", 2024):
// rank r holds stages r (chunk 0) and 2K - 1 - r (chunk 1, on the way back up, so rank 0 computes
// the loss). Warm-up: 2(K - r) - 1 chunk-0 forwards, r pairs (chunk-1 forward, chunk-0 forward),
// K - r chunk-1 forward + I + W; steady: chunk-0 F, I, W then chunk-1 F, I, W; cool-down: r pairs
// of Is (chunk 0, chunk 1), K - r chunk-0 I + held-back W, then the rest, Ws last. At chunk costs
// F = I = W = 1 and M >= 2K - 1 no rank idles between its first and last action (zero bubble
// between steps without a barrier), each rank idles K - 1 per step — half of ZB-H1's on the same
// model, and the least any schedule can with a barrier at the step (rank K - 1 cannot start before
// K - 1) — and rank r stashes min(2K, M + r + 1) chunks (F to I, and to W), at most 2K: 1F1B's
// K whole stages. Needs M >= K.
ScheduleInfo zbv_schedule();

}  // namespace mp::pipeline
