// Strict reading of a JSON configuration file: a syntax error names file:line:column, a key given
// twice in one object is an error (nlohmann would silently keep the last), and so are a NUL byte
// (nlohmann would stop there) and nesting deeper than kMaxJsonDepth. Comments are allowed.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace mp {

// Parses `text`; errors are std::invalid_argument starting with `source_name` (the file's name).
nlohmann::json parse_json_strict(const std::string& text, const std::string& source_name);

// The whole text of the configuration file at `path`; std::invalid_argument naming the path when it
// is a directory, not a regular file, cannot be opened or fails while being read.
std::string read_config_file(const std::string& path);

}  // namespace mp
