// Trace bookkeeping, the names derived from typed actions, and the Chrome trace writer.
#include "pipeline/trace.h"

#include "base/error.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace mp::pipeline {

bool TraceEvent::compute() const { return actions.size() == 1 && is_compute(actions.front().kind); }

std::string TraceEvent::name(bool with_stages) const {
    std::string joined;
    for (const Action& action : actions)
        joined += (joined.empty() ? "" : "+") + (with_stages ? to_string(action) : short_name(action));
    return joined;
}

double StageTrace::busy_us() const {
    double busy = 0;
    for (const TraceEvent& e : events)
        if (e.compute()) busy += e.end_us - e.start_us;
    return busy;
}

double StageTrace::bubble_fraction() const { return step_us > 0 ? 1.0 - busy_us() / step_us : 0.0; }

std::string chrome_trace_json(const std::vector<StageTrace>& traces) {
    std::ostringstream out;
    out.precision(6);
    out << std::fixed << "{\"traceEvents\": [\n";
    bool first = true;
    for (const StageTrace& trace : traces) {
        out << (first ? "" : ",\n") << "  {\"name\": \"process_name\", \"ph\": \"M\", \"pid\": " << trace.stage
            << ", \"args\": {\"name\": \"" << (trace.names_carry_stages ? "rank " : "stage ") << trace.stage << "\"}}";
        first = false;
        for (const TraceEvent& e : trace.events)
            out << ",\n  {\"name\": \"" << trace.name_of(e) << "\", \"cat\": \"" << (e.compute() ? "compute" : "comm")
                << "\", \"ph\": \"X\", \"ts\": " << e.start_us << ", \"dur\": " << (e.end_us - e.start_us)
                << ", \"pid\": " << trace.stage << ", \"tid\": 0}";
    }
    out << "\n]}\n";
    return out.str();
}

void write_chrome_trace(const std::vector<StageTrace>& traces, const std::string& path) {
    std::ofstream out(path);
    MP_REQUIRE(out.good(), "write_chrome_trace: cannot open '", path, "' for writing");
    out << chrome_trace_json(traces);
    MP_REQUIRE(out.good(), "write_chrome_trace: writing '", path, "' failed");
}

}  // namespace mp::pipeline
