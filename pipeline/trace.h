// The measured timeline of a pipeline step: every action's start and end on every rank, recorded
// as typed actions ({kind, stage, micro_batch}), gathered to rank 0 (pipeline/gather.h) and written
// as Chrome trace JSON ({"traceEvents": [{"name", "ph": "X", "ts", "dur", "pid", "tid"}]},
// microseconds), which opens in Perfetto / chrome://tracing. Names are derived from the actions.
// Bubble fraction of a rank = 1 − (time in compute actions) / step time.
#pragma once

#include <string>
#include <vector>

#include "pipeline/schedule.h"

namespace mp::pipeline {

struct TraceEvent {
    // One compute action or optimizer step, or the operations of one batched communication group.
    std::vector<Action> actions;
    double start_us = 0;  // from the step's start on this rank
    double end_us = 0;

    // A compute action (counts as busy time).
    bool compute() const;
    // "F3", "B0", "SendAct2+RecvGrad0", "Step"; with `with_stages`, "1F3", "1SendAct2+1RecvGrad0".
    std::string name(bool with_stages) const;
};

// One rank's events. `stage` is the rank's index in the pipeline group (where a rank holds one
// stage, that stage); `names_carry_stages` is set where a rank holds several stages.
struct StageTrace {
    int stage = 0;
    bool names_carry_stages = false;
    double step_us = 0;
    std::vector<TraceEvent> events;
    double busy_us() const;
    double bubble_fraction() const;
    std::string name_of(const TraceEvent& event) const { return event.name(names_carry_stages); }
};

// Chrome trace JSON for the given ranks (one pid per rank).
std::string chrome_trace_json(const std::vector<StageTrace>& traces);
// Writes it to `path` (throws naming the path on failure).
void write_chrome_trace(const std::vector<StageTrace>& traces, const std::string& path);

}  // namespace mp::pipeline
