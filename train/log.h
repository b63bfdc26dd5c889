// The trainer's printing: a log that prints on world rank 0 only (and only when verbose), and the
// bubble percentages its step and final lines share. Number formats: base/format.h.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "base/format.h"

namespace mp::train {

struct RunLog {
    bool on;
    // printf-style, one line, flushed at once (ranks' output interleaves under mpirun).
    template <typename... Args>
    void line(const char* format, Args... args) const {
        if (!on) return;
        std::printf(format, args...);
        std::printf("\n");
        std::fflush(stdout);
    }
};

// Each stage's bubble fraction as a whole percentage, space-separated: "60 63 63 63".
std::string bubble_percents(const std::vector<double>& fractions);

}  // namespace mp::train
