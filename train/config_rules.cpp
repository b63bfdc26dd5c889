// The cross-key rules of a training config, in the order they are checked (batch, model, stages,
// learning rate, data, checkpoints), and model.init_from's sizes taken from its config.json.
#include "train/config_rules.h"

#include "base/format.h"
#include "nn/hf_gpt2.h"
#include "nn/models.h"
#include "pipeline/schedule.h"
#include "train/build.h"

namespace mp::train {

namespace {

// "[2,3,1]": a list key's value as the file writes it.
std::string list_text(const std::vector<int64_t>& values) { return "[" + join_ints(values) + "]"; }

// a × b, refused (naming `what` and both numbers) when it does not fit in 64 bits: user numbers
// must never wrap around into a product that happens to pass a later check.
int64_t checked_product(int64_t a, int64_t b, const std::string& what) {
    int64_t product = 0;
    MP_REQUIRE(!__builtin_mul_overflow(a, b, &product), what, ": ", a, " × ", b, " does not fit in 64 bits");
    return product;
}

// train_batch_size = micro_batch_size × micro_batches × data-parallel size (0: resolved to it).
void check_batch(TrainConfig& config, int world_size) {
    int data_parallel = data_parallel_size(config, world_size);
    const std::string identity = "micro_batch_size × micro_batches × data-parallel size";
    int64_t per_step = checked_product(checked_product(config.micro_batch_size, config.micro_batches, identity),
                                       data_parallel, identity);
    if (config.train_batch_size == 0) config.train_batch_size = per_step;
    MP_REQUIRE(config.train_batch_size == per_step, "train_batch_size ", config.train_batch_size,
               " != micro_batch_size ", config.micro_batch_size, " × micro_batches ", config.micro_batches,
               " × data-parallel size ", data_parallel, " (= ", per_step, "; data-parallel size = world size ",
               world_size, " / pipeline.stages ", config.pipeline.stages, ")");
}

void check_model(const TrainConfig& config) {
    const TrainConfig::Model& model = config.model;
    if (model.kind == ModelKind::Gpt)
        MP_REQUIRE(model.channels % model.heads == 0, "model.channels ", model.channels,
                   " is not divisible by model.heads ", model.heads);
    MP_REQUIRE(config.precision != Precision::Bf16 || model.kind != ModelKind::Mlp, "precision bf16 needs a model "
               "whose input is token ids (gpt, realistic): the mlp takes float32 inputs and an MSE loss; use "
               "precision fp32 or tf32");
    if (!config.exports.hf.empty())
        MP_REQUIRE(model.kind == ModelKind::Gpt && model.tie_embeddings, "export.hf writes a GPT-2, whose head is "
                   "tied to its token embedding: it needs model.kind gpt (is \"", name_of(model.kind),
                   "\") and model.tie_embeddings true (is ", model.tie_embeddings ? "true" : "false", ")");
    if (model.kind == ModelKind::Mlp)
        MP_REQUIRE(model.widths.size() >= 2, "model.widths ", list_text(model.widths),
                   " needs at least two widths (input and output)");
}

// Enough layers for the stages, the balance list, and the schedule's own rule on its sizes.
void check_stages(TrainConfig& config) {
    TrainConfig::Pipeline& pipeline = config.pipeline;
    const char* kind = name_of(config.model.kind);
    if (pipeline.virtual_stages == 0)
        pipeline.virtual_stages = pipeline::schedule_info(pipeline.schedule).default_virtual_stages;
    const int64_t layers = model_layer_count(config);
    const int64_t all_stages = checked_product(pipeline.stages, pipeline.virtual_stages,
                                               "pipeline.stages × pipeline.virtual_stages");
    if (pipeline.virtual_stages == 1)
        MP_REQUIRE(pipeline.stages <= layers, "pipeline.stages ", pipeline.stages, " exceeds the ", layers,
                   " layers of the ", kind, " model (each stage needs at least one)");
    else
        MP_REQUIRE(all_stages <= layers, "pipeline.stages ", pipeline.stages, " × pipeline.virtual_stages ",
                   pipeline.virtual_stages, " = ", all_stages, " stages exceed the ", layers, " layers of the ",
                   kind, " model (each stage needs at least one)");

    const std::vector<int64_t>& balance = pipeline.balance;
    if (pipeline.partition == pipeline::PartitionMethod::Balance) {
        MP_REQUIRE(static_cast<int64_t>(balance.size()) == all_stages, "pipeline.balance ", list_text(balance),
                   " has ", balance.size(), " entries but pipeline.stages is ", pipeline.stages,
                   pipeline.virtual_stages == 1 ? std::string()
                                                : str(" × pipeline.virtual_stages ", pipeline.virtual_stages, " = ",
                                                      all_stages, " stages"));
        int64_t sum = 0;
        for (int64_t stage_layers : balance)
            MP_REQUIRE(!__builtin_add_overflow(sum, stage_layers, &sum), "pipeline.balance ", list_text(balance),
                       ": the sum does not fit in 64 bits");
        MP_REQUIRE(sum == layers, "pipeline.balance ", list_text(balance), " sums to ", sum, " but the ", kind,
                   " model has ", layers, " layers");
    } else {
        MP_REQUIRE(balance.empty(), "pipeline.balance ", list_text(balance), " is set but pipeline.partition is \"",
                   name_of(pipeline.partition), "\" (use partition = balance, or drop the list)");
    }

    const std::string broken = pipeline::schedule_info(pipeline.schedule)
                                   .rule(static_cast<int>(pipeline.stages), static_cast<int>(config.micro_batches),
                                         static_cast<int>(pipeline.virtual_stages));
    MP_REQUIRE(broken.empty(), "pipeline.schedule \"", pipeline.schedule, "\" with pipeline.stages ", pipeline.stages,
               ", pipeline.virtual_stages ", pipeline.virtual_stages, " and micro_batches ", config.micro_batches, ": ",
               broken);
}

// Which data goes with which model, and what validation, accuracy and decoding need.
void check_data(const TrainConfig& config) {
    const TrainConfig::Data& data = config.data;
    const ModelKind model = config.model.kind;
    const bool from_file = data.kind == DataKind::Text || data.kind == DataKind::Shard;
    MP_REQUIRE(model != ModelKind::Mlp || data.kind == DataKind::Synthetic, "data.kind is \"", name_of(data.kind),
               "\" but model.kind mlp trains on its own synthetic regression task (a random teacher); use "
               "data.kind = synthetic");
    if (from_file)
        MP_REQUIRE(!data.path.empty(), "data.path is required when data.kind is \"", name_of(data.kind), "\"");
    if (!data.val_path.empty())
        MP_REQUIRE(from_file, "data.val_path '", data.val_path, "' is read like data.path, so it needs data.kind text "
                   "or shard (is \"", name_of(data.kind), "\")");
    if (config.eval.every > 0)
        MP_REQUIRE(!data.val_path.empty(), "eval.every is ", config.eval.every,
                   " but there is no validation data: set data.val_path, or eval.every = 0");
    if (config.eval.accuracy > 0)
        MP_REQUIRE(data.kind == DataKind::Synthetic && model == ModelKind::Gpt, "eval.accuracy is ",
                   config.eval.accuracy, " but held-out sums exist for the synthetic additions only (data.kind is \"",
                   name_of(data.kind), "\", model.kind \"", name_of(model), "\"): use data.kind = synthetic with a "
                   "gpt, or eval.accuracy = 0");
    if (!data.vocab_path.empty())
        MP_REQUIRE(data.kind == DataKind::Shard, "data.vocab_path '", data.vocab_path,
                   "' decodes token shards, but data.kind is \"", name_of(data.kind), "\" (use data.kind = shard)");
}

}  // namespace

int data_parallel_size(const TrainConfig& config, int world_size) {
    MP_REQUIRE(world_size >= 1, "config: world size must be >= 1, got ", world_size);
    MP_REQUIRE(config.pipeline.stages >= 1, "pipeline.stages must be > 0, got ", config.pipeline.stages);
    MP_REQUIRE(world_size % config.pipeline.stages == 0, "world size ", world_size,
               " is not divisible by pipeline.stages ", config.pipeline.stages);
    return static_cast<int>(world_size / config.pipeline.stages);
}

void check_cross_key_rules(TrainConfig& config, int world_size) {
    check_batch(config, world_size);
    check_model(config);
    check_stages(config);
    MP_REQUIRE(config.lr_schedule.min_lr <= config.optimizer.lr, "lr_schedule.min_lr ", config.lr_schedule.min_lr,
               " exceeds optimizer.lr ", config.optimizer.lr);
    check_data(config);
    if (config.checkpoint.every > 0 || config.checkpoint.resume)
        MP_REQUIRE(!config.checkpoint.dir.empty(), "checkpoint.dir is required when checkpoint.every is ",
                   config.checkpoint.every, " and checkpoint.resume is ", config.checkpoint.resume ? "true" : "false");
}

std::string cross_key_rules_help() {
    return str("Rules: train_batch_size = micro_batch_size × micro_batches × data-parallel size, where\n"
               "data-parallel size = world size / pipeline.stages; with partition = balance, the balance\n"
               "list has one entry per stage and sums to the model's layers (gpt: layers + 2, i.e. the\n"
               "embedding, the blocks, and the final LayerNorm with the head as one layer, so GPT-2's 12\n"
               "blocks are ", nn::gpt_layer_count(12), " layers and [4,3,3,4] splits them as the GPipe lesson does; "
               "mlp: 2·len(widths)\n− 3, realistic: blocks + 2).\n");
}

void resolve_init_from(TrainConfig& config, const config::KeyValues& given) {
    TrainConfig::Model& model = config.model;
    if (model.init_from.empty()) return;
    MP_REQUIRE(model.kind == ModelKind::Gpt, "model.init_from loads a GPT-2 checkpoint but model.kind is \"",
               name_of(model.kind), "\"");
    MP_REQUIRE(model.tie_embeddings, "model.init_from loads GPT-2, whose head is tied to its token embedding: set "
               "model.tie_embeddings = true");
    const nn::HfGpt2Config hf = nn::read_hf_gpt2_config(model.init_from);
    const struct {
        const char* key;
        const char* field;
        int64_t* member;
        int64_t value;
    } sizes[] = {{"model.vocab", "vocab_size", &model.vocab, hf.gpt.vocab},
                 {"model.context", "n_positions", &model.context, hf.gpt.context},
                 {"model.layers", "n_layer", &model.layers, hf.gpt.layers},
                 {"model.heads", "n_head", &model.heads, hf.gpt.heads},
                 {"model.channels", "n_embd", &model.channels, hf.gpt.channels}};
    for (const auto& size : sizes) {
        MP_REQUIRE(!given.count(size.key) || *size.member == size.value, size.key, " is ", *size.member,
                   " but model.init_from '", model.init_from, "' has ", size.field, " ", size.value, " (",
                   hf.config_path, "); drop ", size.key, " or make them agree");
        *size.member = size.value;
    }
    MP_REQUIRE(!given.count("model.layer_norm_eps") || model.layer_norm_eps == hf.gpt.layer_norm_eps,
               "model.layer_norm_eps is ", model.layer_norm_eps, " but model.init_from '", model.init_from,
               "' has layer_norm_epsilon ", hf.gpt.layer_norm_eps, " (", hf.config_path, ")");
    model.layer_norm_eps = hf.gpt.layer_norm_eps;
}

}  // namespace mp::train
