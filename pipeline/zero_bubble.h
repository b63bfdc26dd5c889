// The zero-bubble schedules (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, and the
// V-shaped ZB-V of "Pipeline Parallelism with Controllable Memory", 2024), found by one list
// scheduler that differs only in placement and in each rank's bound on stashed micro-batches.
#pragma once

#include <string>
#include <vector>

#include "pipeline/schedule.h"

namespace mp::pipeline {

// Compute order by list scheduling at unit costs (F = I = W = 1, free transfers): time advances
// in whole units and every idle rank, in rank order, starts the first of
//   1. a ready InputBackward (its forward done here and the gradient of its output arrived),
//      the latest stage first: I is the critical path back to stage 0, and it frees a stash;
//   2. a ready Forward, the latest stage first, if the rank holds fewer than
//      stash_bound[rank] micro-batches (forwarded, not yet through I);
//   3. its oldest pending WeightBackward: W fills what would otherwise be a bubble;
// or waits. The last pending Ws run at the end, then the optimizer step. Micro-batches enter each
// stage in order. The result holds compute actions only (make_schedule adds the transfers).
// Throws std::invalid_argument on bad sizes or a bound < 1.
Schedule list_schedule_zero_bubble(const std::string& kind, int ranks, int micro_batches, std::vector<int> placement,
                                   const std::vector<int>& stash_bound);

// ZB-H1: one stage per rank, 1F1B's memory (stage s stashes at most K - s). Per step the bubble
// is (K - 1)(F + I - W): a third of 1F1B's at F = I = W (for M >= K).
Schedule generate_zb_h1(int ranks, int micro_batches, int virtual_stages);

// ZB-H2: one stage per rank, up to 2(K - s) - 1 stashed on stage s (at most twice 1F1B's). The
// extra warm-up forwards turn the step into a parallelogram: no rank idles between its first and
// last action (for M >= 2K - 1), so steps that follow each other without a barrier have no bubble.
Schedule generate_zb_h2(int ranks, int micro_batches, int virtual_stages);

// ZBV: two stages per rank in a V (rank r holds stages r and 2K - 1 - r, so rank 0 computes the
// loss), each rank stashing at most 2K chunk activations — 1F1B's memory, as every chunk is half
// a stage. Zero bubble between steps for M >= 2K - 1, and half of ZB-H1's bubble within a step.
Schedule generate_zbv(int ranks, int micro_batches, int virtual_stages);

}  // namespace mp::pipeline
