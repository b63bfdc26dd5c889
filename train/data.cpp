// The training data: generated from the seed (additions, the mlp's teacher) or read from files,
// checked against the model's sizes before any model is built, and cut into global batches.
#include "train/data.h"

#include <cmath>

#include "tensor/ops/gemm.h"

namespace mp::train {

nn::Batch DataSource::batch(const TrainConfig& config, int64_t step) const {
    Generator gen(static_cast<uint64_t>(config.seed) + 1);
    gen.advance(static_cast<uint64_t>(step) * static_cast<uint64_t>(config.train_batch_size) * 2);
    if (config.model.kind == ModelKind::Mlp) {
        int64_t width = config.model.widths.front();
        Tensor inputs = Tensor::randn({config.train_batch_size, width}, gen);
        return {inputs, ops::matmul(inputs, teacher)};
    }
    return nn::sample_batch(tokens, config.train_batch_size, time, gen, Device::cpu());
}

namespace {

// Every evaluation reads eval.batches whole global batches from the start of the validation file.
void check_validation(const TrainConfig& config, const nn::TokenDataset& validation) {
    MP_REQUIRE(validation.vocab <= config.model.vocab, "model.vocab is ", config.model.vocab,
               " but the validation data (", validation.description, ") needs ", validation.vocab);
    const int64_t available = nn::eval_batches_available(validation, config.train_batch_size, config.model.context);
    MP_REQUIRE(available >= config.eval.batches, "eval.batches is ", config.eval.batches, " but data.val_path '",
               config.data.val_path, "' holds ", validation.tokens.size(), " tokens: ", available,
               " batches of train_batch_size ", config.train_batch_size, " × model.context ", config.model.context,
               " (", config.eval.batches, " need ",
               config.eval.batches * config.train_batch_size * config.model.context + 1,
               " tokens); lower eval.batches or give more validation data");
}

}  // namespace

DataSource make_data(const TrainConfig& config) {
    DataSource data;
    if (config.model.kind == ModelKind::Mlp) {
        Generator gen(static_cast<uint64_t>(config.seed) + 2);
        int64_t in = config.model.widths.front(), out = config.model.widths.back();
        data.teacher = Tensor::randn({in, out}, gen, 0.0, 1.0 / std::sqrt(static_cast<double>(in)));
        return data;
    }
    auto load = [&](const std::string& path) {
        return config.data.kind == DataKind::Text ? nn::load_text_file(path)
                                                  : nn::load_token_shard(path, config.model.vocab);
    };
    if (config.data.kind == DataKind::Synthetic)
        data.tokens =
            nn::synthetic_additions(20000, static_cast<int>(config.data.digits), static_cast<uint64_t>(config.seed));
    else
        data.tokens = load(config.data.path);
    MP_REQUIRE(data.tokens.vocab <= config.model.vocab, "model.vocab is ", config.model.vocab, " but the data (",
               data.tokens.description, ") needs ", data.tokens.vocab);
    if (!config.data.vocab_path.empty())
        nn::use_vocabulary(data.tokens, nn::load_token_vocabulary(config.data.vocab_path));
    if (!config.data.val_path.empty()) {
        data.validation = load(config.data.val_path);
        check_validation(config, data.validation);
    }
    // Checked here, before any model is built: a sequence and its next-token targets need context + 1 tokens.
    MP_REQUIRE(static_cast<int64_t>(data.tokens.tokens.size()) > config.model.context, "model.context is ",
               config.model.context, " but the data (", data.tokens.description, ") holds ", data.tokens.tokens.size(),
               " tokens; a sequence needs context + 1");
    data.time = config.model.context;
    return data;
}

}  // namespace mp::train
