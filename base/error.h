// Error helpers shared by every layer: a variadic message builder and MP_REQUIRE,
// which throws std::invalid_argument naming the op and the values that were wrong.
// Library code never exits; it throws, and the caller (a test, a trainer main) decides.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace mp {

// Concatenates any streamable values: str("linear: ", 513, " != ", 512).
template <typename... Args>
std::string str(const Args&... args) {
    std::ostringstream out;
    (out << ... << args);
    return out.str();
}

// A failed CUDA / cuBLAS / cuDNN / NCCL / MPI call. The message carries file:line.
class RuntimeError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

}  // namespace mp

// Argument check: MP_REQUIRE(a.numel() == b.numel(), "add: ", a.numel(), " vs ", b.numel());
#define MP_REQUIRE(cond, ...)                                        \
    do {                                                             \
        if (!(cond)) throw std::invalid_argument(::mp::str(__VA_ARGS__)); \
    } while (0)
