// The pipeline timeline as a picture: one SVG row per stage, one box per action, coloured by
// kind, idle time showing through as the grey row behind the boxes. The same drawing code takes
// the measured trace (written beside the Perfetto JSON) or the simulator's predicted timeline.
#pragma once

#include <string>
#include <vector>

#include "pipeline/schedule.h"
#include "pipeline/simulate.h"
#include "pipeline/trace.h"

namespace mp::pipeline {

// Colours (the legend at the top of every picture says the same):
//   forward        #4e79a7 blue      (label "F3" inside when the box is wide enough)
//   backward       #59a14f green     (label "B3")
//   input backward #76b7b2 teal      (label "I3"; in the legend only when a picture has I or W)
//   weight backward #9c755f brown    (label "W3")
//   send           #f28e2b orange    (a group of sends only)
//   recv           #edc948 yellow    (a group of receives only: mostly waiting for the peer)
//   send+recv      #b07aa1 purple    (a batched group holding both, e.g. "SendAct2+RecvGrad0":
//                                      one box, not split, since the group completes as a whole
//                                      and its parts have no separate measured times)
//   optimizer step #e15759 red       (label "Step")
//   idle           #e6e6e6 light grey (the row's background from 0 to the stage's step end)
// Boxes are classified by their typed actions, names derived from them ("1F3" where a rank holds
// several stages). Compute and step boxes fill the row's height; communication boxes are a strip
// along its bottom (a third of the height): a long receive is the stage waiting, so it should
// still read as idle grey, with the strip saying what the stage was blocked in. Every box carries
// a <title> tooltip "name: start …, duration …". Actions of zero duration are not drawn. Each row ends with the stage's bubble fraction.

// Measured traces (times in µs; the axis is in ms). `traces` in any order; rows in stage order.
std::string timeline_svg(const std::vector<StageTrace>& traces, const std::string& title);
// Writes timeline_svg(...) to `path`; throws std::invalid_argument naming the path on failure.
void write_timeline_svg(const std::vector<StageTrace>& traces, const std::string& title, const std::string& path);

// The simulator's predicted timeline for `schedule` (times in the units of the Costs it was
// given). Batched communication actions become one box, named like the engine names its trace
// events ("SendAct2+RecvGrad0"). Throws std::invalid_argument if `result` does not have one
// timeline per stage of `schedule`.
std::string timeline_svg_from_simulation(const Schedule& schedule, const SimulationResult& result,
                                         const std::string& title);

}  // namespace mp::pipeline
