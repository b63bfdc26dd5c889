// The shared formats of base/format.h, printed with snprintf so that every rank and every run
// formats a number alike (no locale, no stream state).
#include "base/format.h"

#include <cstdio>

namespace mp {

std::string bytes_str(double bytes, int decimals) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int unit = 0;
    while (bytes >= 1024 && unit < 4) bytes /= 1024, ++unit;
    char buffer[48];
    std::snprintf(buffer, sizeof buffer, "%.*f %s", unit == 0 ? 0 : decimals, bytes, units[unit]);
    return buffer;
}

std::string fixed(double value, int decimals) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
    return buffer;
}

std::string join_ints(const std::vector<int64_t>& values, const std::string& separator) {
    std::string text;
    for (int64_t value : values) text += (text.empty() ? "" : separator) + std::to_string(value);
    return text;
}

double seconds_since(std::chrono::steady_clock::time_point begin) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
}

}  // namespace mp
