// The measured timeline of a pipeline step: every action's start and end on every rank,
// gathered to rank 0 (pipeline/gather.h) and written as Chrome trace JSON ({"traceEvents": [{"name", "ph": "X",
// "ts", "dur", "pid", "tid"}]}, microseconds), which opens in Perfetto / chrome://tracing.
// Bubble fraction of a stage = 1 − (time in forward and backward) / step time.
#pragma once

#include <string>
#include <vector>


namespace mp::pipeline {

struct TraceEvent {
    std::string name;      // "F3", "B0", "SendAct2+RecvGrad0", "Step"
    int stage = 0;
    double start_us = 0;   // from the step's start on this rank
    double end_us = 0;
    bool compute = false;  // forward or backward (counts as busy time)
};

struct StageTrace {
    int stage = 0;
    double step_us = 0;
    std::vector<TraceEvent> events;
    double busy_us() const;
    double bubble_fraction() const;
};


// Chrome trace JSON for the given stages (one pid per stage).
std::string chrome_trace_json(const std::vector<StageTrace>& traces);
// Writes it to `path` (throws naming the path on failure).
void write_chrome_trace(const std::vector<StageTrace>& traces, const std::string& path);

}  // namespace mp::pipeline
