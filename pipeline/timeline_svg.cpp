// Timeline pictures: measured traces and simulated timelines are both turned into rows of boxes
// (Row, Box), and one function, draw_timeline, lays them out as SVG — title, legend, one row per
// stage over a grey idle background, a time axis with round-number ticks.
#include "pipeline/timeline_svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace mp::pipeline {

namespace {

enum class BoxKind { Forward, Backward, InputBackward, WeightBackward, Send, Recv, SendRecv, OptimizerStep };

struct BoxStyle {
    const char* css_class;   // class="box forward": lets tests and stylesheets pick boxes out
    const char* legend;      // the legend's text
    const char* fill;
    const char* label_fill;  // colour of the "F3" label inside, if any
};

const BoxStyle& style_of(BoxKind kind) {
    static const BoxStyle forward{"forward", "forward", "#4e79a7", "#ffffff"};
    static const BoxStyle backward{"backward", "backward", "#59a14f", "#ffffff"};
    static const BoxStyle input_backward{"input-backward", "input backward", "#76b7b2", "#000000"};
    static const BoxStyle weight_backward{"weight-backward", "weight backward", "#9c755f", "#ffffff"};
    static const BoxStyle send{"send", "send", "#f28e2b", "#000000"};
    static const BoxStyle recv{"recv", "recv", "#edc948", "#000000"};
    static const BoxStyle send_recv{"send-recv", "send+recv", "#b07aa1", "#000000"};
    static const BoxStyle step{"step", "optimizer step", "#e15759", "#ffffff"};
    switch (kind) {
        case BoxKind::Forward: return forward;
        case BoxKind::Backward: return backward;
        case BoxKind::InputBackward: return input_backward;
        case BoxKind::WeightBackward: return weight_backward;
        case BoxKind::Send: return send;
        case BoxKind::Recv: return recv;
        case BoxKind::SendRecv: return send_recv;
        case BoxKind::OptimizerStep: return step;
    }
    return step;
}

constexpr const char* kIdleFill = "#e6e6e6";

struct Box {
    std::string name;  // "F3", "SendAct2+RecvGrad0", "Step" (with stages: "1F3", ...)
    BoxKind kind = BoxKind::OptimizerStep;
    double start = 0;
    double end = 0;
};

struct Row {
    int stage = 0;       // the row's index: a stage, or a rank where ranks hold several stages
    std::string label = "stage";  // what the index counts: "stage" or "rank"
    double end = 0;      // the stage's step end: the idle background runs from 0 to here
    double bubble = 0;   // fraction, shown at the row's right end
    std::vector<Box> boxes;
};

// How raw times are shown: value / divisor, followed by the unit.
struct TimeAxis {
    double divisor = 1;
    std::string unit;        // "ms", or "" for unit-less simulated costs
    std::string axis_title;  // under the axis
};

// ---- layout (pixels)
constexpr double kPlotWidth = 1200;  // the time span maps onto this
constexpr double kLeft = 80;         // room for "stage 12"
constexpr double kRight = 110;       // room for "bubble 27.3%"
constexpr double kTitleY = 26;
constexpr double kLegendY = 44;      // top of the legend swatches
constexpr double kRowsTop = 70;
constexpr double kRowHeight = 30;
constexpr double kRowGap = 8;
constexpr double kCommunicationHeight = 10;  // send / recv strips at the bottom of a row
constexpr double kAxisHeight = 48;   // tick labels and the axis title
constexpr double kCharWidth = 7;     // rough width of one character at font-size 11-12

std::string escape_xml(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            default: out += c;
        }
    }
    return out;
}

// A coordinate with two decimals: short, and exact enough for a picture.
std::string px(double value) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.2f", value);
    return buffer;
}

// Up to three decimals, trailing zeros dropped: "1.5", "12", "0.125".
std::string trimmed(double value) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.3f", value);
    std::string text = buffer;
    while (!text.empty() && text.back() == '0') text.pop_back();
    if (!text.empty() && text.back() == '.') text.pop_back();
    if (text == "-0") text = "0";
    return text;
}

std::string with_unit(double raw, const TimeAxis& axis) {
    std::string text = trimmed(raw / axis.divisor);
    return axis.unit.empty() ? text : text + " " + axis.unit;
}

