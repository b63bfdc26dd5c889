// The ranks' start-up agreement: every rank's verdict, resolved config and own flags gathered over
// MPI and judged alike on every rank (train/startup.h), so that an error on one rank, or ranks
// started differently, stops every rank at once with the same cause.
#pragma once

#include <map>
#include <string>

#include "train/config.h"

namespace mp::train {

// Collective over MPI_COMM_WORLD: every rank calls it, whether its own start failed or not.
// `local_verdict` is "" (ready), kAskedForHelp or this rank's error. Throws std::invalid_argument
// on every rank, naming the same cause, when a rank failed, when only some were given --help, or
// when the ranks' configs or `extra` flags differ; returns when every rank was given --help (each
// then prints nothing more and exits) or all are ready with the same config and flags.
void agree_on_start(const std::string& local_verdict, const TrainConfig& config, double timeout_s,
                    const std::map<std::string, std::string>& extra = {});

}  // namespace mp::train
