// Trace bookkeeping, the gather to rank 0 (each rank's events serialised as text lines and
// moved as int32 tensors), and the Chrome trace writer.
#include "pipeline/trace.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace mp::pipeline {

double StageTrace::busy_us() const {
    double busy = 0;
    for (const TraceEvent& e : events)
        if (e.compute) busy += e.end_us - e.start_us;
    return busy;
}

double StageTrace::bubble_fraction() const { return step_us > 0 ? 1.0 - busy_us() / step_us : 0.0; }

namespace {

std::string serialise(const StageTrace& trace) {
    std::ostringstream out;
    out.precision(17);
    out << trace.stage << " " << trace.step_us << "\n";
    for (const TraceEvent& e : trace.events)
        out << e.name << " " << e.stage << " " << e.start_us << " " << e.end_us << " " << (e.compute ? 1 : 0) << "\n";
    return out.str();
}

StageTrace deserialise(const std::string& text) {
    std::istringstream in(text);
    StageTrace trace;
    in >> trace.stage >> trace.step_us;
    TraceEvent e;
    int compute = 0;
    while (in >> e.name >> e.stage >> e.start_us >> e.end_us >> compute) {
        e.compute = compute != 0;
        trace.events.push_back(e);
    }
    return trace;
}

constexpr int kTraceTag = 7;

}  // namespace

std::vector<StageTrace> gather_traces(comm::Communicator& comm, const StageTrace& mine) {
    if (comm.rank() != 0) {
        std::string text = serialise(mine);
        std::vector<int32_t> bytes(text.begin(), text.end());
        comm.send(Tensor::from_vector<int32_t>({static_cast<int32_t>(bytes.size())}, {1}), 0, kTraceTag);
        comm.send(Tensor::from_vector(bytes, {static_cast<int64_t>(bytes.size())}), 0, kTraceTag);
        return {mine};
    }
    std::vector<StageTrace> all = {mine};
    for (int peer = 1; peer < comm.size(); ++peer) {
        Tensor length = Tensor::zeros({1}, DType::Int32);
        comm.recv(length, peer, kTraceTag);
        Tensor bytes = Tensor::zeros({static_cast<int64_t>(length.item())}, DType::Int32);
        comm.recv(bytes, peer, kTraceTag);
        std::vector<int32_t> values = bytes.to_vector<int32_t>();
        all.push_back(deserialise(std::string(values.begin(), values.end())));
    }
    return all;
}

std::string chrome_trace_json(const std::vector<StageTrace>& traces) {
    std::ostringstream out;
    out.precision(6);
    out << std::fixed << "{\"traceEvents\": [\n";
    bool first = true;
    for (const StageTrace& trace : traces) {
        out << (first ? "" : ",\n") << "  {\"name\": \"process_name\", \"ph\": \"M\", \"pid\": " << trace.stage
            << ", \"args\": {\"name\": \"stage " << trace.stage << "\"}}";
        first = false;
        for (const TraceEvent& e : trace.events)
            out << ",\n  {\"name\": \"" << e.name << "\", \"cat\": \"" << (e.compute ? "compute" : "comm")
                << "\", \"ph\": \"X\", \"ts\": " << e.start_us << ", \"dur\": " << (e.end_us - e.start_us)
                << ", \"pid\": " << e.stage << ", \"tid\": 0}";
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
