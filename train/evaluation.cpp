// Validation loss through the pipeline engine, held-out sums answered by the gathered model, and
// greedy samples: the trainer's measurements other than the training loss.
#include "train/evaluation.h"

#include <algorithm>
#include <chrono>

#include "autograd/tape.h"
#include "base/format.h"
#include "pipeline/gather.h"
#include "tensor/ops/elementwise.h"

namespace mp::train {

void evaluate_validation(Run& run, int64_t trained) {
    const TrainConfig& config = run.config;
    const auto begin = std::chrono::steady_clock::now();
    double loss_sum = 0;
    for (int64_t b = 0; b < config.eval.batches; ++b) {
        const nn::Batch batch =
            nn::eval_batch(run.data.validation, b, config.train_batch_size, run.data.time, Device::cpu());
        try {
            loss_sum += run.engine->evaluate(run.place.shard_of(batch.ids), run.place.shard_of(batch.targets));
        } catch (const std::exception& e) {
            throw std::runtime_error(str("evaluation after step ", trained, ": ", e.what()));
        }
    }
    const double loss = loss_sum / static_cast<double>(config.eval.batches);
    const double seconds = seconds_since(begin);
    run.result.summary.val_losses.emplace_back(trained, loss);
    run.log.line("val   %5lld | val loss %.4f | %lld batches of %lld x %lld tokens | %7.1f ms", (long long)trained,
                 loss, (long long)config.eval.batches, (long long)config.train_batch_size, (long long)run.data.time,
                 1000 * seconds);
}

std::vector<std::string> score_held_out(Run& run, int64_t trained) {
    const auto begin = std::chrono::steady_clock::now();
    std::shared_ptr<nn::Sequential> whole_now;
    if (run.place.replica == 0)
        whole_now = pipeline::gather_model(*run.place.pipeline, run.spec, run.stages.ranges, run.schedule.placement,
                                           run.stages.modules);
    std::vector<std::string> answers;
    std::vector<int32_t> counts(2, 0);
    if (run.world.rank() == 0) {
        answers = nn::answer_additions(*whole_now, run.data.tokens, run.held_out, run.config.model.context);
        const nn::ExactMatch match = nn::score_additions(run.held_out, answers);
        counts = {static_cast<int32_t>(match.correct), static_cast<int32_t>(match.total)};
    }
    Tensor shared = Tensor::from_vector(counts, {2}, comm::staging_device(run.world, run.device));
    run.world.broadcast(shared, 0);  // every rank's summary holds the same figures
    counts = shared.to_vector<int32_t>();
    const HeldOutAccuracy accuracy{trained, counts[0], counts[1]};
    run.result.summary.accuracies.push_back(accuracy);
    run.log.line("        held-out sums: %lld of %lld exact (%.1f%%) | %7.1f ms", (long long)accuracy.correct,
                 (long long)accuracy.total, 100 * accuracy.accuracy(), 1000 * seconds_since(begin));
    return answers;
}

std::string sample_text(nn::Sequential& model, const nn::TokenDataset& data, int64_t window, uint64_t seed) {
    autograd::NoGradScope no_grad;
    model.eval();  // no dropout while sampling
    struct BackToTraining {
        nn::Sequential& model;
        ~BackToTraining() { model.train(); }
    } back_to_training{model};
    Generator gen(seed);
    nn::Batch prompt = nn::sample_batch(data, 1, std::min<int64_t>(8, window), gen, Device::cpu());
    std::vector<int32_t> context = prompt.ids.to_vector<int32_t>();
    std::string prompt_text = data.decode(context);
    std::vector<int32_t> generated;
    for (int i = 0; i < 24; ++i) {
        int64_t start = std::max<int64_t>(0, static_cast<int64_t>(context.size()) - window);
        std::vector<int32_t> input(context.begin() + start, context.end());
        Tensor logits = model.forward(Tensor::from_vector(input, {1, static_cast<int64_t>(input.size())}));
        int64_t vocab = logits.size(-1);
        // Under mixed precision the logits are bfloat16: read them as float32 (exact).
        std::vector<float> all = logits.dtype() == DType::Float32
                                     ? logits.to_vector<float>()
                                     : ops::cast(logits, DType::Float32).to_vector<float>();
        const float* last = all.data() + (input.size() - 1) * vocab;
        // Greedy over the data's vocabulary (the model's may be larger).
        int32_t next = 0;
        for (int32_t v = 1; v < data.vocab; ++v)
            if (last[v] > last[next]) next = v;
        context.push_back(next);
        generated.push_back(next);
    }
    auto printable = [](std::string s) {
        for (char& c : s)
            if (c == '\n') c = '|';
        return s;
    };
    return "[" + printable(prompt_text) + "] -> [" + printable(data.decode(generated)) + "]";
}

}  // namespace mp::train
