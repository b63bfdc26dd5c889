// Timeline SVG: the picture is well-formed XML (checked by a small parser), boxes are placed in
// proportion to time and coloured by kind, and the simulated 1f1b K=4 M=8 picture matches
// docs/timeline_1f1b_k4_m8.svg. (Run summary: test_run_summary.cpp; checksum: test_parameter_checksum.cpp.)
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "pipeline/schedule.h"
#include "pipeline/simulate.h"
#include "pipeline/timeline_svg.h"
#include "tests/support/test_util.h"
#include "tests/support/xml_check.h"

using namespace mp;
using namespace mp::pipeline;
using mp::testing::expect_invalid_argument;
using mp::testing::xml_problem;

namespace {

size_t count(const std::string& text, const std::string& fragment) {
    size_t n = 0;
    for (size_t at = text.find(fragment); at != std::string::npos; at = text.find(fragment, at + 1)) ++n;
    return n;
}

// The attributes and tooltip of every drawn box (<rect class="box ...">...</rect>), in order.
struct DrawnBox {
    std::map<std::string, std::string> attributes;
    std::string tooltip;
    double number(const std::string& name) const { return std::stod(attributes.at(name)); }
};

std::vector<DrawnBox> drawn_boxes(const std::string& svg) {
    std::vector<DrawnBox> boxes;
    static const std::regex box_pattern("<rect (class=\"box [^>]*)><title>([^<]*)</title></rect>");
    static const std::regex attribute_pattern("([a-zA-Z-]+)=\"([^\"]*)\"");
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), box_pattern); it != std::sregex_iterator(); ++it) {
        DrawnBox box;
        const std::string attributes = (*it)[1];
        for (auto a = std::sregex_iterator(attributes.begin(), attributes.end(), attribute_pattern);
             a != std::sregex_iterator(); ++a)
            box.attributes[(*a)[1]] = (*a)[2];
        box.tooltip = (*it)[2];
        boxes.push_back(box);
    }
    return boxes;
}

// The typed actions of a name as the engine's traces show it: "F0", "SendAct1+RecvGrad0", "Step".
std::vector<Action> actions_named(const std::string& name, int stage) {
    static const std::vector<std::pair<std::string, ActionKind>> prefixes = {
        {"SendAct", ActionKind::SendActivation}, {"RecvAct", ActionKind::RecvActivation},
        {"SendGrad", ActionKind::SendGradient},  {"RecvGrad", ActionKind::RecvGradient},
        {"F", ActionKind::Forward},              {"B", ActionKind::Backward},
        {"I", ActionKind::InputBackward},        {"W", ActionKind::WeightBackward}};
    std::vector<Action> actions;
    std::stringstream parts(name);
    std::string part;
    while (std::getline(parts, part, '+')) {
        if (part == "Step") {
            actions.push_back({ActionKind::OptimizerStep, -1, -1});
            continue;
        }
        bool known = false;
        for (const auto& [prefix, kind] : prefixes) {
            if (part.rfind(prefix, 0) != 0) continue;
            actions.push_back({kind, stage, std::stoi(part.substr(prefix.size()))});
            known = true;
            break;
        }
        EXPECT_TRUE(known) << part;
    }
    return actions;
}

TraceEvent event(const std::string& name, int stage, double start_us, double end_us) {
    TraceEvent e;
    e.actions = actions_named(name, stage);
    e.start_us = start_us;
    e.end_us = end_us;
    return e;
}