// 1, 2 or 5 times a power of ten, giving about `target` intervals over `span`.
double tick_step(double span, int target) {
    const double raw = span / target;
    const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
    const double residual = raw / magnitude;
    const double factor = residual < 1.5 ? 1 : residual < 3.5 ? 2 : residual < 7.5 ? 5 : 10;
    return factor * magnitude;
}

// The kind of box for one compute action or step, or for the operations of one batched group.
BoxKind classify(const std::vector<Action>& actions) {
    MP_REQUIRE(!actions.empty(), "timeline_svg: an event without actions");
    bool any_send = false, any_recv = false;
    for (const Action& action : actions) {
        switch (action.kind) {
            case ActionKind::Forward: return BoxKind::Forward;
            case ActionKind::Backward: return BoxKind::Backward;
            case ActionKind::InputBackward: return BoxKind::InputBackward;
            case ActionKind::WeightBackward: return BoxKind::WeightBackward;
            case ActionKind::OptimizerStep: return BoxKind::OptimizerStep;
            case ActionKind::SendActivation:
            case ActionKind::SendGradient: any_send = true; break;
            case ActionKind::RecvActivation:
            case ActionKind::RecvGradient: any_recv = true; break;
        }
    }
    return any_send && any_recv ? BoxKind::SendRecv : any_send ? BoxKind::Send : BoxKind::Recv;
}

void check_box(const Box& box, int stage, const char* caller) {
    MP_REQUIRE(std::isfinite(box.start) && std::isfinite(box.end), caller, ": '", box.name, "' on stage ", stage,
               " has a non-finite time (", box.start, " to ", box.end, ")");
    MP_REQUIRE(box.end >= box.start, caller, ": '", box.name, "' on stage ", stage, " ends (", box.end,
               ") before it starts (", box.start, ")");
}

// Whether a box is communication (drawn as a strip) rather than work (full height, labelled).
bool is_communication_box(BoxKind kind) {
    switch (kind) {
        case BoxKind::Send:
        case BoxKind::Recv:
        case BoxKind::SendRecv: return true;
        case BoxKind::Forward:
        case BoxKind::Backward:
        case BoxKind::InputBackward:
        case BoxKind::WeightBackward:
        case BoxKind::OptimizerStep: return false;
    }
    return false;
}

// The legend lists input and weight backward only when a picture has them (split backwards).
void draw_legend(std::ostringstream& svg, bool split_backward) {
    double x = kLeft;
    auto item = [&](const char* fill, const std::string& text) {
        svg << "  <rect x=\"" << px(x) << "\" y=\"" << px(kLegendY) << "\" width=\"12\" height=\"12\" fill=\"" << fill
            << "\" stroke=\"#666666\" stroke-width=\"0.5\"></rect>\n";
        svg << "  <text x=\"" << px(x + 17) << "\" y=\"" << px(kLegendY + 10.5) << "\" font-size=\"12\">"
            << escape_xml(text) << "</text>\n";
        x += 17 + kCharWidth * static_cast<double>(text.size()) + 18;
    };
    svg << " <g class=\"legend\">\n";
    for (BoxKind kind : {BoxKind::Forward, BoxKind::Backward, BoxKind::InputBackward, BoxKind::WeightBackward,
                         BoxKind::Send, BoxKind::Recv, BoxKind::SendRecv, BoxKind::OptimizerStep}) {
        const bool half = kind == BoxKind::InputBackward || kind == BoxKind::WeightBackward;
        if (half && !split_backward) continue;
        item(style_of(kind).fill, style_of(kind).legend);
    }
    item(kIdleFill, "idle");
    svg << " </g>\n";
}

