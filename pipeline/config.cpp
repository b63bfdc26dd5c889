// The key table and everything it drives: strict JSON reading (duplicate keys, file:line of a
// syntax error), `--set` overrides, per-key type/choice/bound checks, the cross-key rules, the
// --help text and the resolved config as JSON. Adding a key is one line in config_keys().
#include "pipeline/config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#include "comm/deadline.h"
#include "base/error.h"
#include "nn/hf_gpt2.h"
#include "nn/json_limits.h"
#include "pipeline/schedule.h"

namespace mp::pipeline {

using nlohmann::json;

const char* key_type_name(KeyType type) {
    switch (type) {
        case KeyType::Int: return "int";
        case KeyType::Float: return "float";
        case KeyType::String: return "string";
        case KeyType::Bool: return "bool";
        case KeyType::IntList: return "int list";
    }
    return "?";
}

namespace {

std::string format_number(double value) {
    std::ostringstream out;
    out << value;
    return out.str();
}

}  // namespace

std::string ConfigKey::bounds_text() const {
    if (min && max)
        return str("in ", min_exclusive ? "(" : "[", format_number(*min), ", ", format_number(*max),
                   max_exclusive ? ")" : "]");
    if (min) return str(min_exclusive ? "> " : ">= ", format_number(*min));
    if (max) return str(max_exclusive ? "< " : "<= ", format_number(*max));
    return "";
}

// ---------------------------------------------------------------- the table

namespace {

template <typename Field>
constexpr KeyType key_type_of() {
    if constexpr (std::is_same_v<Field, int64_t>) return KeyType::Int;
    else if constexpr (std::is_same_v<Field, double>) return KeyType::Float;
    else if constexpr (std::is_same_v<Field, std::string>) return KeyType::String;
    else if constexpr (std::is_same_v<Field, bool>) return KeyType::Bool;
    else {
        static_assert(std::is_same_v<Field, std::vector<int64_t>>, "unsupported config field type");
        return KeyType::IntList;
    }
}

// A table row under construction; the chained calls add choices and bounds.
struct KeyBuilder {
    ConfigKey key;
    KeyBuilder& one_of(std::vector<std::string> choices) {
        key.choices = std::move(choices);
        return *this;
    }
    KeyBuilder& positive() {
        key.min = 0;
        key.min_exclusive = true;
        return *this;
    }
    KeyBuilder& non_negative() {
        key.min = 0;
        return *this;
    }
    KeyBuilder& at_most(double max) {
        key.max = max;
        return *this;
    }
    KeyBuilder& fraction() {  // [0, 1)
        key.min = 0;
        key.max = 1;
        key.max_exclusive = true;
        return *this;
    }
    operator ConfigKey() const { return key; }
};

template <typename Getter>
KeyBuilder make_key(const char* path, Getter getter, json default_value, const char* help) {
    using Field = std::remove_pointer_t<decltype(getter(std::declval<TrainConfig&>()))>;
    KeyBuilder builder;
    builder.key.path = path;
    builder.key.type = key_type_of<Field>();
    builder.key.default_value = std::move(default_value);
    builder.key.help = help;
    builder.key.field = [getter](TrainConfig& config) -> ConfigField { return getter(config); };
    return builder;
}

// The key's path IS the member's path in TrainConfig: KEY(pipeline.stages, ...) binds
// config.pipeline.stages to "pipeline.stages", so the two cannot drift apart.
#define KEY(member, default_value, help) \
    make_key(#member, [](TrainConfig& c) { return &c.member; }, default_value, help)

// Upper bounds on model sizes, so that every count derived from them (parameters, elements of a
// batch) fits in 64 bits: token ids are int32; 2^24 channels give 12·C² + 13·C well inside.
constexpr double kMaxTokenId = 2147483647.0;  // 2^31 - 1
constexpr double kMaxWidth = 16777216.0;      // 2^24
constexpr double kMaxDepth = 1048576.0;       // 2^20

std::vector<ConfigKey> build_key_table() {
    using List = std::vector<int64_t>;
    return {
        KEY(train_batch_size, 0, "global batch per optimizer step; 0 = micro_batch_size × micro_batches × "
                                 "data-parallel size").non_negative(),
        KEY(micro_batch_size, 4, "examples per micro-batch on one pipeline").positive(),
        KEY(micro_batches, 4, "micro-batches per step (gradient accumulation)").positive(),

        KEY(model.kind, "gpt", "model family").one_of({"gpt", "mlp", "realistic"}),
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

        KEY(optimizer.type, "adamw", "optimizer").one_of({"adamw", "sgd"}),
        KEY(optimizer.lr, 1e-3, "peak learning rate").positive(),
        KEY(optimizer.beta1, 0.9, "AdamW first-moment decay").fraction(),
        KEY(optimizer.beta2, 0.999, "AdamW second-moment decay").fraction(),
        KEY(optimizer.eps, 1e-8, "AdamW denominator epsilon").positive(),
        KEY(optimizer.weight_decay, 0.01, "decoupled weight decay (AdamW) or L2 (SGD)").non_negative(),
        KEY(optimizer.momentum, 0.0, "SGD momentum").fraction(),

        KEY(lr_schedule.kind, "cosine", "learning-rate schedule after warm-up").one_of({"cosine", "constant"}),
        KEY(lr_schedule.warmup_steps, 0, "linear warm-up steps").non_negative(),
        KEY(lr_schedule.min_lr, 0.0, "final learning rate of the cosine decay; <= optimizer.lr").non_negative(),

        KEY(grad_clip, 1.0, "max global gradient L2 norm; 0 = no clipping").non_negative(),
        KEY(precision, "fp32", "fp32 | tf32 (float32 GEMMs on TF32 tensor cores) | bf16 (mixed precision: float32 "
                               "masters, bfloat16 compute and activations)")
            .one_of({"fp32", "tf32", "bf16"}),

        KEY(pipeline.stages, 1, "pipeline stages; must divide the world size (the rest is data parallel)")
            .positive(),
        KEY(pipeline.virtual_stages, 0, "stages per rank: the model is split into stages x virtual_stages stages; "
                                        "0 = the schedule's own (interleaved-1f1b and zbv 2, the others 1)")
            .non_negative(),
        KEY(pipeline.partition, "uniform", "how layers are split into stages")
            .one_of({"uniform", "parameters", "time", "balance"}),
        KEY(pipeline.balance, List{}, "layers per stage, with partition = balance (e.g. [4,3,3,4])").positive(),
        KEY(pipeline.schedule, "1f1b", "pipeline schedule (listed below)").one_of(schedule_kinds()),
        KEY(pipeline.rematerialization, "never", "recompute stage activations in backward")
            .one_of({"never", "always", "except_last"}),

        KEY(comm.backend, "auto", "communication backend (auto: NCCL between GPUs, else MPI)")
            .one_of({"auto", "nccl", "mpi"}),
        KEY(comm.timeout_s, 300.0, "seconds a transfer may wait before the job aborts; MINIPIPE_COMM_TIMEOUT_S "
                                   "overrides the file, --set overrides both")
            .positive()
            .at_most(comm::detail::kMaxTimeoutSeconds),

        KEY(steps, 100, "optimizer steps").positive(),
        KEY(seed, 1337, "seed of the model initialisation and the data").non_negative(),

        KEY(data.kind, "synthetic", "training data").one_of({"synthetic", "text", "shard"}),
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
        KEY(device, "auto", "where to train (auto: the GPU when one is visible)").one_of({"auto", "cpu", "cuda"}),

        KEY(log.every, 10, "print a step line every N steps").positive(),
        KEY(log.memory, false, "print memory per stage with each step line"),
        KEY(trace.path, "", "Chrome trace JSON of the pipeline actions; \"\" = none"),
        KEY(trace.svg, "", "timeline SVG of the pipeline actions; \"\" = none"),
        KEY(checkpoint.dir, "", "checkpoint directory; required when checkpoint.every > 0 or resume"),
        KEY(checkpoint.every, 0, "save every N steps; 0 = never").non_negative(),
        KEY(checkpoint.resume, false, "resume from the latest checkpoint in checkpoint.dir"),
        KEY(summary.path, "", "run summary JSON (resolved config, losses, timings); \"\" = none"),
        make_key("export.hf", [](TrainConfig& c) { return &c.exports.hf; }, "",
                 "directory to write the trained GPT-2 to for Hugging Face transformers (model.safetensors + "
                 "config.json); needs tie_embeddings (gpt); \"\" = none"),
    };
}

#undef KEY

}  // namespace

const std::vector<ConfigKey>& config_keys() {
    static const std::vector<ConfigKey> keys = build_key_table();
    return keys;
}

// ---------------------------------------------------------------- helpers

namespace {

const ConfigKey* find_key(const std::string& path) {
    for (const ConfigKey& key : config_keys())
        if (key.path == path) return &key;
    return nullptr;
}

// "model", "pipeline", ...: the prefixes that group keys into JSON objects.
bool is_section(const std::string& path) {
    for (const ConfigKey& key : config_keys())
        if (key.path.size() > path.size() && key.path.compare(0, path.size(), path) == 0 &&
            key.path[path.size()] == '.')
            return true;
    return false;
}

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        current[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t substitute = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitute});
        }
        std::swap(previous, current);
    }
    return previous[b.size()];
}