// Two stages of a GPipe-like step with K=2, M=2, times in µs.
std::vector<StageTrace> two_stage_traces() {
    StageTrace first;
    first.stage = 0;
    first.step_us = 10000;
    first.events = {event("F0", 0, 0, 1000),           event("SendAct0", 0, 1000, 1100),
                    event("F1", 0, 1100, 2100),        event("SendAct1", 0, 2100, 2200),
                    event("RecvGrad0", 0, 2200, 6000), event("B0", 0, 6000, 8000),
                    event("RecvGrad1", 0, 8000, 8000), event("B1", 0, 8000, 9900),
                    event("Step", 0, 9900, 10000)};
    StageTrace second;
    second.stage = 1;
    second.step_us = 9800;
    second.events = {event("RecvAct0", 1, 0, 1100),
                     event("F0", 1, 1100, 2100),
                     event("SendAct1+RecvGrad0", 1, 2100, 2300),
                     event("F1", 1, 2300, 3300),
                     event("B0", 1, 3300, 5300),
                     event("B1", 1, 5300, 7300),
                     event("Step", 1, 9700, 9800)};
    return {second, first};  // out of order on purpose: rows come out in stage order
}

}  // namespace

// ---------------------------------------------------------------------------------------- SVG

TEST(TimelineSvg, WellFormedWithRootAttributesAndOneRowPerStage) {
    const std::string svg = timeline_svg(two_stage_traces(), "gpipe K=2 M=2");
    EXPECT_EQ(xml_problem(svg), "");
    EXPECT_EQ(svg.rfind("<svg ", 0), 0u) << svg.substr(0, 80);
    EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
    for (const char* attribute : {"xmlns=\"http://www.w3.org/2000/svg\"", "width=\"", "height=\"", "viewBox=\"0 0 "})
        EXPECT_NE(svg.find(attribute), std::string::npos) << attribute;
    EXPECT_EQ(count(svg, "<rect"), count(svg, "</rect>"));
    EXPECT_EQ(count(svg, ">stage 0</text>"), 1u);
    EXPECT_EQ(count(svg, ">stage 1</text>"), 1u);
    EXPECT_LT(svg.find(">stage 0</text>"), svg.find(">stage 1</text>"));
    EXPECT_EQ(count(svg, "<rect class=\"idle\""), 2u);
    // The legend names every kind, and the axis is in ms.
    for (const char* legend : {">forward<", ">backward<", ">send<", ">recv<", ">send+recv<", ">optimizer step<", ">idle<"})
        EXPECT_NE(svg.find(legend), std::string::npos) << legend;
    EXPECT_NE(svg.find("(ms)"), std::string::npos);
    EXPECT_NE(svg.find("bubble 41.0%"), std::string::npos);  // stage 0: 1 - 5900 / 10000
}

TEST(TimelineSvg, OneBoxPerTimedEventClassifiedByName) {
    const std::vector<StageTrace> traces = two_stage_traces();
    const std::string svg = timeline_svg(traces, "t");
    size_t forwards = 0, backwards = 0;
    for (const StageTrace& trace : traces)
        for (const TraceEvent& e : trace.events) {
            forwards += e.actions.front().kind == ActionKind::Forward;
            backwards += e.actions.front().kind == ActionKind::Backward;
        }
    EXPECT_EQ(count(svg, "class=\"box forward\""), forwards);
    EXPECT_EQ(count(svg, "class=\"box backward\""), backwards);
    EXPECT_EQ(count(svg, "class=\"box send\""), 2u);      // SendAct0, SendAct1
    EXPECT_EQ(count(svg, "class=\"box recv\""), 2u);      // RecvGrad0, RecvAct0 (RecvGrad1 lasts 0: not drawn)
    EXPECT_EQ(count(svg, "class=\"box send-recv\""), 1u); // SendAct1+RecvGrad0
    EXPECT_EQ(count(svg, "class=\"box step\""), 2u);
    EXPECT_EQ(svg.find("RecvGrad1"), std::string::npos);
    // Colours as documented in timeline_svg.h.
    for (const DrawnBox& box : drawn_boxes(svg)) {
        const std::string& kind = box.attributes.at("class");
        const std::string& fill = box.attributes.at("fill");
        const std::map<std::string, std::string> expected_fill = {
            {"box forward", "#4e79a7"}, {"box backward", "#59a14f"}, {"box send", "#f28e2b"},
            {"box recv", "#edc948"},    {"box send-recv", "#b07aa1"}, {"box step", "#e15759"}};
        ASSERT_TRUE(expected_fill.count(kind)) << kind;
        EXPECT_EQ(fill, expected_fill.at(kind)) << kind;
    }
}

