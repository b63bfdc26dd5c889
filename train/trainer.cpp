// train(): a run as named steps — device and precision, the set-up (train/run.h), the start-up
// report, the resume, the step loop (train/step_loop.h) and the finish.
#include "train/trainer.h"

#include <utility>

#include "train/build.h"
#include "train/checkpointing.h"
#include "train/finish.h"
#include "train/report.h"
#include "train/run.h"
#include "train/step_loop.h"

namespace mp::train {

TrainResult train(const TrainConfig& config, comm::Communicator& world, int gpu, bool verbose) {
    const Device device = choose_device(config, gpu);
    const PrecisionScope precision(config.precision);  // for the whole run on this thread
    Run run(config, world, device, verbose);
    report_start(run);
    const int64_t start_step = config.checkpoint.resume ? resume_from_checkpoint(run) : 0;
    const LoopOutcome outcome = run_steps(run, start_step);
    finish_run(run, outcome);
    return std::move(run.result);
}

}  // namespace mp::train
