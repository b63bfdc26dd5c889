// pipeline_mlp: the classic pipeline demo — an MLP of Linear+ReLU layers split into K stages, one
// per rank, learning a linear teacher (MSE). Activations flow forward and gradients back; the
// schedule is drawn as text, and at the end every stage's last step is printed action by action.
#include <cstdio>

#include "examples/support/trainer_main.h"
#include "train/trainer.h"

int main(int argc, char** argv) {
    return mp::examples::trainer_main(
        argc, argv, "pipeline_mlp", "An MLP split into pipeline stages, one per rank: the classic demo.",
        "examples/configs/pipeline_mlp.json",
        [](const mp::train::TrainConfig& config, mp::comm::Communicator& world, int gpu,
           const mp::train::TrainerCommandLine&) {
            mp::train::TrainResult result = mp::train::train(config, world, gpu);
            if (world.rank() == 0) {
                std::printf("the last step, stage by stage (action: start-end in ms):\n");
                for (const mp::pipeline::StageTrace& trace : result.last_traces) {
                    std::printf("  stage %d |", trace.stage);
                    for (const mp::pipeline::TraceEvent& e : trace.events)
                        std::printf(" %s %.2f-%.2f", trace.name_of(e).c_str(), e.start_us / 1000, e.end_us / 1000);
                    std::printf("\n    bubble %.0f%% of %.2f ms\n", 100 * trace.bubble_fraction(),
                                trace.step_us / 1000);
                }
            }
            return 0;
        });
}