TEST(TimelineSvg, BoxesArePlacedInProportionToTime) {
    const std::vector<StageTrace> traces = two_stage_traces();
    const std::vector<DrawnBox> boxes = drawn_boxes(timeline_svg(traces, "t"));
    // Stage 1's row comes first in `traces` but second in the picture; find boxes by tooltip.
    auto find = [&](const std::string& tooltip_prefix, size_t nth) {
        for (const DrawnBox& box : boxes)
            if (box.tooltip.rfind(tooltip_prefix, 0) == 0 && nth-- == 0) return box;
        ADD_FAILURE() << "no box " << tooltip_prefix;
        return DrawnBox{};
    };
    const DrawnBox f0 = find("F0:", 0);       // stage 0: 0 .. 1000 µs
    const DrawnBox b0 = find("B0:", 0);       // stage 0: 6000 .. 8000 µs
    const DrawnBox step = find("Step:", 0);   // stage 0: 9900 .. 10000 µs (the longest row)
    const double px_per_us = f0.number("width") / 1000.0;
    constexpr double kPixelRounding = 0.01;  // coordinates are written with two decimals
    EXPECT_NEAR(b0.number("width"), 2000 * px_per_us, 2 * kPixelRounding);
    EXPECT_NEAR(b0.number("x") - f0.number("x"), 6000 * px_per_us, 2 * kPixelRounding);
    EXPECT_NEAR(step.number("x") + step.number("width") - f0.number("x"), 10000 * px_per_us, 3 * kPixelRounding);
    EXPECT_NEAR(10000 * px_per_us, 1200.0, kPixelRounding);  // the span fills the fixed plot width
    EXPECT_EQ(f0.tooltip, "F0: start 0 ms, duration 1 ms");
    EXPECT_EQ(b0.tooltip, "B0: start 6 ms, duration 2 ms");
    // The two rows sit one above the other.
    const DrawnBox stage1_f0 = find("F0:", 1);
    EXPECT_GT(stage1_f0.number("y"), f0.number("y"));
    EXPECT_NEAR(stage1_f0.number("x") - f0.number("x"), 1100 * px_per_us, 2 * kPixelRounding);
}

TEST(TimelineSvg, LabelsOnlyComputeBoxesWideEnough) {
    StageTrace trace;
    trace.step_us = 100000;
    trace.events = {event("F0", 0, 0, 50000), event("F1", 0, 50000, 50010),
                    event("B12", 0, 50010, 90000), event("SendAct0", 0, 90000, 100000)};
    const std::string svg = timeline_svg({trace}, "t");
    EXPECT_NE(svg.find(">F0</text>"), std::string::npos);
    EXPECT_NE(svg.find(">B12</text>"), std::string::npos);
    EXPECT_EQ(svg.find(">F1</text>"), std::string::npos);        // 0.12 px wide: tooltip only
    EXPECT_NE(svg.find("<title>F1: start"), std::string::npos);
    EXPECT_EQ(svg.find(">SendAct0</text>"), std::string::npos);  // communication: tooltip only
}

TEST(TimelineSvg, EscapesTheTitle) {
    StageTrace trace;
    trace.step_us = 10;
    trace.events = {event("F0", 0, 0, 5), event("SendAct0", 0, 5, 10)};
    const std::string svg = timeline_svg({trace}, "a & b < c \"'");
    EXPECT_EQ(xml_problem(svg), "");
    EXPECT_NE(svg.find("a &amp; b &lt; c &quot;&apos;"), std::string::npos);
    // The checker itself catches what escaping prevents.
    EXPECT_NE(xml_problem("<svg><text>a & b</text></svg>"), "");
    EXPECT_NE(xml_problem("<svg><text>a < b</text></svg>"), "");
    EXPECT_NE(xml_problem("<svg><rect></svg>"), "");
    EXPECT_EQ(xml_problem("<svg><rect x=\"1\"/><text>a &lt; b</text></svg>"), "");
}