// "unknown key pipeline.shedule (did you mean pipeline.schedule?)".
std::string unknown_key_message(const std::string& path) {
    std::string best;
    size_t best_distance = std::string::npos;
    auto consider = [&](const std::string& candidate) {
        size_t distance = edit_distance(path, candidate);
        if (distance < best_distance) {
            best_distance = distance;
            best = candidate;
        }
    };
    std::set<std::string> sections;
    for (const ConfigKey& key : config_keys()) {
        consider(key.path);
        size_t dot = key.path.find('.');
        if (dot != std::string::npos) sections.insert(key.path.substr(0, dot));
    }
    for (const std::string& section : sections) consider(section);
    std::string message = str("unknown key ", path);
    if (best_distance <= std::max<size_t>(2, path.size() / 3)) message += str(" (did you mean ", best, "?)");
    return message + " (see --help for every key)";
}

// "int 4", "float 4.5", "string \"4\"", "bool true", "list [1,2]", "object {...}", "null".
std::string describe_value(const json& value) {
    switch (value.type()) {
        case json::value_t::number_integer:
        case json::value_t::number_unsigned: return "int " + nn::abbreviated(value);
        case json::value_t::number_float: return "float " + nn::abbreviated(value);
        case json::value_t::string: return "string " + nn::abbreviated(value);
        case json::value_t::boolean: return "bool " + nn::abbreviated(value);
        case json::value_t::array: return "list " + nn::abbreviated(value);
        case json::value_t::object: return "object " + nn::abbreviated(value);
        case json::value_t::null: return "null";
        default: return nn::abbreviated(value);
    }
}

