// Stage checkpoints and the whole-model export, on top of nn/safetensors: naming the optimizer
// state by parameter name, the index file, a checksum per tensor and one over the metadata, and
// the checks a resume makes before it touches any parameter (checksums, stage count, stage index,
// step agreement, optimizer type, keys, shapes, dtypes).
#include "nn/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "kernels/common/counter_rng.h"

namespace mp::nn {

namespace {

using json = nlohmann::json;

constexpr const char* kIndexFormat = "minipipe-checkpoint";
constexpr const char* kStageFormat = "minipipe-stage-checkpoint";
constexpr int kFormatVersion = 2;  // 2: checksums

std::string stage_file_name(int64_t stage_index, int64_t stage_count) {
    return str("stage-", stage_index, "-of-", stage_count, ".safetensors");
}

void check_stage(const char* op, int64_t stage_index, int64_t stage_count) {
    MP_REQUIRE(stage_count >= 1 && stage_index >= 0 && stage_index < stage_count, op, ": stage ", stage_index,
               " of ", stage_count, " is not a valid stage");
}

// Every tensor a stage checkpoint holds, by key: "model.<name>" for each parameter of `stage`
// and "optim.<name>.<kind>" for each defined optimizer state tensor.
std::map<std::string, Tensor> checkpoint_tensors(const Module& stage, const Optimizer& optimizer, const char* op) {
    std::map<std::string, Tensor> tensors;
    std::map<uint64_t, std::string> name_of_parameter;
    for (const auto& [name, parameter] : stage.named_parameters()) {
        tensors["model." + name] = parameter;
        name_of_parameter[parameter.id()] = name;
    }
    const std::vector<Tensor>& parameters = optimizer.parameters();
    for (const auto& [kind, per_parameter] : optimizer.state()) {
        MP_REQUIRE(per_parameter.size() == parameters.size(), op, ": ", optimizer.type_name(), " state '", kind, "' has ",
                   per_parameter.size(), " tensors for ", parameters.size(), " parameters");
        for (size_t i = 0; i < parameters.size(); ++i) {
            if (!per_parameter[i].defined()) continue;
            auto found = name_of_parameter.find(parameters[i].id());
            MP_REQUIRE(found != name_of_parameter.end(), op, ": optimizer parameter ", i, " (",
                       parameters[i].describe(), ") is not a parameter of the stage, so its state has no name");
            tensors["optim." + found->second + "." + kind] = per_parameter[i];
        }
    }
    return tensors;
}

// A 64-bit digest of bytes: 8-byte words folded through mix64, the length mixed in last. Not
// cryptographic; it catches flipped bits and truncation, at memory speed.
uint64_t digest(const void* data, size_t bytes) {
    const unsigned char* cursor = static_cast<const unsigned char*>(data);
    uint64_t hash = 0x6d696e6970697065ULL;  // "minipipe"
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t word = 0;
        std::memcpy(&word, cursor + i, 8);
        hash = rng::mix64(hash ^ word);
    }
    uint64_t tail = 0;
    std::memcpy(&tail, cursor + i, bytes - i);
    return rng::mix64(rng::mix64(hash ^ tail) ^ static_cast<uint64_t>(bytes));
}

std::string hex(uint64_t value) {
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
    return text;
}

std::string tensor_digest(const Tensor& tensor) {
    const Tensor host = tensor.device().is_cpu() ? tensor : tensor.to(Device::cpu());
    return hex(digest(host.raw_data(), host.nbytes()));
}

// Over every metadata entry but the digest itself, as "key=value\n" in key order.
std::string metadata_digest(const SafetensorsMetadata& metadata) {
    std::string text;
    for (const auto& [key, value] : metadata)
        if (key != "metadata_checksum") text += key + "=" + value + "\n";
    return hex(digest(text.data(), text.size()));
}

// A metadata value that must be present; `path` names the file in the error.
const std::string& required_field(const SafetensorsMetadata& metadata, const std::string& key, const std::string& path) {
    auto found = metadata.find(key);
    MP_REQUIRE(found != metadata.end(), "checkpoint '", path, "': metadata lacks '", key, "'");
    return found->second;
}

int64_t integer_field(const SafetensorsMetadata& metadata, const std::string& key, const std::string& path) {
    const std::string& text = required_field(metadata, key, path);
    size_t used = 0;
    int64_t value = 0;
    try {
        value = std::stoll(text, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    MP_REQUIRE(used == text.size() && used > 0, "checkpoint '", path, "': metadata '", key, "' is '", text,
               "', not an integer");
    return value;
}

// Reads index.json and checks its format and stage count; returns the step it records.
int64_t read_index_step(const std::string& dir, int64_t stage_count) {
    const std::string path = checkpoint_index_path(dir);
    json index;
    try {
        index = json::parse(read_file_bytes(path));
    } catch (const json::parse_error& e) {
        throw std::invalid_argument(str("checkpoint '", path, "' is not valid JSON: ", e.what()));
    }
    MP_REQUIRE(index.is_object() && index.value("format", std::string()) == kIndexFormat, "checkpoint '", path,
               "' is not a minipipe checkpoint index (no \"format\": \"", kIndexFormat, "\")");
    MP_REQUIRE(index.contains("stages") && index["stages"].is_number_integer() && index.contains("step") &&
                   index["step"].is_number_integer(),
               "checkpoint '", path, "' lacks integer \"stages\" and \"step\"");
    int64_t saved_stages = index["stages"].get<int64_t>();
    MP_REQUIRE(saved_stages == stage_count, "checkpoint '", path, "' was written for ", saved_stages,
               " stages, this run has ", stage_count);
    return index["step"].get<int64_t>();
}

}  // namespace

std::string step_directory_name(int64_t step) { return str("step-", step); }

std::string stage_checkpoint_path(const std::string& dir, int64_t stage_index, int64_t stage_count, int64_t step) {
    return dir + "/" + step_directory_name(step) + "/" + stage_file_name(stage_index, stage_count);
}

std::string checkpoint_index_path(const std::string& dir) { return dir + "/index.json"; }

void write_checkpoint_index(const std::string& dir, int64_t stage_count, int64_t step,
                            const std::vector<LayerRange>& layer_ranges) {
    MP_REQUIRE(stage_count >= 1, "write_checkpoint_index: stage_count must be >= 1, got ", stage_count);
    MP_REQUIRE(layer_ranges.empty() || static_cast<int64_t>(layer_ranges.size()) == stage_count,
               "write_checkpoint_index: ", layer_ranges.size(), " layer ranges for ", stage_count, " stages");
    json index = {{"format", kIndexFormat}, {"version", kFormatVersion}, {"step", step}, {"stages", stage_count}};
    json files = json::array();
    for (int64_t s = 0; s < stage_count; ++s) files.push_back(step_directory_name(step) + "/" + stage_file_name(s, stage_count));
    index["files"] = files;
    if (!layer_ranges.empty()) {
        json ranges = json::array();
        for (const LayerRange& range : layer_ranges) ranges.push_back({range.first, range.second});
        index["layer_ranges"] = ranges;
    }
    // The step published before this one stays as a fallback; anything older goes.
    int64_t previous = -1;
    if (std::filesystem::exists(checkpoint_index_path(dir))) {
        try {
            previous = json::parse(read_file_bytes(checkpoint_index_path(dir))).value("step", int64_t(-1));
        } catch (const std::exception&) {
            previous = -1;  // an unreadable old index protects nothing
        }
    }
    std::filesystem::create_directories(dir);
    write_file_atomically(checkpoint_index_path(dir), index.dump(2) + "\n");
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (!entry.is_directory() || name.rfind("step-", 0) != 0) continue;
        int64_t saved_step = 0;
        try {
            saved_step = std::stoll(name.substr(5));
        } catch (const std::exception&) {
            continue;  // not one of ours
        }
        if (saved_step != step && saved_step != previous && saved_step < std::max(step, previous))
            std::filesystem::remove_all(entry.path());
    }
}

void save_stage_checkpoint(const std::string& dir, int64_t stage_index, int64_t stage_count, const Module& stage,
                           const Optimizer& optimizer, int64_t step, const std::vector<LayerRange>& layer_ranges,
                           const SafetensorsMetadata& run) {
    check_stage("save_stage_checkpoint", stage_index, stage_count);
    MP_REQUIRE(step >= 0, "save_stage_checkpoint: step must be >= 0, got ", step);
    MP_REQUIRE(layer_ranges.empty() || static_cast<int64_t>(layer_ranges.size()) == stage_count,
               "save_stage_checkpoint: ", layer_ranges.size(), " layer ranges for ", stage_count, " stages");
    std::map<std::string, Tensor> tensors = checkpoint_tensors(stage, optimizer, "save_stage_checkpoint");
    SafetensorsMetadata metadata = {{"format", kStageFormat},
                                    {"version", std::to_string(kFormatVersion)},
                                    {"step", std::to_string(step)},
                                    {"stage_index", std::to_string(stage_index)},
                                    {"stage_count", std::to_string(stage_count)},
                                    {"optimizer", optimizer.type_name()},
                                    {"optimizer_steps", std::to_string(optimizer.steps_taken())}};
    if (!layer_ranges.empty()) {
        metadata["layer_begin"] = std::to_string(layer_ranges[stage_index].first);
        metadata["layer_end"] = std::to_string(layer_ranges[stage_index].second);
    }
    for (const auto& [key, value] : run) metadata["run." + key] = value;
    for (const auto& [key, tensor] : tensors) metadata["checksum." + key] = tensor_digest(tensor);
    metadata["metadata_checksum"] = metadata_digest(metadata);
    const std::string path = stage_checkpoint_path(dir, stage_index, stage_count, step);
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    write_safetensors(path, NamedTensors(tensors.begin(), tensors.end()), metadata);
    if (stage_count == 1) write_checkpoint_index(dir, stage_count, step, layer_ranges);
}

int64_t load_stage_checkpoint(const std::string& dir, int64_t stage_index, int64_t stage_count, Module& stage,
                              Optimizer& optimizer, SafetensorsMetadata* run,
                              const std::vector<ExpectedRunEntry>& expected_run) {
    check_stage("load_stage_checkpoint", stage_index, stage_count);
    const int64_t index_step = read_index_step(dir, stage_count);
    const std::string path = stage_checkpoint_path(dir, stage_index, stage_count, index_step);
    SafetensorsContents saved = read_safetensors(path);
    const SafetensorsMetadata& metadata = saved.metadata;

    MP_REQUIRE(metadata.count("format") && metadata.at("format") == kStageFormat, "checkpoint '", path,
               "' is not a minipipe stage checkpoint (metadata lacks \"format\": \"", kStageFormat, "\")");
    const int64_t version = integer_field(metadata, "version", path);
    MP_REQUIRE(version == kFormatVersion, "checkpoint '", path, "' has format version ", version, ", this minipipe reads ",
               kFormatVersion, " (version 1 files carry no checksums: save them again with this version)");
    // The metadata first (an edited field, e.g. optimizer_steps, is caught here); the tensors'
    // checksums after the structural checks below, whose messages say more.
    const std::string& stored_metadata_digest = required_field(metadata, "metadata_checksum", path);
    MP_REQUIRE(stored_metadata_digest == metadata_digest(metadata), "checkpoint '", path,
               "': its metadata fails its checksum (stored ", stored_metadata_digest, ", computed ",
               metadata_digest(metadata), "): a field was edited or the header is corrupt");

    int64_t saved_stages = integer_field(metadata, "stage_count", path);
    MP_REQUIRE(saved_stages == stage_count, "checkpoint '", path, "' was written for ", saved_stages,
               " stages, this run has ", stage_count);
    int64_t saved_stage = integer_field(metadata, "stage_index", path);
    MP_REQUIRE(saved_stage == stage_index, "checkpoint '", path, "' holds stage ", saved_stage, ", expected stage ",
               stage_index);
    int64_t step = integer_field(metadata, "step", path);
    MP_REQUIRE(step == index_step, "checkpoint '", path, "' is from step ", step, " but '", checkpoint_index_path(dir),
               "' records step ", index_step, " (a save was interrupted part-way?)");
    const std::string& saved_optimizer = required_field(metadata, "optimizer", path);
    MP_REQUIRE(saved_optimizer == optimizer.type_name(), "checkpoint '", path, "' holds ", saved_optimizer,
               " state, this run uses ", optimizer.type_name());
    int64_t optimizer_steps = integer_field(metadata, "optimizer_steps", path);
    MP_REQUIRE(optimizer_steps >= 0, "checkpoint '", path, "': optimizer_steps ", optimizer_steps, " is negative");

    for (const ExpectedRunEntry& expected : expected_run) {
        auto found = metadata.find("run." + expected.key);
        if (found == metadata.end()) continue;
        MP_REQUIRE(found->second == expected.value, "checkpoint '", path, "' was saved with ", expected.key, " \"",
                   found->second, "\" but this run has \"", expected.value, "\"",
                   expected.advice.empty() ? "" : ": ", expected.advice);
    }

    // Check everything first, so that a refused load leaves the model and optimizer untouched.
    std::map<std::string, Tensor> targets = checkpoint_tensors(stage, optimizer, "load_stage_checkpoint");
    for (const auto& [key, target] : targets) {
        auto found = saved.tensors.find(key);
        MP_REQUIRE(found != saved.tensors.end(), "checkpoint '", path, "' lacks tensor '", key, "'");
        const Tensor& source = found->second;
        MP_REQUIRE(source.shape() == target.shape(), "checkpoint '", path, "': tensor '", key, "' has shape ",
                   shape_str(source.shape()), ", this run expects ", shape_str(target.shape()));
        MP_REQUIRE(source.dtype() == target.dtype(), "checkpoint '", path, "': tensor '", key, "' is ",
                   dtype_name(source.dtype()), ", this run expects ", dtype_name(target.dtype()));
    }
    for (const auto& [key, source] : saved.tensors)
        MP_REQUIRE(targets.count(key), "checkpoint '", path, "' has tensor '", key,
                   "' that this stage and optimizer do not have");
    for (const auto& [key, tensor] : saved.tensors) {
        const std::string& stored = required_field(metadata, "checksum." + key, path);
        const std::string computed = tensor_digest(tensor);
        MP_REQUIRE(stored == computed, "checkpoint '", path, "': tensor '", key, "' fails its checksum (stored ", stored,
                   ", computed ", computed, "): the file is corrupt");
    }

    for (auto& [key, target] : targets) target.copy_from(saved.tensors.at(key));
    optimizer.set_steps_taken(optimizer_steps);
    if (run != nullptr) {
        run->clear();
        for (const auto& [key, value] : metadata)
            if (key.rfind("run.", 0) == 0) (*run)[key.substr(4)] = value;
    }
    return step;
}

void export_model(const std::string& path, const NamedTensors& named_tensors) {
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    write_safetensors(path, named_tensors, {{"format", "pt"}});
}

}  // namespace mp::nn
