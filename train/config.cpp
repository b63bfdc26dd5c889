// The training schema: the key table (one line per key: path = member, default, bounds, help),
// and reading a config through it — file, environment and --set overrides, then the cross-key
// rules — plus its --help text and JSON echo. Adding a key is one line in build_key_table().
#include "train/config.h"

#include <iomanip>
#include <sstream>

#include "base/strict_json.h"
#include "comm/deadline.h"
#include "pipeline/schedule.h"
#include "train/config_rules.h"

namespace mp::train {

using nlohmann::json;
using pipeline::PartitionMethod;
using pipeline::Rematerialization;

namespace {

// The key's path IS the member's path in TrainConfig: KEY(pipeline.stages, ...) binds
// config.pipeline.stages to "pipeline.stages", so the two cannot drift apart.
#define KEY(member, default_value, help) \
    config::make_key<TrainConfig>(#member, [](TrainConfig& c) { return &c.member; }, default_value, help)

// Upper bounds on model sizes, so that every count derived from them (parameters, elements of a
// batch) fits in 64 bits: token ids are int32; 2^24 channels give 12·C² + 13·C well inside.
constexpr double kMaxTokenId = 2147483647.0;  // 2^31 - 1
constexpr double kMaxWidth = 16777216.0;      // 2^24
constexpr double kMaxDepth = 1048576.0;       // 2^20

std::vector<config::Key<TrainConfig>> build_key_table() {
    using List = std::vector<int64_t>;
    return {
        KEY(train_batch_size, 0, "global batch per optimizer step; 0 = micro_batch_size × micro_batches × "
                                 "data-parallel size").non_negative(),
        KEY(micro_batch_size, 4, "examples per micro-batch on one pipeline").positive(),
        KEY(micro_batches, 4, "micro-batches per step (gradient accumulation)").positive(),

        KEY(model.kind, ModelKind::Gpt, "model family"),
        KEY(model.vocab, 256, "vocabulary size (gpt, realistic)").positive().at_most(kMaxTokenId),
        KEY(model.context, 64, "sequence length (gpt)").positive().at_most(kMaxTokenId),
        KEY(model.layers, 4, "transformer blocks (gpt)").positive().at_most(kMaxDepth),
        KEY(model.heads, 4, "attention heads; must divide model.channels (gpt)").positive().at_most(kMaxWidth),
        KEY(model.channels, 128, "embedding width (gpt)").positive().at_most(kMaxWidth),
        KEY(model.dropout, 0.0, "dropout probability (gpt)").fraction(),
        KEY(model.layer_norm_eps, 1e-5, "LayerNorm epsilon (gpt)").positive(),
        KEY(model.tie_embeddings, false, "the head uses the token embedding's weight, as GPT-2 does; over pipeline "
                                         "stages the first and last hold copies kept equal (gpt)"),
        KEY(model.pad_vocab_to_multiple_of, 1, "embedding and head rows rounded up to a multiple of this (gpt; "
                                                "e.g. 64: GPT-2's 50257 -> 50304, tensor-core-friendly); the padded "
                                                "rows never reach the loss or the samples").positive().at_most(4096),
        KEY(model.init_from, "", "Hugging Face GPT-2 to start from: a directory with config.json and "
                                 "model.safetensors, or that file; sizes come from config.json; needs "
                                 "tie_embeddings (gpt)"),
        KEY(model.widths, (List{64, 128, 128, 10}), "layer widths, input first (mlp)").positive().at_most(kMaxWidth),
        KEY(model.hidden, 2048, "hidden width (realistic)").positive().at_most(kMaxWidth),
        KEY(model.blocks, 30, "Linear-ReLU-Linear blocks (realistic)").positive().at_most(kMaxDepth),

        KEY(optimizer.type, OptimizerKind::AdamW, "optimizer"),
        KEY(optimizer.lr, 1e-3, "peak learning rate").positive(),
        KEY(optimizer.beta1, 0.9, "AdamW first-moment decay").fraction(),
        KEY(optimizer.beta2, 0.999, "AdamW second-moment decay").fraction(),
        KEY(optimizer.eps, 1e-8, "AdamW denominator epsilon").positive(),
        KEY(optimizer.weight_decay, 0.01, "decoupled weight decay (AdamW) or L2 (SGD)").non_negative(),
        KEY(optimizer.momentum, 0.0, "SGD momentum").fraction(),

        KEY(lr_schedule.kind, LrScheduleKind::Cosine, "learning-rate schedule after warm-up"),
        KEY(lr_schedule.warmup_steps, 0, "linear warm-up steps").non_negative(),
        KEY(lr_schedule.min_lr, 0.0, "final learning rate of the cosine decay; <= optimizer.lr").non_negative(),

        KEY(grad_clip, 1.0, "max global gradient L2 norm; 0 = no clipping").non_negative(),
        KEY(precision, Precision::Fp32, "fp32 | tf32 (float32 GEMMs on TF32 tensor cores) | bf16 (mixed precision: "
                                        "float32 masters, bfloat16 compute and activations)"),

        KEY(pipeline.stages, 1, "pipeline stages; must divide the world size (the rest is data parallel)")
            .positive(),
        KEY(pipeline.virtual_stages, 0,  // the help is copied, so a temporary string will do
            str("stages per rank: the model is split into stages x virtual_stages stages; 0 = the schedule's own (",
                pipeline::describe_default_virtual_stages(), ")").c_str())
            .non_negative(),
        KEY(pipeline.partition, PartitionMethod::Uniform, "how layers are split into stages"),
        KEY(pipeline.balance, List{}, "layers per stage, with partition = balance (e.g. [4,3,3,4])").positive(),
        KEY(pipeline.schedule, "1f1b", "pipeline schedule (listed below)").one_of(pipeline::schedule_kinds()),
        KEY(pipeline.rematerialization, Rematerialization::Never, "recompute stage activations in backward"),

        KEY(comm.backend, comm::Backend::Auto, "communication backend (auto: NCCL between GPUs, else MPI)"),
        KEY(comm.timeout_s, 300.0, "seconds a transfer may wait before the job aborts; MINIPIPE_COMM_TIMEOUT_S "
                                   "overrides the file, --set overrides both")
            .positive()
            .at_most(comm::detail::kMaxTimeoutSeconds),

        KEY(steps, 100, "optimizer steps").positive(),
        KEY(seed, 1337, "seed of the model initialisation and the data").non_negative(),

        KEY(data.kind, DataKind::Synthetic, "training data"),
        KEY(data.path, "", "text file or token shard; required for text and shard"),
        KEY(data.digits, 3, "synthetic: operands have up to this many digits").positive().at_most(9),
        KEY(data.val_path, "", "validation data of the same kind (text or shard): its loss is evaluated at the end "
                               "and every eval.every steps; \"\" = none"),
        KEY(data.vocab_path, "", "llm.c tokenizer file (tools/prepare_data.py writes one) to print the samples of "
                                 "shard data as text; \"\" = token ids"),
        KEY(eval.every, 0, "evaluate the validation loss before every N-th step as well as at the end; 0 = at the "
                           "end only (needs data.val_path)").non_negative(),
        KEY(eval.batches, 4, "global batches of the validation data per evaluation, read in order from its start")
            .positive(),
        KEY(eval.accuracy, 0, "synthetic: held-out sums the model completes (greedy) at every step line and at the "
                              "end, scored by exact match; 0 = none").non_negative().at_most(100000),
        KEY(device, DeviceChoice::Auto, "where to train (auto: the GPU when one is visible)"),

        KEY(log.every, 10, "print a step line every N steps").positive(),
        KEY(log.memory, false, "print memory per stage with each step line"),
        KEY(trace.path, "", "Chrome trace JSON of the pipeline actions; \"\" = none"),
        KEY(trace.svg, "", "timeline SVG of the pipeline actions; \"\" = none"),
        KEY(checkpoint.dir, "", "checkpoint directory; when set it always gets the final checkpoint and "
                                "model.safetensors; required when checkpoint.every > 0 or resume"),
        KEY(checkpoint.every, 0, "also save every N steps; 0 = the final checkpoint only").non_negative(),
        KEY(checkpoint.resume, false, "resume from the latest checkpoint in checkpoint.dir"),
        KEY(summary.path, "", "run summary JSON (resolved config, losses, timings); \"\" = none"),
        config::make_key<TrainConfig>("export.hf", [](TrainConfig& c) { return &c.exports.hf; }, "",
                                      "directory to write the trained GPT-2 to for Hugging Face transformers "
                                      "(model.safetensors + config.json); needs tie_embeddings (gpt); \"\" = none"),
    };
}

#undef KEY

const config::BoundKeyTable<TrainConfig>& key_table() {
    static const config::BoundKeyTable<TrainConfig> table(build_key_table());
    return table;
}

}  // namespace

const std::vector<config::KeySpec>& config_keys() { return key_table().keys(); }

TrainConfig parse_config_text(const std::string& text, const std::string& source_name,
                              const std::vector<std::string>& overrides, int world_size) {
    const config::KeyValues given = key_table().table().read(text, source_name, overrides);
    TrainConfig config = key_table().assign(given);
    try {
        resolve_init_from(config, given);
        check_cross_key_rules(config, world_size);
    } catch (const std::invalid_argument& e) {
        std::string with_overrides = overrides.empty() ? "" : str(" with ", overrides.size(), " --set override(s)");
        throw std::invalid_argument(str(source_name, with_overrides, ": ", e.what()));
    }
    return config;
}

TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides, int world_size) {
    return parse_config_text(read_config_file(path), path, overrides, world_size);
}

std::vector<std::string> with_environment_overrides(const std::vector<std::string>& overrides) {
    std::vector<std::string> all;
    if (std::optional<double> seconds = comm::detail::timeout_seconds_from_environment()) {
        std::ostringstream value;
        value << std::setprecision(17) << *seconds;
        all.push_back("comm.timeout_s=" + value.str());
    }
    all.insert(all.end(), overrides.begin(), overrides.end());
    return all;
}

std::vector<std::string> config_differences(const TrainConfig& a, const std::string& a_name, const TrainConfig& b,
                                            const std::string& b_name) {
    return key_table().differences(a, a_name, b, b_name);
}

json to_json(const TrainConfig& config) { return key_table().to_json(config); }

std::string config_help() {
    std::ostringstream out;
    out << "Training configuration: one JSON file whose objects nest the dotted keys below\n"
           "(\"pipeline.stages\" is {\"pipeline\": {\"stages\": 4}}); every key is optional. Override\n"
           "any key with --set key.path=value (ints, floats, true/false, strings, int lists as\n"
           "[4,3,3,4] or 4,3,3,4). Unknown keys, duplicate keys and wrong types are errors.\n"
        << cross_key_rules_help() << "\n"
        << key_table().table().help_lines();
    out << "\nPipeline schedules (pipeline.schedule):\n";
    size_t name_width = 0;
    for (const pipeline::ScheduleInfo& info : pipeline::schedule_registry())
        name_width = std::max(name_width, info.name.size());
    for (const pipeline::ScheduleInfo& info : pipeline::schedule_registry())
        out << "  " << std::left << std::setw(static_cast<int>(name_width) + 2) << info.name << info.description
            << "\n";
    return out.str();
}

}  // namespace mp::train