bool is_int(const json& value) {
    if (value.is_number_integer() && !value.is_number_unsigned()) return true;
    return value.is_number_unsigned() &&
           value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

// The value in the key's canonical JSON type (an int given for a float becomes a float), or
// an exception "path: expected int, got string \"4\"".
json coerce_type(const ConfigKey& key, const json& value) {
    bool ok = false;
    json result = value;
    switch (key.type) {
        case KeyType::Int: ok = is_int(value); break;
        case KeyType::Float:
            ok = value.is_number() && (value.is_number_float() || is_int(value));
            if (ok) result = value.get<double>();
            break;
        case KeyType::String: ok = value.is_string(); break;
        case KeyType::Bool: ok = value.is_boolean(); break;
        case KeyType::IntList:
            ok = value.is_array() && std::all_of(value.begin(), value.end(), is_int);
            break;
    }
    MP_REQUIRE(ok, key.path, ": expected ", key_type_name(key.type), ", got ", describe_value(value));
    return result;
}

void check_bounds(const ConfigKey& key, double number, const std::string& where, const std::string& shown) {
    bool below = key.min && (key.min_exclusive ? number <= *key.min : number < *key.min);
    bool above = key.max && (key.max_exclusive ? number >= *key.max : number > *key.max);
    MP_REQUIRE(!below && !above, where, " must be ", key.bounds_text(), ", got ", shown);
}

// Choices and bounds of a value already of the key's type.
void check_constraints(const ConfigKey& key, const json& value) {
    if (!key.choices.empty()) {
        const std::string& text = value.get_ref<const std::string&>();
        if (std::find(key.choices.begin(), key.choices.end(), text) == key.choices.end()) {
            std::string allowed;
            for (const std::string& choice : key.choices) allowed += (allowed.empty() ? "" : " | ") + choice;
            throw std::invalid_argument(str(key.path, ": ", nn::abbreviated(value), " is not one of ", allowed));
        }
    }
    if (!key.min && !key.max) return;
    if (key.type == KeyType::IntList) {
        for (size_t i = 0; i < value.size(); ++i)
            check_bounds(key, value[i].get<double>(), str(key.path, "[", i, "]"), nn::abbreviated(value[i]));
    } else if (key.type == KeyType::Int || key.type == KeyType::Float) {
        check_bounds(key, value.get<double>(), key.path, nn::abbreviated(value));
    }
}

json checked_value(const ConfigKey& key, const json& value) {
    json typed = coerce_type(key, value);
    check_constraints(key, typed);
    return typed;
}

std::string trim(const std::string& text) {
    size_t begin = text.find_first_not_of(" \t\r\n");
    if (begin == std::string::npos) return "";
    size_t end = text.find_last_not_of(" \t\r\n");
    return text.substr(begin, end - begin + 1);
}

bool parse_int(const std::string& raw, int64_t& out) {
    std::string text = trim(raw);
    if (text.empty()) return false;
    errno = 0;
    char* end = nullptr;
    long long value = std::strtoll(text.c_str(), &end, 10);
    if (errno != 0 || *end != '\0') return false;
    out = value;
    return true;
}

// The value of an override, read per the key's type: 4, 3e-4, true, gpipe (or "gpipe"),
// [4,3,3,4] or 4,3,3,4.
json parse_override_value(const ConfigKey& key, const std::string& raw) {
    std::string text = trim(raw);
    auto fail = [&]() -> json {
        throw std::invalid_argument(str(key.path, ": expected ", key_type_name(key.type), ", got \"", raw, "\""));
    };
    switch (key.type) {
        case KeyType::Int: {
            int64_t value = 0;
            return parse_int(text, value) ? json(value) : fail();
        }
        case KeyType::Float: {
            if (text.empty()) return fail();
            errno = 0;
            char* end = nullptr;
            double value = std::strtod(text.c_str(), &end);
            if (errno != 0 || *end != '\0' || !std::isfinite(value)) return fail();
            return json(value);
        }
        case KeyType::Bool:
            if (text == "true") return json(true);
            if (text == "false") return json(false);
            return fail();
        case KeyType::String:
            if (text.size() >= 2 && text.front() == '"' && text.back() == '"') return json(text.substr(1, text.size() - 2));
            return json(text);
        case KeyType::IntList: {
            std::string body = text;
            if (!body.empty() && body.front() == '[') {
                if (body.back() != ']') return fail();
                body = trim(body.substr(1, body.size() - 2));
            }
            json list = json::array();
            if (body.empty()) return list;
            std::stringstream items(body);
            std::string item;
            while (std::getline(items, item, ',')) {
                int64_t value = 0;
                if (!parse_int(item, value)) return fail();
                list.push_back(value);
            }
            if (body.back() == ',') return fail();
            return list;
        }
    }
    return fail();
}

// The line (1-based) and column of the byte at 1-based position `byte` of `text`.
std::pair<size_t, size_t> line_and_column(const std::string& text, size_t byte) {
    size_t end = std::min(byte == 0 ? 0 : byte - 1, text.size());
    size_t line = 1, line_start = 0;
    for (size_t i = 0; i < end; ++i)
        if (text[i] == '\n') {
            ++line;
            line_start = i + 1;
        }
    return {line, end - line_start + 1};
}

// Parses JSON text (comments allowed), rejecting a key repeated within one object, which
// nlohmann's parser would otherwise resolve silently by keeping the last.
json parse_json_strict(const std::string& text, const std::string& source_name) {
    struct Frame {
        bool is_object = true;
        std::set<std::string> keys;
        std::string key;       // the current key (objects)
        size_t elements = 0;   // completed elements so far (arrays)
    };
    std::vector<Frame> frames;
    auto path_to = [&frames](const std::string& leaf) {
        std::string path;
        for (const Frame& frame : frames) {
            if (&frame == &frames.back()) break;
            if (frame.is_object) path += (path.empty() ? "" : ".") + frame.key;
            else path += str("[", frame.elements, "]");
        }
        return path + (path.empty() ? "" : ".") + leaf;
    };
    auto count_element = [&frames] {
        if (!frames.empty() && !frames.back().is_object) ++frames.back().elements;
    };
    auto callback = [&](int, json::parse_event_t event, json& parsed) -> bool {
        switch (event) {
            case json::parse_event_t::object_start:
            case json::parse_event_t::array_start:
                MP_REQUIRE(frames.size() < static_cast<size_t>(nn::kMaxJsonDepth), source_name, ": JSON nested deeper than ",
                           nn::kMaxJsonDepth, " levels (at ", path_to("…"), "); a configuration is at most 3 deep");
                frames.push_back(Frame{event == json::parse_event_t::object_start, {}, {}, 0});
                break;
            case json::parse_event_t::object_end:
            case json::parse_event_t::array_end:
                frames.pop_back();
                count_element();
                break;
            case json::parse_event_t::key: {
                Frame& frame = frames.back();
                frame.key = parsed.get<std::string>();
                MP_REQUIRE(frame.keys.insert(frame.key).second, source_name, ": duplicate key ", path_to(frame.key),
                           " (JSON parsers silently keep the last one; give each key once)");
                break;
            }
            case json::parse_event_t::value: count_element(); break;
        }
        return true;
    };
    try {
        return json::parse(text, callback, /*allow_exceptions=*/true, /*ignore_comments=*/true);
    } catch (const json::out_of_range& e) {
        // A number beyond double's range (1e999): nlohmann reports it without a position.
        throw std::invalid_argument(str(source_name, ": invalid JSON: a number is out of range (",
                                        std::string(e.what()).substr(std::string(e.what()).find(']') + 2), ")"));
    } catch (const json::parse_error& e) {
        auto [line, column] = line_and_column(text, e.byte);
        // nlohmann's message: "[json.exception.parse_error.101] parse error at line 3, column 5: <reason>".
        std::string reason = e.what();
        size_t at = reason.find("column ");
        if (at != std::string::npos && (at = reason.find(": ", at)) != std::string::npos) reason = reason.substr(at + 2);
        throw std::invalid_argument(str(source_name, ":", line, ":", column, ": invalid JSON: ", reason));
    }
}

// Walks the file's objects: leaves must be known keys of the right type and within their
// choices and bounds, objects must be known sections.
void collect_file_values(const json& object, const std::string& prefix, std::map<std::string, json>& values) {
    for (auto item = object.begin(); item != object.end(); ++item) {
        std::string path = prefix.empty() ? item.key() : prefix + "." + item.key();
        MP_REQUIRE(item.key().find('.') == std::string::npos, "key \"", path,
                   "\": write dotted paths as nested objects ({\"pipeline\": {\"stages\": 4}})");
        if (const ConfigKey* key = find_key(path)) {
            values[path] = checked_value(*key, item.value());
        } else if (is_section(path)) {
            MP_REQUIRE(item.value().is_object(), path, ": expected object, got ", describe_value(item.value()));
            collect_file_values(item.value(), path, values);
        } else {
            throw std::invalid_argument(unknown_key_message(path));
        }
    }
}

void apply_override(const std::string& assignment, std::map<std::string, json>& values) {
    std::string origin = "--set " + assignment;
    size_t equals = assignment.find('=');
    MP_REQUIRE(equals != std::string::npos, origin, ": expected key.path=value");
    std::string path = trim(assignment.substr(0, equals));
    const ConfigKey* key = find_key(path);
    if (!key) {
        if (is_section(path))
            throw std::invalid_argument(str(origin, ": ", path, " is a section; set one of its keys (", path, ".…)"));
        throw std::invalid_argument(str(origin, ": ", unknown_key_message(path)));
    }
    try {
        values[path] = checked_value(*key, parse_override_value(*key, assignment.substr(equals + 1)));
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(str(origin, ": ", e.what()));
    }
}

void assign(const ConfigKey& key, const json& value, TrainConfig& config) {
    std::visit([&value](auto* field) { *field = value.get<std::remove_pointer_t<decltype(field)>>(); },
               key.field(config));
}

json read_field(const ConfigKey& key, const TrainConfig& config) {
    // The accessor takes a mutable config; reading through it does not modify anything.
    TrainConfig& mutable_config = const_cast<TrainConfig&>(config);
    return std::visit([](auto* field) { return json(*field); }, key.field(mutable_config));
}

std::string join_ints(const std::vector<int64_t>& values) {
    std::string text;
    for (int64_t value : values) text += (text.empty() ? "" : ",") + std::to_string(value);
    return "[" + text + "]";
}

// a × b, refused (naming `what` and both numbers) when it does not fit in 64 bits: user numbers
// must never wrap around into a product that happens to pass a later check.
int64_t checked_product(int64_t a, int64_t b, const std::string& what) {
    int64_t product = 0;
    MP_REQUIRE(!__builtin_mul_overflow(a, b, &product), what, ": ", a, " × ", b, " does not fit in 64 bits");
    return product;
}

// The rules that involve several keys or the world size.
void validate_cross_keys(TrainConfig& config, int world_size) {
    int data_parallel = data_parallel_size(config, world_size);

    const std::string identity = "micro_batch_size × micro_batches × data-parallel size";
    int64_t per_step = checked_product(checked_product(config.micro_batch_size, config.micro_batches, identity),
                                       data_parallel, identity);
    if (config.train_batch_size == 0) config.train_batch_size = per_step;
    MP_REQUIRE(config.train_batch_size == per_step, "train_batch_size ", config.train_batch_size,
               " != micro_batch_size ", config.micro_batch_size, " × micro_batches ", config.micro_batches,
               " × data-parallel size ", data_parallel, " (= ", per_step, "; data-parallel size = world size ",
               world_size, " / pipeline.stages ", config.pipeline.stages, ")");

    const TrainConfig::Model& model = config.model;
    if (model.kind == "gpt")
        MP_REQUIRE(model.channels % model.heads == 0, "model.channels ", model.channels,
                   " is not divisible by model.heads ", model.heads);
    MP_REQUIRE(config.precision != "bf16" || model.kind != "mlp", "precision bf16 needs a model whose input is token "
               "ids (gpt, realistic): the mlp takes float32 inputs and an MSE loss; use precision fp32 or tf32");
    if (!config.exports.hf.empty())
        MP_REQUIRE(model.kind == "gpt" && model.tie_embeddings, "export.hf writes a GPT-2, whose head is tied to its "
                   "token embedding: it needs model.kind gpt (is \"", model.kind, "\") and model.tie_embeddings true (is ",
                   model.tie_embeddings ? "true" : "false", ")");
    if (model.kind == "mlp")
        MP_REQUIRE(model.widths.size() >= 2, "model.widths ", join_ints(model.widths),
                   " needs at least two widths (input and output)");

    if (config.pipeline.virtual_stages == 0)
        config.pipeline.virtual_stages = schedule_info(config.pipeline.schedule).default_virtual_stages;
    int64_t layers = model_layer_count(config);
    const int64_t all_stages = checked_product(config.pipeline.stages, config.pipeline.virtual_stages,
                                               "pipeline.stages × pipeline.virtual_stages");
    if (config.pipeline.virtual_stages == 1)
        MP_REQUIRE(config.pipeline.stages <= layers, "pipeline.stages ", config.pipeline.stages, " exceeds the ",
                   layers, " layers of the ", model.kind, " model (each stage needs at least one)");
    else
        MP_REQUIRE(all_stages <= layers, "pipeline.stages ", config.pipeline.stages, " × pipeline.virtual_stages ",
                   config.pipeline.virtual_stages, " = ", all_stages, " stages exceed the ", layers, " layers of the ",
                   model.kind, " model (each stage needs at least one)");

    const std::vector<int64_t>& balance = config.pipeline.balance;
    if (config.pipeline.partition == "balance") {
        MP_REQUIRE(static_cast<int64_t>(balance.size()) == all_stages, "pipeline.balance ", join_ints(balance), " has ",
                   balance.size(), " entries but pipeline.stages is ", config.pipeline.stages,
                   config.pipeline.virtual_stages == 1 ? std::string()
                                                       : str(" × pipeline.virtual_stages ", config.pipeline.virtual_stages,
                                                             " = ", all_stages, " stages"));
        int64_t sum = 0;
        for (int64_t stage_layers : balance)
            MP_REQUIRE(!__builtin_add_overflow(sum, stage_layers, &sum), "pipeline.balance ", join_ints(balance),
                       ": the sum does not fit in 64 bits");
        MP_REQUIRE(sum == layers, "pipeline.balance ", join_ints(balance), " sums to ", sum, " but the ",
                   model.kind, " model has ", layers, " layers");
    } else {
        MP_REQUIRE(balance.empty(), "pipeline.balance ", join_ints(balance), " is set but pipeline.partition is \"",
                   config.pipeline.partition, "\" (use partition = balance, or drop the list)");
    }

    // The schedule's own rule on its sizes, from the registry.
    const std::string broken = schedule_info(config.pipeline.schedule)
                                   .rule(static_cast<int>(config.pipeline.stages), static_cast<int>(config.micro_batches),
                                         static_cast<int>(config.pipeline.virtual_stages));
    MP_REQUIRE(broken.empty(), "pipeline.schedule \"", config.pipeline.schedule, "\" with pipeline.stages ",
               config.pipeline.stages, ", pipeline.virtual_stages ", config.pipeline.virtual_stages,
               " and micro_batches ", config.micro_batches, ": ", broken);

    MP_REQUIRE(config.lr_schedule.min_lr <= config.optimizer.lr, "lr_schedule.min_lr ", config.lr_schedule.min_lr,
               " exceeds optimizer.lr ", config.optimizer.lr);
    MP_REQUIRE(model.kind != "mlp" || config.data.kind == "synthetic", "data.kind is \"", config.data.kind,
               "\" but model.kind mlp trains on its own synthetic regression task (a random teacher); use "
               "data.kind = synthetic");
    if (config.data.kind == "text" || config.data.kind == "shard")
        MP_REQUIRE(!config.data.path.empty(), "data.path is required when data.kind is \"", config.data.kind, "\"");
    if (!config.data.val_path.empty())
        MP_REQUIRE(config.data.kind == "text" || config.data.kind == "shard", "data.val_path '", config.data.val_path,
                   "' is read like data.path, so it needs data.kind text or shard (is \"", config.data.kind, "\")");
    if (config.eval.every > 0)
        MP_REQUIRE(!config.data.val_path.empty(), "eval.every is ", config.eval.every,
                   " but there is no validation data: set data.val_path, or eval.every = 0");
    if (config.eval.accuracy > 0)
        MP_REQUIRE(config.data.kind == "synthetic" && model.kind == "gpt", "eval.accuracy is ", config.eval.accuracy,
                   " but held-out sums exist for the synthetic additions only (data.kind is \"", config.data.kind,
                   "\", model.kind \"", model.kind, "\"): use data.kind = synthetic with a gpt, or eval.accuracy = 0");
    if (!config.data.vocab_path.empty())
        MP_REQUIRE(config.data.kind == "shard", "data.vocab_path '", config.data.vocab_path,
                   "' decodes token shards, but data.kind is \"", config.data.kind, "\" (use data.kind = shard)");
    if (config.checkpoint.every > 0 || config.checkpoint.resume)
        MP_REQUIRE(!config.checkpoint.dir.empty(), "checkpoint.dir is required when checkpoint.every is ",
                   config.checkpoint.every, " and checkpoint.resume is ", config.checkpoint.resume ? "true" : "false");
}

}  // namespace

