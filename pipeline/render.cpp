// render(): places each Forward/Backward of the unit-cost simulation in the column of its start
// time. Columns are as wide as the longest label ("F12"), so rows line up for any M.
#include "pipeline/render.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "pipeline/simulate.h"

namespace mp::pipeline {

std::string render(const Schedule& schedule) {
    const SimulationResult simulated = simulate(schedule, equal_costs(schedule.stages, 1.0, 1.0, 0.0));
    const int slots = static_cast<int>(std::lround(simulated.step_time));
    const std::string idle = "..";

    std::vector<std::vector<std::string>> cells(schedule.stages, std::vector<std::string>(slots, idle));
    size_t width = idle.size();
    for (int stage = 0; stage < schedule.stages; ++stage) {
        for (const TimedAction& timed : simulated.timeline[stage]) {
            if (!is_compute(timed.action.kind)) continue;
            const std::string label = to_string(timed.action);
            cells[stage][static_cast<int>(std::lround(timed.start))] = label;
            width = std::max(width, label.size());
        }
    }

    const size_t stage_digits = std::to_string(schedule.stages - 1).size();
    std::ostringstream out;
    for (int stage = 0; stage < schedule.stages; ++stage) {
        std::string row = "stage " + std::to_string(stage);
        row += std::string(stage_digits - std::to_string(stage).size(), ' ') + " |";
        for (const std::string& cell : cells[stage]) row += " " + cell + std::string(width - cell.size(), ' ');
        row.erase(row.find_last_not_of(' ') + 1);
        out << row << "\n";
    }
    return out.str();
}

}  // namespace mp::pipeline
