// The training-run configuration: one JSON file plus `--set path=value` overrides, read through ONE
// table of keys (config_keys(), on base/config_keys.h) that drives parsing, defaults, --help and the
// typed TrainConfig. Every check runs before load_config returns: every rank reaches one verdict.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/config_keys.h"
#include "comm/communicator.h"
#include "pipeline/partition.h"
#include "pipeline/rematerialization.h"
#include "train/choices.h"

namespace mp::train {

// The resolved configuration. Its members mirror the dotted key paths exactly
// (`pipeline.schedule` is `config.pipeline.schedule`); the defaults live in the key table, not
// here, so a default-constructed TrainConfig is empty: get one from parse_config_text("{}", ...).
struct TrainConfig {
    int64_t train_batch_size = 0;  // resolved: micro_batch_size × micro_batches × data-parallel size
    int64_t micro_batch_size = 0;
    int64_t micro_batches = 0;  // gradient accumulation steps per optimizer step

    struct Model {
        ModelKind kind = ModelKind::Gpt;
        int64_t vocab = 0, context = 0, layers = 0, heads = 0, channels = 0;  // gpt (vocab: realistic too)
        double dropout = 0;
        double layer_norm_eps = 0;    // gpt
        bool tie_embeddings = false;  // gpt: the head's weight is the token embedding's
        int64_t pad_vocab_to_multiple_of = 1;  // gpt: table rows rounded up (50257 -> 50304 with 64)
        std::string init_from;        // gpt: a Hugging Face GPT-2 directory or model.safetensors; "" = none
        std::vector<int64_t> widths;  // mlp
        int64_t hidden = 0, blocks = 0;  // realistic
    } model;

    struct Optimizer {
        OptimizerKind type = OptimizerKind::AdamW;
        double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0, momentum = 0;
    } optimizer;

    struct LrSchedule {
        LrScheduleKind kind = LrScheduleKind::Cosine;
        int64_t warmup_steps = 0;
        double min_lr = 0;
    } lr_schedule;

    double grad_clip = 0;  // max global gradient norm; 0 = no clipping
    Precision precision = Precision::Fp32;

    struct Pipeline {
        int64_t stages = 0;            // ranks of one pipeline (K)
        int64_t virtual_stages = 0;    // stages per rank (v): the model is split into K · v stages
        pipeline::PartitionMethod partition = pipeline::PartitionMethod::Uniform;
        std::vector<int64_t> balance;  // layers per stage (K · v entries), with partition = balance
        // A name of the schedule registry (pipeline/schedule.h), which is its name table: a schedule
        // is data looked up by name, not a closed set.
        std::string schedule;
        pipeline::Rematerialization rematerialization = pipeline::Rematerialization::Never;
    } pipeline;

    struct Comm {
        comm::Backend backend = comm::Backend::Auto;
        double timeout_s = 0;
    } comm;

    int64_t steps = 0;
    int64_t seed = 0;

    struct Data {
        DataKind kind = DataKind::Synthetic;
        std::string path;
        int64_t digits = 0;      // synthetic: operands of up to this many digits
        std::string val_path;    // validation data, read like path; "" = none
        std::string vocab_path;  // llm.c tokenizer file decoding shard tokens for samples; "" = none
    } data;

    struct Eval {
        int64_t every = 0;    // evaluate before every N-th step (and at the end); 0 = at the end only
        int64_t batches = 0;  // global batches of the validation data per evaluation
        int64_t accuracy = 0; // synthetic: held-out sums scored by exact match at each step line; 0 = none
    } eval;

    DeviceChoice device = DeviceChoice::Auto;

    struct Log {
        int64_t every = 0;
        bool memory = false;
    } log;

    struct Trace {
        std::string path;  // Chrome trace JSON; "" = none
        std::string svg;   // timeline SVG; "" = none
    } trace;

    struct Checkpoint {
        std::string dir;
        int64_t every = 0;  // 0 = never
        bool resume = false;
    } checkpoint;

    struct Summary {
        std::string path;  // run summary JSON; "" = none
    } summary;

    struct Export {  // the keys "export.*" ("export" is a C++ keyword)
        std::string hf;  // directory for a Hugging Face GPT-2 (model.safetensors + config.json); "" = none
    } exports;
};

// Every key, in the order --help lists them.
const std::vector<config::KeySpec>& config_keys();

// Reads the JSON file at `path`, applies `overrides` ("pipeline.schedule=gpipe", in order, later
// ones win), fills defaults and validates everything for `world_size` ranks. Throws
// std::invalid_argument naming the file (and the line, for malformed JSON), the key path and
// the values: unknown keys (with the closest known key), duplicate keys, wrong types, values
// outside their choices or bounds, and the cross-key rules (train/config_rules.h).
TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides, int world_size);

// The same from JSON text; `source_name` stands for the file name in messages.
TrainConfig parse_config_text(const std::string& text, const std::string& source_name,
                              const std::vector<std::string>& overrides, int world_size);

// The --help text: how the file and overrides work, then one line per key with its type,
// default, allowed values or bounds, and help — generated from config_keys() — and the schedules.
std::string config_help();

// Settings the environment may give, as overrides placed before `overrides`, so the precedence
// is command line > environment > config file > default: MINIPIPE_COMM_TIMEOUT_S sets
// comm.timeout_s. Throws std::invalid_argument naming the variable when its value is unusable.
std::vector<std::string> with_environment_overrides(const std::vector<std::string>& overrides);

// The keys whose values differ between two configurations, each as
// `path (a_name: value, b_name: value)`, in key-table order; empty when they agree.
std::vector<std::string> config_differences(const TrainConfig& a, const std::string& a_name, const TrainConfig& b,
                                            const std::string& b_name);

// The resolved configuration as nested JSON (for logs and run summaries); parsing its dump
// gives the same TrainConfig back.
nlohmann::json to_json(const TrainConfig& config);

}  // namespace mp::train