// ---------------------------------------------------------------- public API

int data_parallel_size(const TrainConfig& config, int world_size) {
    MP_REQUIRE(world_size >= 1, "config: world size must be >= 1, got ", world_size);
    MP_REQUIRE(config.pipeline.stages >= 1, "pipeline.stages must be > 0, got ", config.pipeline.stages);
    MP_REQUIRE(world_size % config.pipeline.stages == 0, "world size ", world_size,
               " is not divisible by pipeline.stages ", config.pipeline.stages);
    return static_cast<int>(world_size / config.pipeline.stages);
}

int64_t model_layer_count(const TrainConfig& config) {
    const TrainConfig::Model& model = config.model;
    if (model.kind == "gpt") return model.layers + 2;
    if (model.kind == "mlp") return 2 * static_cast<int64_t>(model.widths.size()) - 3;
    if (model.kind == "realistic") return model.blocks + 2;
    throw std::invalid_argument(str("model.kind: \"", model.kind, "\" is not one of gpt | mlp | realistic"));
}

namespace {

// model.init_from: the model's sizes are the checkpoint's (its config.json); a size also given in
// the file or by --set must agree with it.
void resolve_init_from(TrainConfig& config, const std::map<std::string, json>& given) {
    TrainConfig::Model& model = config.model;
    if (model.init_from.empty()) return;
    MP_REQUIRE(model.kind == "gpt", "model.init_from loads a GPT-2 checkpoint but model.kind is \"", model.kind, "\"");
    MP_REQUIRE(model.tie_embeddings, "model.init_from loads GPT-2, whose head is tied to its token embedding: set "
               "model.tie_embeddings = true");
    const nn::HfGpt2Config hf = nn::read_hf_gpt2_config(model.init_from);
    const struct {
        const char* key;
        const char* field;
        int64_t* member;
        int64_t value;
    } sizes[] = {{"model.vocab", "vocab_size", &model.vocab, hf.vocab},
                 {"model.context", "n_positions", &model.context, hf.context},
                 {"model.layers", "n_layer", &model.layers, hf.layers},
                 {"model.heads", "n_head", &model.heads, hf.heads},
                 {"model.channels", "n_embd", &model.channels, hf.channels}};
    for (const auto& size : sizes) {
        MP_REQUIRE(!given.count(size.key) || *size.member == size.value, size.key, " is ", *size.member,
                   " but model.init_from '", model.init_from, "' has ", size.field, " ", size.value, " (",
                   hf.config_path, "); drop ", size.key, " or make them agree");
        *size.member = size.value;
    }
    MP_REQUIRE(!given.count("model.layer_norm_eps") || model.layer_norm_eps == hf.layer_norm_eps,
               "model.layer_norm_eps is ", model.layer_norm_eps, " but model.init_from '", model.init_from,
               "' has layer_norm_epsilon ", hf.layer_norm_eps, " (", hf.config_path, ")");
    model.layer_norm_eps = hf.layer_norm_eps;
}

}  // namespace