// Split backwards get their own colours, and the legend lists them only when they occur. Where a
// rank holds several stages, names carry the stage.
TEST(TimelineSvg, InputAndWeightBackwardHaveTheirOwnColours) {
    StageTrace trace;
    trace.stage = 1;
    trace.names_carry_stages = true;
    trace.step_us = 100000;
    trace.events = {event("F0", 3, 0, 30000), event("I0", 3, 30000, 60000), event("W0", 3, 60000, 90000),
                    event("Step", 3, 90000, 100000)};
    const std::string svg = timeline_svg({trace}, "t");
    EXPECT_EQ(xml_problem(svg), "");
    EXPECT_EQ(count(svg, "class=\"box input-backward\" "), 1u);
    EXPECT_EQ(count(svg, "class=\"box weight-backward\" "), 1u);
    for (const DrawnBox& box : drawn_boxes(svg)) {
        if (box.attributes.at("class") == "box input-backward") {
            EXPECT_EQ(box.attributes.at("fill"), "#76b7b2");
        }
        if (box.attributes.at("class") == "box weight-backward") {
            EXPECT_EQ(box.attributes.at("fill"), "#9c755f");
        }
    }
    EXPECT_NE(svg.find(">input backward</text>"), std::string::npos);
    EXPECT_NE(svg.find(">weight backward</text>"), std::string::npos);
    EXPECT_NE(svg.find(">3I0</text>"), std::string::npos);
    EXPECT_NE(svg.find(">rank 1</text>"), std::string::npos);  // the row is a rank holding several stages
    EXPECT_NE(svg.find("<title>3W0: start"), std::string::npos);
    // A picture without split backwards keeps the legend it always had.
    const std::string plain = timeline_svg(two_stage_traces(), "t");
    EXPECT_EQ(plain.find("input backward"), std::string::npos);
    // The Chrome trace derives the same names.
    EXPECT_NE(chrome_trace_json({trace}).find("\"name\": \"3I0\", \"cat\": \"compute\""), std::string::npos);
}

TEST(TimelineSvg, RejectsEventsThatEndBeforeTheyStart) {
    StageTrace trace;
    trace.stage = 3;
    trace.step_us = 10;
    trace.events = {event("B2", 3, 5, 4)};
    expect_invalid_argument([&] { timeline_svg({trace}, "t"); }, {"timeline_svg", "B2", "stage 3", "before it starts"});
}

TEST(TimelineSvg, EmptyTraceIsStillAPicture) {
    const std::string svg = timeline_svg({}, "nothing");
    EXPECT_EQ(xml_problem(svg), "");
    EXPECT_EQ(count(svg, "class=\"box "), 0u);
}

TEST(TimelineSvg, WritesTheFileAndNamesABadPath) {
    const std::filesystem::path dir = std::filesystem::path(mp::testing::fresh_temp_dir("timeline_svg"));
    const std::string path = (dir / "timeline.svg").string();
    write_timeline_svg(two_stage_traces(), "t", path);
    EXPECT_EQ(mp::testing::read_text_file(path), timeline_svg(two_stage_traces(), "t"));
    const std::string bad = (dir / "no_such_dir" / "timeline.svg").string();
    expect_invalid_argument([&] { write_timeline_svg(two_stage_traces(), "t", bad); }, {"write_timeline_svg", bad});
    std::filesystem::remove_all(dir);
}

