// The trainer's printing: a log that prints on world rank 0 only (and only when verbose), and the
// number formats its lines share (bytes as KiB / MiB / GiB, fixed decimals).
#pragma once

#include <cstdio>
#include <string>

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

std::string bytes_str(double bytes);              // "512 B", "1.5 KiB", "3.0 GiB"
std::string fixed(double value, int decimals);  // fixed(0.12345, 4) is "0.1235"

}  // namespace mp::train
