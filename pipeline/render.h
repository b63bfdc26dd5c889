// Text rendering of a schedule for the README, the examples and test failures: one row per
// stage, one fixed-width column per time slot of the unit-cost simulation (forward = backward = 1,
// free transfers), so the warm-up, steady state, cool-down and the bubble are visible at a glance.
#pragma once

#include <string>

#include "pipeline/schedule.h"

namespace mp::pipeline {

// For gpipe with K = 2, M = 2:
//   stage 0 | F0 F1 .. .. B0 B1
//   stage 1 | .. F0 F1 B0 B1 ..
// Only Forward and Backward occupy slots; idle slots are ".." up to the end of the step. Each
// row ends in a newline and carries no trailing spaces. Throws std::invalid_argument if the
// schedule is invalid.
std::string render(const Schedule& schedule);

}  // namespace mp::pipeline
