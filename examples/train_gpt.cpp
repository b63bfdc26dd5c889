// train_gpt: a GPT language model trained under mpirun with K pipeline stages (× data-parallel
// replicas when the world is larger), on the synthetic additions corpus, a text file or an
// llm.c uint16 token shard. Logs step, loss, tokens/s, measured bubble per stage and memory;
// writes the trace, the timeline and checkpoints; samples text at the end. Runs without mpirun
// too (one rank, one stage).
#include "examples/support/trainer_main.h"
#include "train/trainer.h"

int main(int argc, char** argv) {
    return mp::examples::trainer_main(
        argc, argv, "train_gpt",
        "Trains a GPT with pipeline parallelism under mpirun, on any schedule of the registry (pipeline.schedule).",
        "examples/configs/train_gpt.json",
        [](const mp::train::TrainConfig& config, mp::comm::Communicator& world, int gpu,
           const mp::train::TrainerCommandLine&) {
            mp::train::train(config, world, gpu);
            return 0;
        });
}
