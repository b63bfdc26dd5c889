// The training-run configuration: one JSON file (DeepSpeed-style) plus `--set path=value`
// overrides, read through ONE table of keys (config_keys()) that drives parsing, defaults,
// validation, the `--help` text and the typed TrainConfig. Every check runs before load_config
// returns, so every rank reaches the same verdict from the same inputs.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace mp::pipeline {

// The resolved configuration. Its members mirror the dotted key paths exactly
// (`pipeline.schedule` is `config.pipeline.schedule`); the defaults live in the key table, not
// here, so a default-constructed TrainConfig is empty: get one from parse_config_text("{}", ...).
struct TrainConfig {
    int64_t train_batch_size = 0;  // resolved: micro_batch_size × micro_batches × data-parallel size
    int64_t micro_batch_size = 0;
    int64_t micro_batches = 0;  // gradient accumulation steps per optimizer step

    struct Model {
        std::string kind;  // "gpt" | "mlp" | "realistic"
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
        std::string type;  // "adamw" | "sgd"
        double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0, momentum = 0;
    } optimizer;

    struct LrSchedule {
        std::string kind;  // "cosine" | "constant"
        int64_t warmup_steps = 0;
        double min_lr = 0;
    } lr_schedule;

    double grad_clip = 0;   // max global gradient norm; 0 = no clipping
    std::string precision;  // "fp32" | "tf32"

    struct Pipeline {
        int64_t stages = 0;             // ranks of one pipeline (K)
        int64_t virtual_stages = 0;     // stages per rank (v): the model is split into K · v stages
        std::string partition;          // "uniform" | "parameters" | "time" | "balance"
        std::vector<int64_t> balance;   // layers per stage (K · v entries), with partition = "balance"
        std::string schedule;           // a name from the schedule registry (pipeline/schedule.h)
        std::string rematerialization;  // "never" | "always" | "except_last"
    } pipeline;

    struct Comm {
        std::string backend;  // "auto" | "nccl" | "mpi"
        double timeout_s = 0;
    } comm;

    int64_t steps = 0;
    int64_t seed = 0;

    struct Data {
        std::string kind;  // "synthetic" | "text" | "shard"
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

    std::string device;  // "auto" | "cpu" | "cuda"

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

// ---------------------------------------------------------------- the key table

enum class KeyType { Int, Float, String, Bool, IntList };
const char* key_type_name(KeyType type);  // "int", "float", "string", "bool", "int list"

// The member of a TrainConfig that a key reads and writes.
using ConfigField = std::variant<int64_t*, double*, std::string*, bool*, std::vector<int64_t>*>;

// One key: its dotted path, type (deduced from the member it binds), default, the allowed
// values of an enumerated string, the numeric bounds (for an int list: of every element), help.
struct ConfigKey {
    std::string path;
    KeyType type = KeyType::Int;
    nlohmann::json default_value;
    std::vector<std::string> choices;  // empty: any value of the type
    std::optional<double> min, max;    // inclusive unless the *_exclusive flag is set
    bool min_exclusive = false, max_exclusive = false;
    std::string help;
    std::function<ConfigField(TrainConfig&)> field;

    // "> 0", ">= 0", "in [0, 1)", or "" when unbounded.
    std::string bounds_text() const;
};

// Every key, in the order --help lists them.
const std::vector<ConfigKey>& config_keys();

// ---------------------------------------------------------------- loading

// Reads the JSON file at `path`, applies `overrides` ("pipeline.schedule=gpipe", in order, later
// ones win), fills defaults and validates everything for `world_size` ranks. Throws
// std::invalid_argument naming the file (and the line, for malformed JSON), the key path and
// the values: unknown keys (with the closest known key), duplicate keys, wrong types, values
// outside their choices or bounds, and the cross-key rules (batch arithmetic, stages dividing
// the world size, the balance list, data.path).
TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides, int world_size);

// The same from JSON text; `source_name` stands for the file name in messages.
TrainConfig parse_config_text(const std::string& text, const std::string& source_name,
                              const std::vector<std::string>& overrides, int world_size);

// The --help text: how the file and overrides work, then one line per key with its type,
// default, allowed values or bounds, and help — generated from config_keys().
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

// world_size / pipeline.stages; throws std::invalid_argument when stages does not divide it.
int data_parallel_size(const TrainConfig& config, int world_size);

// The number of layers of the configured model, i.e. what the pipeline partitions:
// gpt: layers + 2 (embedding, blocks, final layernorm + head); mlp: 2·len(widths) − 3
// (linears and the ReLUs between them); realistic: blocks + 2 (embedding, blocks, head).
int64_t model_layer_count(const TrainConfig& config);

}  // namespace mp::pipeline
