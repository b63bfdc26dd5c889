// The strict JSON reader: nlohmann's parser with a callback that tracks the path of every key (to
// refuse duplicates and deep nesting by name), and its errors turned into file:line:column.
#include "base/strict_json.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "base/error.h"
#include "base/json_limits.h"

namespace mp {

using nlohmann::json;

namespace {

// The line (1-based) and column of the byte at 1-based position `byte` of `text`.
std::pair<size_t, size_t> line_and_column(const std::string& text, size_t byte) {
    size_t end = std::min(byte == 0 ? 0 : byte - 1, text.size());
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < end; ++i)
        if (text[i] == '\n') {
            ++line;
            line_start = i + 1;
        }
    return {line, end - line_start + 1};
}

}  // namespace

json parse_json_strict(const std::string& text, const std::string& source_name) {
    // nlohmann stops at a NUL byte; whatever follows it would be ignored without a word.
    const size_t nul = text.find('\0');
    MP_REQUIRE(nul == std::string::npos, source_name, ": a NUL byte at offset ", nul,
               " (a binary file, or text after the JSON document?)");
    struct Frame {
        bool is_object = true;
        std::set<std::string> keys;
        std::string key;       // the current key (objects)
        size_t elements = 0;   // completed elements so far (arrays)
    };
    std::vector<Frame> frames;
    auto path_to = [&frames](const std::string& leaf) {
        std::string path;
        for (const Frame& frame : frames) {
            if (&frame == &frames.back()) break;
            if (frame.is_object) path += (path.empty() ? "" : ".") + frame.key;
            else path += str("[", frame.elements, "]");
        }
        return path + (path.empty() ? "" : ".") + leaf;
    };
    auto count_element = [&frames] {
        if (!frames.empty() && !frames.back().is_object) ++frames.back().elements;
    };
    auto callback = [&](int, json::parse_event_t event, json& parsed) -> bool {
        switch (event) {
            case json::parse_event_t::object_start:
            case json::parse_event_t::array_start:
                MP_REQUIRE(frames.size() < static_cast<size_t>(kMaxJsonDepth), source_name,
                           ": JSON nested deeper than ", kMaxJsonDepth, " levels (at ", path_to("…"),
                           "); a configuration is at most 3 deep");
                frames.push_back(Frame{event == json::parse_event_t::object_start, {}, {}, 0});
                break;
            case json::parse_event_t::object_end:
            case json::parse_event_t::array_end:
                frames.pop_back();
                count_element();
                break;
            case json::parse_event_t::key: {
                Frame& frame = frames.back();
                frame.key = parsed.get<std::string>();
                MP_REQUIRE(frame.keys.insert(frame.key).second, source_name, ": duplicate key ", path_to(frame.key),
                           " (JSON parsers silently keep the last one; give each key once)");
                break;
            }
            case json::parse_event_t::value: count_element(); break;
        }
        return true;
    };
    try {
        return json::parse(text, callback, /*allow_exceptions=*/true, /*ignore_comments=*/true);
    } catch (const json::out_of_range& e) {
        // A number beyond double's range (1e999): nlohmann reports it without a position.
        throw std::invalid_argument(str(source_name, ": invalid JSON: a number is out of range (",
                                        std::string(e.what()).substr(std::string(e.what()).find(']') + 2), ")"));
    } catch (const json::parse_error& e) {
        auto [line, column] = line_and_column(text, e.byte);
        // nlohmann's message: "[json.exception.parse_error.101] parse error at line 3, column 5: <reason>".
        std::string reason = e.what();
        size_t at = reason.find("column ");
        if (at != std::string::npos && (at = reason.find(": ", at)) != std::string::npos)
            reason = reason.substr(at + 2);
        throw std::invalid_argument(str(source_name, ":", line, ":", column, ": invalid JSON: ", reason));
    }
}

std::string read_config_file(const std::string& path) {
    MP_REQUIRE(!std::filesystem::is_directory(path), path, ": is a directory, not a configuration file");
    MP_REQUIRE(!std::filesystem::exists(path) || std::filesystem::is_regular_file(path), path,
               ": is not a regular file (a FIFO or a device?)");
    std::ifstream file(path, std::ios::binary);
    MP_REQUIRE(file.good(), path, ": cannot open the configuration file");
    std::stringstream text;
    text << file.rdbuf();
    MP_REQUIRE(!file.bad(), path, ": error while reading the configuration file");
    return text.str();
}

}  // namespace mp