void draw_box(std::ostringstream& svg, const Box& box, double x0, double scale, double row_y, const TimeAxis& axis) {
    const BoxStyle& style = style_of(box.kind);
    const double x = x0 + box.start * scale;
    const double width = (box.end - box.start) * scale;
    // Communication is mostly waiting for the peer: a strip along the row's bottom, so the time
    // still reads as idle grey above it while showing what the stage was blocked in.
    const bool communication = is_communication_box(box.kind);
    const double height = communication ? kCommunicationHeight : kRowHeight;
    const double y = row_y + kRowHeight - height;
    svg << "   <rect class=\"box " << style.css_class << "\" x=\"" << px(x) << "\" y=\"" << px(y)
        << "\" width=\"" << px(width) << "\" height=\"" << px(height) << "\" fill=\"" << style.fill
        << "\" stroke=\"#ffffff\" stroke-width=\"0.5\"><title>" << escape_xml(box.name) << ": start "
        << with_unit(box.start, axis) << ", duration " << with_unit(box.end - box.start, axis) << "</title></rect>\n";
    if (!communication && width >= kCharWidth * static_cast<double>(box.name.size()) + 4)
        svg << "   <text x=\"" << px(x + width / 2) << "\" y=\"" << px(row_y + kRowHeight / 2 + 4)
            << "\" font-size=\"11\" text-anchor=\"middle\" fill=\"" << style.label_fill
            << "\" pointer-events=\"none\">" << escape_xml(box.name) << "</text>\n";
}

void draw_axis(std::ostringstream& svg, double span, double scale, double axis_y, const TimeAxis& axis) {
    svg << " <g class=\"axis\">\n";
    svg << "  <line x1=\"" << px(kLeft) << "\" y1=\"" << px(axis_y) << "\" x2=\"" << px(kLeft + kPlotWidth)
        << "\" y2=\"" << px(axis_y) << "\" stroke=\"#333333\"></line>\n";
    const double step = tick_step(span, 10);
    for (int i = 0;; ++i) {
        const double t = i * step;
        if (t > span * (1 + 1e-9)) break;
        const double x = kLeft + t * scale;
        svg << "  <line x1=\"" << px(x) << "\" y1=\"" << px(axis_y) << "\" x2=\"" << px(x) << "\" y2=\""
            << px(axis_y + 5) << "\" stroke=\"#333333\"></line>\n";
        svg << "  <text x=\"" << px(x) << "\" y=\"" << px(axis_y + 18) << "\" font-size=\"11\" text-anchor=\"middle\">"
            << trimmed(t / axis.divisor) << "</text>\n";
    }
    svg << "  <text x=\"" << px(kLeft + kPlotWidth / 2) << "\" y=\"" << px(axis_y + 36)
        << "\" font-size=\"12\" text-anchor=\"middle\">" << escape_xml(axis.axis_title) << "</text>\n";
    svg << " </g>\n";
}

// The one drawing routine behind both public entry points.
std::string draw_timeline(std::vector<Row> rows, const std::string& title, const TimeAxis& axis) {
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.stage < b.stage; });
    double span = 0;
    for (const Row& row : rows) {
        span = std::max(span, row.end);
        for (const Box& box : row.boxes) span = std::max(span, box.end);
    }
    if (!(span > 0)) span = 1;  // nothing timed: still a valid picture with an axis
    const double scale = kPlotWidth / span;

    const double rows_bottom = kRowsTop + static_cast<double>(rows.size()) * (kRowHeight + kRowGap);
    const double width = kLeft + kPlotWidth + kRight;
    const double height = rows_bottom + kAxisHeight;

    std::ostringstream svg;
    svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << px(width) << "\" height=\"" << px(height)
        << "\" viewBox=\"0 0 " << px(width) << " " << px(height) << "\" font-family=\"sans-serif\">\n";
    svg << " <rect x=\"0\" y=\"0\" width=\"" << px(width) << "\" height=\"" << px(height)
        << "\" fill=\"#ffffff\"></rect>\n";
    svg << " <text x=\"" << px(kLeft) << "\" y=\"" << px(kTitleY) << "\" font-size=\"16\" font-weight=\"bold\">"
        << escape_xml(title) << "</text>\n";
    bool split_backward = false;
    for (const Row& row : rows)
        for (const Box& box : row.boxes)
            split_backward = split_backward || box.kind == BoxKind::InputBackward || box.kind == BoxKind::WeightBackward;
    draw_legend(svg, split_backward);

    for (size_t r = 0; r < rows.size(); ++r) {
        const Row& row = rows[r];
        const double row_y = kRowsTop + static_cast<double>(r) * (kRowHeight + kRowGap);
        svg << " <g class=\"stage\" id=\"stage-" << row.stage << "\">\n";
        svg << "  <text x=\"" << px(kLeft - 10) << "\" y=\"" << px(row_y + kRowHeight / 2 + 4)
            << "\" font-size=\"12\" text-anchor=\"end\">" << row.label << " " << row.stage << "</text>\n";
        svg << "  <rect class=\"idle\" x=\"" << px(kLeft) << "\" y=\"" << px(row_y) << "\" width=\""
            << px(row.end * scale) << "\" height=\"" << px(kRowHeight) << "\" fill=\"" << kIdleFill
            << "\"><title>" << row.label << " " << row.stage << ": step " << with_unit(row.end, axis) << ", bubble "
            << trimmed(100 * row.bubble) << "%</title></rect>\n";
        for (const Box& box : row.boxes)
            if (box.end > box.start) draw_box(svg, box, kLeft, scale, row_y, axis);
        char bubble[48];
        std::snprintf(bubble, sizeof bubble, "bubble %.1f%%", 100 * row.bubble);
        svg << "  <text x=\"" << px(kLeft + kPlotWidth + 10) << "\" y=\"" << px(row_y + kRowHeight / 2 + 4)
            << "\" font-size=\"12\" fill=\"#555555\">" << bubble << "</text>\n";
        svg << " </g>\n";
    }
    draw_axis(svg, span, scale, rows_bottom, axis);
    svg << "</svg>\n";
    return svg.str();
}

}  // namespace

