// train_gpt: trains a small GPT language model in one process and prints step, loss and
// tokens/s, then samples a few continuations. Data, in order of preference: --text FILE
// (byte-level), --shard FILE (llm.c uint16 token shard), or the synthetic additions corpus.
// (The pipeline-parallel version under mpirun arrives with the pipeline issue.)
#include <chrono>
#include <cmath>
#include <cstdio>

#include "autograd/functions.h"
#include "autograd/tape.h"
#include "examples/support/flags.h"
#include "nn/data.h"
#include "nn/models.h"
#include "nn/optim.h"
#include "tensor/device_context.h"

using namespace mp;

namespace {

// Samples `count` tokens after `prompt` (temperature sampling from the last position's logits).
std::vector<int32_t> sample(nn::Sequential& model, std::vector<int32_t> context, int64_t count, int64_t window,
                            double temperature, Generator& gen, Device device) {
    autograd::NoGradScope no_grad;
    std::vector<int32_t> generated;
    for (int64_t i = 0; i < count; ++i) {
        int64_t start = std::max<int64_t>(0, static_cast<int64_t>(context.size()) - window);
        std::vector<int32_t> input(context.begin() + start, context.end());
        int64_t time = static_cast<int64_t>(input.size());
        Tensor logits = model.forward(Tensor::from_vector(input, {1, time}, device));
        std::vector<float> all = logits.to_vector<float>();
        int64_t vocab = logits.size(-1);
        const float* last = all.data() + (time - 1) * vocab;
        double max_logit = *std::max_element(last, last + vocab);
        std::vector<double> weights(vocab);
        double total = 0;
        for (int64_t v = 0; v < vocab; ++v) total += weights[v] = std::exp((last[v] - max_logit) / temperature);
        double u = Tensor::uniform({1}, gen, 0.0, total, DType::Float64).item();
        int32_t next = static_cast<int32_t>(vocab - 1);
        for (int64_t v = 0; v < vocab; ++v) {
            if (u < weights[v]) {
                next = static_cast<int32_t>(v);
                break;
            }
            u -= weights[v];
        }
        context.push_back(next);
        generated.push_back(next);
    }
    return generated;
}

int run(int argc, char** argv) {
    examples::Flags flags("train_gpt", "Trains a small GPT in one process (CPU or one GPU) and samples from it.",
                          {{"text", "", "train on this text file, byte-level"},
                           {"shard", "", "train on this llm.c uint16 token shard"},
                           {"device", "auto", "cpu, cuda, or auto (cuda when a GPU is visible)"},
                           {"steps", "600", "optimizer steps"},
                           {"batch", "16", "sequences per step"},
                           {"time", "32", "tokens per sequence"},
                           {"layers", "2", "transformer blocks"},
                           {"heads", "4", "attention heads"},
                           {"channels", "64", "model width"},
                           {"lr", "3e-3", "peak learning rate (cosine schedule, 5% warm-up)"},
                           {"weight_decay", "0.01", "AdamW weight decay"},
                           {"clip", "1.0", "clip the global gradient norm to this"},
                           {"seed", "1337", "seed for data, initialisation and sampling"},
                           {"log_every", "25", "print a line every this many steps"},
                           {"samples", "3", "continuations to sample at the end"}});
    if (!flags.parse(argc, argv)) return 0;

    std::string device_name = flags.str("device");
    Device device = device_name == "cpu" ? Device::cpu()
                    : device_name == "cuda" ? Device::cuda(0)
                    : device_name == "auto" ? (cuda_available() ? Device::cuda(0) : Device::cpu())
                    : throw std::invalid_argument("train_gpt: --device must be cpu, cuda or auto, got '" + device_name + "'");
    uint64_t seed = static_cast<uint64_t>(flags.integer("seed"));
    nn::TokenDataset data = !flags.str("text").empty()    ? nn::load_text_file(flags.str("text"))
                            : !flags.str("shard").empty() ? nn::load_token_shard(flags.str("shard"))
                                                          : nn::synthetic_additions(20000, 3, seed);
    nn::GPTConfig config;
    config.vocab = data.vocab;
    config.context = flags.integer("time");
    config.layers = flags.integer("layers");
    config.heads = flags.integer("heads");
    config.channels = flags.integer("channels");
    config.seed = seed;
    auto model = nn::gpt(config);
    model->to(device);
    int64_t steps = flags.integer("steps"), batch = flags.integer("batch"), time = flags.integer("time");
    double max_lr = flags.real("lr");
    nn::AdamW optimizer(model->parameters(), {max_lr, 0.9, 0.95, 1e-8, flags.real("weight_decay")});
    std::printf("train_gpt: %s on %s\n", data.description.c_str(), device.str().c_str());
    std::printf("model: %lld layers, %lld heads, %lld channels, context %lld: %lld parameters\n",
                (long long)config.layers, (long long)config.heads, (long long)config.channels, (long long)config.context,
                (long long)model->num_parameters());
    std::printf("uniform-guess loss ln(%lld) = %.3f\n", (long long)data.vocab, std::log(static_cast<double>(data.vocab)));

    Generator data_gen(seed + 1);
    auto start = std::chrono::steady_clock::now();
    auto window_start = start;
    int64_t tokens_in_window = 0;
    double loss_value = 0;
    for (int64_t step = 0; step < steps; ++step) {
        optimizer.set_lr(nn::cosine_lr(step, std::max<int64_t>(1, steps / 20), steps, max_lr, max_lr / 10));
        nn::Batch b = nn::sample_batch(data, batch, time, data_gen, device);
        optimizer.zero_grad();
        autograd::Tape tape;
        {
            autograd::TapeScope scope(tape);
            Tensor loss = fn::cross_entropy(model->forward(b.ids), b.targets);
            tape.backward(loss);
            loss_value = loss.item();
        }
        double norm = nn::clip_grad_norm(model->parameters(), flags.real("clip"));
        optimizer.step();
        tokens_in_window += batch * time;
        if (step % flags.integer("log_every") == 0 || step + 1 == steps) {
            synchronize(device);
            auto now = std::chrono::steady_clock::now();
            double seconds = std::chrono::duration<double>(now - window_start).count();
            std::printf("step %5lld | loss %.4f | lr %.2e | grad norm %.3f | %.0f tokens/s | %.1f s\n", (long long)step,
                        loss_value, optimizer.lr(), norm, tokens_in_window / seconds,
                        std::chrono::duration<double>(now - start).count());
            std::fflush(stdout);
            window_start = now;
            tokens_in_window = 0;
        }
    }
    std::printf("final loss %.4f after %lld steps (uniform guess %.3f), %.1f s\n", loss_value, (long long)steps,
                std::log(static_cast<double>(data.vocab)),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());

    Generator sample_gen(seed + 2);
    model->eval();
    for (int64_t s = 0; s < flags.integer("samples"); ++s) {
        nn::Batch prompt = nn::sample_batch(data, 1, std::min<int64_t>(8, time), sample_gen, Device::cpu());
        std::vector<int32_t> context = prompt.ids.to_vector<int32_t>();
        std::vector<int32_t> continuation = sample(*model, context, 24, time, 0.8, sample_gen, device);
        std::printf("sample %lld: [%s] -> [%s]\n", (long long)s, data.decode(context).c_str(),
                    data.decode(continuation).c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "train_gpt: error: %s\n", e.what());
        return 1;
    }
}