// The documentation's picture: 1f1b, K = 4, M = 8, backward twice the forward, small transfers.
std::string documented_simulation_svg() {
    const Schedule schedule = make_schedule("1f1b", 4, 8);
    const SimulationResult result = simulate(schedule, equal_costs(4, 1.0, 2.0, 0.1));
    return timeline_svg_from_simulation(schedule, result, "1f1b, K = 4 stages, M = 8 micro-batches (simulated: F = 1, B = 2, transfer = 0.1)");
}

TEST(TimelineSvg, Simulated1f1bK4M8) {
    const Schedule schedule = make_schedule("1f1b", 4, 8);
    const SimulationResult result = simulate(schedule, equal_costs(4));
    const std::string svg = timeline_svg_from_simulation(schedule, result, "1f1b K=4 M=8");
    EXPECT_EQ(xml_problem(svg), "");
    EXPECT_EQ(count(svg, "class=\"box forward\""), 32u);   // K * M
    EXPECT_EQ(count(svg, "class=\"box backward\""), 32u);
    EXPECT_EQ(count(svg, "<rect class=\"idle\""), 4u);
    EXPECT_NE(svg.find(">F7</text>"), std::string::npos);
    EXPECT_NE(svg.find("simulated time"), std::string::npos);
    // Stage 0's first backward starts once micro-batch 0 went down and back: 4 forwards + 3
    // backwards after it on the way back, at unit costs and free transfers, so at time 7 of 22.
    const std::vector<DrawnBox> boxes = drawn_boxes(svg);
    double b0_x = -1, f0_x = -1, f0_width = -1;
    for (const DrawnBox& box : boxes) {
        if (box.tooltip.rfind("F0:", 0) == 0 && f0_x < 0) f0_x = box.number("x"), f0_width = box.number("width");
        if (box.tooltip.rfind("B0:", 0) == 0 && b0_x < 0) b0_x = box.number("x");
    }
    EXPECT_NEAR(result.step_time, 22.0, 1e-12);  // 2 (M + K - 1)
    EXPECT_NEAR(f0_width, 1200.0 / 22.0, 0.01);
    EXPECT_NEAR(b0_x - f0_x, 7 * f0_width, 0.05);

    // With transfers, 1f1b's batched steady-state groups show up as send+recv boxes.
    const std::string documented = documented_simulation_svg();
    EXPECT_EQ(xml_problem(documented), "");
    EXPECT_GT(count(documented, "class=\"box send-recv\""), 0u);
    EXPECT_NE(documented.find("SendAct"), std::string::npos);
}

TEST(TimelineSvg, SimulationMustMatchTheSchedule) {
    const Schedule schedule = make_schedule("gpipe", 3, 2);
    SimulationResult result = simulate(schedule, equal_costs(3));
    result.timeline.pop_back();
    expect_invalid_argument([&] { timeline_svg_from_simulation(schedule, result, "t"); },
                            {"timeline_svg_from_simulation", "2 rank timelines", "3 ranks"});
}

// docs/timeline_1f1b_k4_m8.svg is generated by this code: the test fails if they drift apart.
// Regenerate with MINIPIPE_UPDATE_DOCS=1 ./build/tests/test_timeline.
TEST(TimelineSvg, DocumentationPictureIsUpToDate) {
    const std::string path = std::string(MP_SOURCE_DIR) + "/docs/timeline_1f1b_k4_m8.svg";
    const std::string expected = documented_simulation_svg();
    const char* update = std::getenv("MINIPIPE_UPDATE_DOCS");
    if (update != nullptr && std::string(update) == "1") {
        std::ofstream(path) << expected;
        GTEST_SKIP() << "rewrote " << path;
    }
    ASSERT_TRUE(std::filesystem::exists(path)) << path << " is missing; run with MINIPIPE_UPDATE_DOCS=1";
    EXPECT_TRUE(mp::testing::read_text_file(path) == expected) << path << " is out of date; run with MINIPIPE_UPDATE_DOCS=1";
}
