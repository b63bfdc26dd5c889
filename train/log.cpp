// The bubble percentages of the step and final lines (train/log.h), rounded to whole percents the
// same way in both.
#include "train/log.h"

#include <cmath>

namespace mp::train {

std::string bubble_percents(const std::vector<double>& fractions) {
    std::vector<int64_t> percents;
    for (double fraction : fractions) percents.push_back(std::lround(100 * fraction));
    return join_ints(percents, " ");
}

}  // namespace mp::train
