// The start-up check of a run's output paths: each file's directory must exist and be writable,
// each directory the nearest existing directory above it must be writable (missing levels are made).
#include "train/output_paths.h"

#include <filesystem>

#include <unistd.h>

namespace mp::train {

void check_output_paths(const TrainConfig& config) {
    namespace fs = std::filesystem;
    // The nearest existing directory at or above `dir` must be writable (missing levels are created).
    auto require_writable_directory = [](const std::string& key, const std::string& path, fs::path dir) {
        if (dir.empty()) dir = ".";
        while (!fs::exists(dir) && dir.has_parent_path() && dir.parent_path() != dir) dir = dir.parent_path();
        if (fs::is_directory(dir) && ::access(dir.c_str(), W_OK) == 0) return;
        const char* why = !fs::exists(dir)         ? " does not exist"
                          : fs::is_directory(dir) ? " is not writable"
                                                  : " is not a directory";
        throw std::invalid_argument(str(key, " '", path, "': cannot write there (", dir.string(), why, ")"));
    };
    const std::pair<const char*, const std::string*> files[] = {
        {"trace.path", &config.trace.path}, {"trace.svg", &config.trace.svg}, {"summary.path", &config.summary.path}};
    for (const auto& [key, path] : files) {
        if (path->empty()) continue;
        MP_REQUIRE(!fs::is_directory(*path), key, " '", *path, "' is a directory, not a file");
        fs::path parent = fs::path(*path).parent_path();
        MP_REQUIRE(parent.empty() || fs::is_directory(parent), key, " '", *path, "': the directory '", parent.string(),
                   "' does not exist");
        require_writable_directory(key, *path, parent);
    }
    if (!config.exports.hf.empty()) {
        MP_REQUIRE(!fs::exists(config.exports.hf) || fs::is_directory(config.exports.hf), "export.hf '",
                   config.exports.hf, "' is not a directory");
        require_writable_directory("export.hf", config.exports.hf, config.exports.hf);
    }
    // Set, the directory is written at the end whatever checkpoint.every says: the final checkpoint
    // and the whole model's model.safetensors.
    if (!config.checkpoint.dir.empty()) {
        MP_REQUIRE(!fs::exists(config.checkpoint.dir) || fs::is_directory(config.checkpoint.dir), "checkpoint.dir '",
                   config.checkpoint.dir, "' is not a directory");
        require_writable_directory("checkpoint.dir", config.checkpoint.dir, config.checkpoint.dir);
    }
}

}  // namespace mp::train
