// The one way comm/ turns a timeout in seconds into a steady-clock deadline, safe for any
// positive duration a user can configure (no overflow into a deadline in the past), and the one
// reading of MINIPIPE_COMM_TIMEOUT_S. Header-only, no MPI: the config layer reads it too.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>

namespace mp::comm::detail {

// Timeouts are capped at ten years: more nanoseconds than that would overflow the clock's count.
constexpr double kMaxTimeoutSeconds = 10.0 * 365 * 24 * 3600;

// The steady-clock instant `seconds` from now.
inline std::chrono::steady_clock::time_point deadline_in(double seconds) {
    using Clock = std::chrono::steady_clock;
    const double capped = std::min(seconds, kMaxTimeoutSeconds);
    return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(capped));
}

// MINIPIPE_COMM_TIMEOUT_S as seconds: nullopt when unset or empty; throws std::invalid_argument
// naming the variable unless it is a number in (0, kMaxTimeoutSeconds].
inline std::optional<double> timeout_seconds_from_environment() {
    const char* text = std::getenv("MINIPIPE_COMM_TIMEOUT_S");
    if (text == nullptr || *text == '\0') return std::nullopt;
    char* end = nullptr;
    errno = 0;
    const double seconds = std::strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !std::isfinite(seconds) || seconds <= 0 ||
        seconds > kMaxTimeoutSeconds)
        throw std::invalid_argument(std::string("MINIPIPE_COMM_TIMEOUT_S='") + text +
                                    "': expected a number of seconds in (0, " + std::to_string(kMaxTimeoutSeconds) + "]");
    return seconds;
}

}  // namespace mp::comm::detail
