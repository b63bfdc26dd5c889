// agree_on_start: three gathers over MPI_COMM_WORLD (verdicts, configs, flags), each judged by
// train/startup.h on every rank; the configs and flags only once every rank is ready.
#include "train/start_agreement.h"

#include <vector>

#include "comm/agreement.h"
#include "train/startup.h"

namespace mp::train {

void agree_on_start(const std::string& local_verdict, const TrainConfig& config, double timeout_s,
                    const std::map<std::string, std::string>& extra) {
    const std::vector<std::string> verdicts =
        comm::gather_texts(local_verdict, "the start-up check of every rank", timeout_s);
    if (judge_start_verdicts(verdicts, local_verdict)) return;  // --help on every rank: nothing to compare
    require_same_configs(
        comm::gather_texts(to_json(config).dump(), "the configuration check of every rank", timeout_s));
    require_same_arguments(
        comm::gather_texts(extra_flags_text(extra), "the command-line check of every rank", timeout_s));
}

}  // namespace mp::train
