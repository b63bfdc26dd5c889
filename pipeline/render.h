// Text rendering of a schedule for the docs, the examples and test failures: one row per
// rank, one fixed-width column per time slot of the unit-cost simulation (every compute action
// takes 1, transfers are free), so the warm-up, steady state, cool-down and the bubble are
// visible at a glance.
#pragma once

#include <string>

#include "pipeline/schedule.h"

namespace mp::pipeline {

// For gpipe with K = 2, M = 2:
//   stage 0 | F0 F1 .. .. B0 B1
//   stage 1 | .. F0 F1 B0 B1 ..
// Only compute actions occupy slots; idle slots are ".." up to the end of the step. Where a rank
// holds several stages the rows are ranks and the labels carry the stage ("rank 0 | 0F0 2F0 ..").
// Each row ends in a newline and carries no trailing spaces. Throws std::invalid_argument if the
// schedule is invalid.
std::string render(const Schedule& schedule);

}  // namespace mp::pipeline
