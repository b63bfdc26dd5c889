// Run summary: JSON conversion both ways (reading names the missing or mistyped field) and the
// write-then-rename writer.
#include "train/summary.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <type_traits>

#include "base/error.h"

namespace mp::train {

namespace {

// ---- JSON reading with errors that name the field.
const nlohmann::json& field(const nlohmann::json& json, const char* name) {
    MP_REQUIRE(json.is_object(), "run_summary_from_json: expected an object, got ", json.type_name());
    MP_REQUIRE(json.contains(name), "run_summary_from_json: missing field '", name, "'");
    return json.at(name);
}

// A number, or null for a value that was NaN / infinite when written.
double read_double(const nlohmann::json& json, const char* name) {
    const nlohmann::json& value = field(json, name);
    if (value.is_null()) return std::numeric_limits<double>::quiet_NaN();
    MP_REQUIRE(value.is_number(), "run_summary_from_json: field '", name, "' is ", value.type_name(), ", not a number");
    return value.get<double>();
}

template <typename T>
std::vector<T> read_numbers(const nlohmann::json& json, const char* name) {
    const nlohmann::json& value = field(json, name);
    MP_REQUIRE(value.is_array(), "run_summary_from_json: field '", name, "' is ", value.type_name(), ", not an array");
    std::vector<T> numbers;
    for (const nlohmann::json& element : value) {
        if (element.is_null() && std::numeric_limits<T>::has_quiet_NaN) {
            numbers.push_back(std::numeric_limits<T>::quiet_NaN());
            continue;
        }
        MP_REQUIRE(element.is_number() && (std::is_floating_point<T>::value || element.is_number_unsigned()),
                   "run_summary_from_json: field '", name, "' holds ", element.dump(), ", not a ",
                   std::is_floating_point<T>::value ? "number" : "non-negative integer");
        numbers.push_back(element.get<T>());
    }
    return numbers;
}

}  // namespace

nlohmann::json to_json(const RunSummary& summary) {
    nlohmann::json json;
    json["format"] = "minipipe-run-summary";
    json["version"] = 1;
    json["final_loss"] = summary.final_loss;
    json["val_loss"] = summary.val_losses.empty() ? nlohmann::json() : nlohmann::json(summary.val_losses.back().second);
    json["val_losses"] = nlohmann::json::array();
    for (const auto& [step, loss] : summary.val_losses)
        json["val_losses"].push_back({{"step", step}, {"loss", loss}});
    json["accuracy"] =
        summary.accuracies.empty() ? nlohmann::json() : nlohmann::json(summary.accuracies.back().accuracy());
    json["accuracies"] = nlohmann::json::array();
    for (const HeldOutAccuracy& a : summary.accuracies)
        json["accuracies"].push_back({{"step", a.step}, {"correct", a.correct}, {"total", a.total},
                                      {"accuracy", a.accuracy()}});
    json["tokens_per_second"] = summary.tokens_per_second;
    json["samples_per_second"] = summary.samples_per_second;
    json["bubble_per_stage"] = summary.bubble_per_stage;
    json["peak_memory_per_stage"] = summary.peak_memory_per_stage;
    json["peak_stash_per_stage"] = summary.peak_stash_per_stage;
    json["parameter_checksum"] = summary.parameter_checksum;
    json["steps"] = summary.steps;
    json["config"] = summary.config;
    return json;
}

RunSummary run_summary_from_json(const nlohmann::json& json) {
    RunSummary summary;
    summary.final_loss = read_double(json, "final_loss");
    if (json.contains("val_losses")) {
        const nlohmann::json& evaluations = json.at("val_losses");
        MP_REQUIRE(evaluations.is_array(), "run_summary_from_json: field 'val_losses' is ", evaluations.type_name(),
                   ", not an array");
        for (const nlohmann::json& evaluation : evaluations) {
            const bool has_step = evaluation.is_object() && evaluation.contains("step");
            MP_REQUIRE(has_step && evaluation.at("step").is_number_integer(),
                       "run_summary_from_json: field 'val_losses' holds ", evaluation.dump(),
                       ", not {\"step\": integer, \"loss\": number}");
            summary.val_losses.emplace_back(evaluation.at("step").get<int64_t>(), read_double(evaluation, "loss"));
        }
    }
    if (json.contains("accuracies")) {
        const nlohmann::json& scores = json.at("accuracies");
        MP_REQUIRE(scores.is_array(), "run_summary_from_json: field 'accuracies' is ", scores.type_name(),
                   ", not an array");
        for (const nlohmann::json& score : scores) {
            bool integers = score.is_object();
            for (const char* key : {"step", "correct", "total"})
                integers = integers && score.contains(key) && score.at(key).is_number_integer();
            MP_REQUIRE(integers, "run_summary_from_json: field 'accuracies' holds ", score.dump(),
                       ", not {\"step\", \"correct\", \"total\": integers}");
            summary.accuracies.push_back({score.at("step").get<int64_t>(), score.at("correct").get<int64_t>(),
                                          score.at("total").get<int64_t>()});
        }
    }
    summary.tokens_per_second = read_double(json, "tokens_per_second");
    summary.samples_per_second = read_double(json, "samples_per_second");
    summary.bubble_per_stage = read_numbers<double>(json, "bubble_per_stage");
    summary.peak_memory_per_stage = read_numbers<size_t>(json, "peak_memory_per_stage");
    summary.peak_stash_per_stage = read_numbers<size_t>(json, "peak_stash_per_stage");
    const nlohmann::json& checksum = field(json, "parameter_checksum");
    MP_REQUIRE(checksum.is_string(), "run_summary_from_json: field 'parameter_checksum' is ", checksum.type_name(),
               ", not a string");
    summary.parameter_checksum = checksum.get<std::string>();
    const nlohmann::json& steps = field(json, "steps");
    MP_REQUIRE(steps.is_number_integer(), "run_summary_from_json: field 'steps' is ", steps.dump(), ", not an integer");
    summary.steps = steps.get<int64_t>();
    summary.config = field(json, "config");
    return summary;
}

void write_summary(const RunSummary& summary, const std::string& path) {
    const std::string text = to_json(summary).dump(2) + "\n";
    const std::string temporary = path + ".tmp";
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        MP_REQUIRE(out.good(), "write_summary: cannot open '", temporary, "' for writing (summary for '", path, "')");
        out << text;
        out.close();
        if (!out.good()) {
            std::remove(temporary.c_str());
            MP_REQUIRE(false, "write_summary: writing '", temporary, "' failed (summary for '", path, "')");
        }
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
        const std::string reason = std::strerror(errno);
        std::remove(temporary.c_str());
        MP_REQUIRE(false, "write_summary: cannot rename '", temporary, "' to '", path, "': ", reason);
    }
}

}  // namespace mp::train