TrainConfig parse_config_text(const std::string& text, const std::string& source_name,
                              const std::vector<std::string>& overrides, int world_size) {
    // nlohmann stops at a NUL byte; whatever follows it would be ignored without a word.
    const size_t nul = text.find('\0');
    MP_REQUIRE(nul == std::string::npos, source_name, ": a NUL byte at offset ", nul,
               " (a binary file, or text after the JSON document?)");
    json document = parse_json_strict(text, source_name);
    MP_REQUIRE(document.is_object(), source_name, ": the configuration must be a JSON object, got ",
               describe_value(document));

    std::map<std::string, json> values;
    try {
        collect_file_values(document, "", values);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(str(source_name, ": ", e.what()));
    }
    for (const std::string& assignment : overrides) apply_override(assignment, values);

    TrainConfig config;
    for (const ConfigKey& key : config_keys()) {
        auto found = values.find(key.path);
        assign(key, found != values.end() ? found->second : checked_value(key, key.default_value), config);
    }
    try {
        resolve_init_from(config, values);
        validate_cross_keys(config, world_size);
    } catch (const std::invalid_argument& e) {
        std::string with_overrides = overrides.empty() ? "" : str(" with ", overrides.size(), " --set override(s)");
        throw std::invalid_argument(str(source_name, with_overrides, ": ", e.what()));
    }
    return config;
}

TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides, int world_size) {
    MP_REQUIRE(!std::filesystem::is_directory(path), path, ": is a directory, not a configuration file");
    MP_REQUIRE(!std::filesystem::exists(path) || std::filesystem::is_regular_file(path), path,
               ": is not a regular file (a FIFO or a device?)");
    std::ifstream file(path, std::ios::binary);
    MP_REQUIRE(file.good(), path, ": cannot open the configuration file");
    std::stringstream text;
    text << file.rdbuf();
    MP_REQUIRE(!file.bad(), path, ": error while reading the configuration file");
    return parse_config_text(text.str(), path, overrides, world_size);
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
    std::vector<std::string> differences;
    for (const ConfigKey& key : config_keys()) {
        json a_value = read_field(key, a), b_value = read_field(key, b);
        if (a_value != b_value)
            differences.push_back(str(key.path, " (", a_name, ": ", nn::abbreviated(a_value), ", ", b_name, ": ",
                                      nn::abbreviated(b_value), ")"));
    }
    return differences;
}

json to_json(const TrainConfig& config) {
    json document = json::object();
    for (const ConfigKey& key : config_keys()) {
        std::string pointer = "/" + key.path;
        std::replace(pointer.begin(), pointer.end(), '.', '/');
        document[json::json_pointer(pointer)] = read_field(key, config);
    }
    return document;
}

