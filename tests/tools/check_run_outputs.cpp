// Checks what a trainer run wrote, for the example smoke test: the summary JSON parses as a run
// summary (with a loss, a checksum, one bubble and memory figure per stage, and with --accuracy
// held-out accuracies in [0, 1]), the Chrome trace parses and has complete events, the timeline
// SVG is well-formed. Prints what is wrong; exit 1.
// Usage: check_run_outputs --summary FILE [--stages K] [--accuracy 1] [--trace FILE] [--svg FILE]
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tests/support/xml_check.h"
#include "train/summary.h"

namespace {
std::string read(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}
}  // namespace

int main(int argc, char** argv) {
    std::string summary_path, trace_path, svg_path;
    size_t stages = 0;
    bool accuracy = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--summary")) summary_path = argv[i + 1];
        else if (!std::strcmp(argv[i], "--trace")) trace_path = argv[i + 1];
        else if (!std::strcmp(argv[i], "--svg")) svg_path = argv[i + 1];
        else if (!std::strcmp(argv[i], "--stages")) stages = std::stoul(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--accuracy")) accuracy = std::strcmp(argv[i + 1], "0") != 0;
    }
    try {
        if (!summary_path.empty()) {
            mp::train::RunSummary s = mp::train::run_summary_from_json(nlohmann::json::parse(read(summary_path)));
            if (!(s.final_loss > 0))
                throw std::runtime_error(summary_path + ": final loss " + std::to_string(s.final_loss));
            if (s.parameter_checksum.size() != 64)
                throw std::runtime_error(summary_path + ": checksum '" + s.parameter_checksum + "'");
            if (stages && (s.bubble_per_stage.size() != stages || s.peak_memory_per_stage.size() != stages))
                throw std::runtime_error(summary_path + ": " + std::to_string(s.bubble_per_stage.size()) +
                                         " bubble figures for " + std::to_string(stages) + " stages");
            if (accuracy) {
                if (s.accuracies.empty()) throw std::runtime_error(summary_path + ": no held-out accuracy");
                for (const mp::train::HeldOutAccuracy& a : s.accuracies)
                    if (a.total <= 0 || a.correct < 0 || a.correct > a.total)
                        throw std::runtime_error(summary_path + ": held-out accuracy " +
                                                 std::to_string(a.correct) + " of " + std::to_string(a.total) +
                                                 " after step " + std::to_string(a.step));
                std::printf("%s: held-out accuracy %.3f\n", summary_path.c_str(), s.accuracies.back().accuracy());
            }
            std::printf("%s: loss %.4f, %.0f tokens/s, checksum %s\n", summary_path.c_str(), s.final_loss,
                        s.tokens_per_second, s.parameter_checksum.substr(0, 16).c_str());
        }
        if (!trace_path.empty()) {
            nlohmann::json trace = nlohmann::json::parse(read(trace_path));
            size_t complete = 0;
            for (const auto& e : trace.at("traceEvents")) complete += e.at("ph") == "X";
            if (complete == 0) throw std::runtime_error(trace_path + ": no complete events");
            std::printf("%s: %zu events\n", trace_path.c_str(), complete);
        }
        if (!svg_path.empty()) {
            std::string problem = mp::testing::xml_problem(read(svg_path));
            if (!problem.empty()) throw std::runtime_error(svg_path + ": " + problem);
            std::printf("%s: well-formed\n", svg_path.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "check_run_outputs: %s\n", e.what());
        return 1;
    }
    return 0;
}
