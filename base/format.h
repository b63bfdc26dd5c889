// The small formats that log lines, benchmarks and error messages share — bytes in binary units,
// fixed decimals, joined integer lists — and the elapsed-seconds reading they time with, each
// written once so that every program and every rank prints alike. Dependency-free: base/.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace mp {

// "512 B", "1.5 KiB", "3.0 GiB": binary units up to TiB, `decimals` digits above bytes.
std::string bytes_str(double bytes, int decimals = 1);

// fixed(0.12345, 4) is "0.1235" (snprintf's %.*f).
std::string fixed(double value, int decimals);

// join_ints({8, 16}) is "8,16"; join_ints({60, 63}, " ") is "60 63".
std::string join_ints(const std::vector<int64_t>& values, const std::string& separator = ",");

// Seconds on the steady clock since `begin`.
double seconds_since(std::chrono::steady_clock::time_point begin);

}  // namespace mp