std::string config_help() {
    std::ostringstream out;
    out << "Training configuration: one JSON file whose objects nest the dotted keys below\n"
           "(\"pipeline.stages\" is {\"pipeline\": {\"stages\": 4}}); every key is optional. Override\n"
           "any key with --set key.path=value (ints, floats, true/false, strings, int lists as\n"
           "[4,3,3,4] or 4,3,3,4). Unknown keys, duplicate keys and wrong types are errors.\n"
           "Rules: train_batch_size = micro_batch_size × micro_batches × data-parallel size, where\n"
           "data-parallel size = world size / pipeline.stages; with partition = balance, the balance\n"
           "list has one entry per stage and sums to the model's layers (gpt: layers + 2, i.e. the\n"
           "embedding, the blocks, and the final LayerNorm with the head as one layer, so GPT-2's 12\n"
           "blocks are 14 layers and [4,3,3,4] splits them as the GPipe lesson does; mlp: 2·len(widths)\n"
           "− 3, realistic: blocks + 2).\n\n";
    size_t path_width = 0, default_width = 0;
    for (const ConfigKey& key : config_keys()) {
        path_width = std::max(path_width, key.path.size());
        default_width = std::max(default_width, key.default_value.dump().size());
    }
    const int path_column = static_cast<int>(path_width) + 2, default_column = static_cast<int>(default_width) + 2;
    out << std::left << std::setw(path_column) << "key" << std::setw(10) << "type" << std::setw(default_column)
        << "default" << "description\n";
    for (const ConfigKey& key : config_keys()) {
        std::string description = key.help;
        if (!key.choices.empty()) {
            std::string allowed;
            for (const std::string& choice : key.choices) allowed += (allowed.empty() ? "" : " | ") + choice;
            description += "; one of " + allowed;
        }
        if (!key.bounds_text().empty()) description += str(" (", key.bounds_text(), ")");
        out << std::setw(path_column) << key.path << std::setw(10) << key_type_name(key.type)
            << std::setw(default_column) << key.default_value.dump() << description << "\n";
    }
    out << "\nPipeline schedules (pipeline.schedule):\n";
    size_t name_width = 0;
    for (const ScheduleInfo& info : schedule_registry()) name_width = std::max(name_width, info.name.size());
    for (const ScheduleInfo& info : schedule_registry())
        out << "  " << std::setw(static_cast<int>(name_width) + 2) << info.name << info.description << "\n";
    return out.str();
}

}  // namespace mp::pipeline
