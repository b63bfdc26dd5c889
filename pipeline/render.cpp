// render(): places each compute action of the unit-cost simulation in the column of its start
// time. Columns are as wide as the longest label ("F12", "5W12"), so rows line up for any M.
#include "pipeline/render.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <vector>

#include "pipeline/simulate.h"

namespace mp::pipeline {

std::string render(const Schedule& schedule) {
    // Every compute action takes one slot: B as well as I and W.
    Costs costs = equal_costs(schedule.stages, 1.0, 1.0, 0.0);
    costs.input_backward.assign(schedule.stages, 1.0);
    costs.weight_backward.assign(schedule.stages, 1.0);
    const SimulationResult simulated = simulate(schedule, costs);
    const int slots = static_cast<int>(std::lround(simulated.step_time));
    const std::string idle = "..";

    std::vector<std::vector<std::string>> cells(schedule.ranks, std::vector<std::string>(slots, idle));
    size_t width = idle.size();
    for (int rank = 0; rank < schedule.ranks; ++rank) {
        for (const TimedAction& timed : simulated.timeline[rank]) {
            if (!is_compute(timed.action.kind)) continue;
            const std::string label = display_name(schedule, timed.action);
            cells[rank][static_cast<int>(std::lround(timed.start))] = label;
            width = std::max(width, label.size());
        }
    }

    const std::string row_word = schedule.one_stage_per_rank() ? "stage " : "rank ";
    const size_t rank_digits = std::to_string(schedule.ranks - 1).size();
    std::ostringstream out;
    for (int rank = 0; rank < schedule.ranks; ++rank) {
        std::string row = row_word + std::to_string(rank);
        row += std::string(rank_digits - std::to_string(rank).size(), ' ') + " |";
        for (const std::string& cell : cells[rank]) row += " " + cell + std::string(width - cell.size(), ' ');
        row.erase(row.find_last_not_of(' ') + 1);
        out << row << "\n";
    }
    return out.str();
}

}  // namespace mp::pipeline