std::string timeline_svg(const std::vector<StageTrace>& traces, const std::string& title) {
    std::vector<Row> rows;
    for (const StageTrace& trace : traces) {
        Row row;
        row.stage = trace.stage;
        row.label = trace.names_carry_stages ? "rank" : "stage";
        row.end = trace.step_us;
        row.bubble = trace.bubble_fraction();
        for (const TraceEvent& event : trace.events) {
            Box box{trace.name_of(event), classify(event.actions), event.start_us, event.end_us};
            check_box(box, trace.stage, "timeline_svg");
            row.boxes.push_back(box);
        }
        rows.push_back(std::move(row));
    }
    return draw_timeline(std::move(rows), title, TimeAxis{1000.0, "ms", "time from the step's start (ms)"});
}

void write_timeline_svg(const std::vector<StageTrace>& traces, const std::string& title, const std::string& path) {
    const std::string svg = timeline_svg(traces, title);
    std::ofstream out(path);
    MP_REQUIRE(out.good(), "write_timeline_svg: cannot open '", path, "' for writing");
    out << svg;
    out.flush();
    MP_REQUIRE(out.good(), "write_timeline_svg: writing '", path, "' failed");
}

std::string timeline_svg_from_simulation(const Schedule& schedule, const SimulationResult& result,
                                         const std::string& title) {
    MP_REQUIRE(static_cast<int>(result.timeline.size()) == schedule.ranks, "timeline_svg_from_simulation: the result has ",
               result.timeline.size(), " rank timelines, the schedule ", schedule.ranks, " ranks");
    std::vector<Row> rows;
    for (int rank = 0; rank < schedule.ranks; ++rank) {
        const std::vector<TimedAction>& timeline = result.timeline[rank];
        Row row;
        row.stage = rank;
        row.label = schedule.one_stage_per_rank() ? "stage" : "rank";
        row.end = result.step_time;
        row.bubble = rank < static_cast<int>(result.bubble_fraction.size()) ? result.bubble_fraction[rank] : 0.0;
        for (size_t i = 0; i < timeline.size();) {
            // A batched group (the actions chained by batched_with_next) is one box from the
            // group's post to its last completion, as the engine traces it.
            size_t last = i;
            if (is_communication(timeline[i].action.kind))
                while (timeline[last].action.batched_with_next && last + 1 < timeline.size()) ++last;
            std::vector<Action> actions;
            Box box{"", BoxKind::OptimizerStep, timeline[i].start, timeline[i].end};
            for (size_t j = i; j <= last; ++j) {
                actions.push_back(timeline[j].action);
                box.name += (j > i ? "+" : "") + display_name(schedule, timeline[j].action);
                box.start = std::min(box.start, timeline[j].start);
                box.end = std::max(box.end, timeline[j].end);
            }
            box.kind = classify(actions);
            check_box(box, rank, "timeline_svg_from_simulation");
            row.boxes.push_back(box);
            i = last + 1;
        }
        rows.push_back(std::move(row));
    }
    return draw_timeline(std::move(rows), title, TimeAxis{1.0, "", "simulated time (cost units)"});
}

}  // namespace mp::pipeline
