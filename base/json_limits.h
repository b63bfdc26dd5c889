// Limits on JSON from users and files (configs, safetensors headers): how deep it may nest (10^5
// brackets are refused, not a stack overflow in a recursive walk), and how much of a value an error
// message may quote (a name, not a megabyte).
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace mp {

// Deeper than any minipipe document needs (a config is 3 levels, a safetensors header 3).
constexpr int kMaxJsonDepth = 32;

// value.dump(), cut to about max_chars with "…" marking the cut.
inline std::string abbreviated(const nlohmann::json& value, size_t max_chars = 80) {
    std::string text = value.dump();
    if (text.size() <= max_chars) return text;
    return text.substr(0, max_chars) + "… (" + std::to_string(text.size()) + " characters)";
}

}  // namespace mp
