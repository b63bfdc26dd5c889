// GPT-2 in the Hugging Face layout: config.json checks, the name and layout mapping between
// transformers' GPT2LMHeadModel and minipipe's tied GPT, a header check shared by every pipeline
// stage, the per-stage read of only its own tensors, and the export back.
#include "nn/hf_gpt2.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "nn/layers.h"

namespace mp::nn {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kPrefix = "transformer.";

// A field of config.json as an int: present, an integer, positive.
int64_t positive_int(const json& config, const char* field, const std::string& path) {
    MP_REQUIRE(config.contains(field), path, ": config.json has no '", field, "'");
    const json& value = config.at(field);
    MP_REQUIRE(value.is_number_integer() && value.get<int64_t>() > 0, path, ": '", field,
               "' must be a positive integer, got ", value.dump());
    return value.get<int64_t>();
}

// The optional field `field` must equal `wanted` (absent counts as `default_value`).
void require_field(const json& config, const char* field, const json& default_value, const json& wanted,
                   const std::string& path, const char* why) {
    const json value = config.contains(field) ? config.at(field) : default_value;
    MP_REQUIRE(value == wanted, path, ": '", field, "' is ", value.dump(), " but minipipe's GPT-2 needs ",
               wanted.dump(), " (", why, ")");
}

// Every tensor of the file, by key without the "transformer." prefix, with the shape GPT-2 stores.
std::map<std::string, Shape> expected_shapes(const GPTConfig& gpt) {
    const int64_t C = gpt.channels;
    std::map<std::string, Shape> shapes = {{"wte.weight", {gpt.vocab, C}}, {"wpe.weight", {gpt.context, C}},
                                           {"ln_f.weight", {C}},          {"ln_f.bias", {C}}};
    for (int64_t l = 0; l < gpt.layers; ++l) {
        const std::string h = "h." + std::to_string(l) + ".";
        shapes[h + "ln_1.weight"] = {C};
        shapes[h + "ln_1.bias"] = {C};
        shapes[h + "attn.c_attn.weight"] = {C, 3 * C};  // Conv1D: [in, out]
        shapes[h + "attn.c_attn.bias"] = {3 * C};
        shapes[h + "attn.c_proj.weight"] = {C, C};
        shapes[h + "attn.c_proj.bias"] = {C};
        shapes[h + "ln_2.weight"] = {C};
        shapes[h + "ln_2.bias"] = {C};
        shapes[h + "mlp.c_fc.weight"] = {C, 4 * C};
        shapes[h + "mlp.c_fc.bias"] = {4 * C};
        shapes[h + "mlp.c_proj.weight"] = {4 * C, C};
        shapes[h + "mlp.c_proj.bias"] = {C};
    }
    return shapes;
}

// "h.<l>.attn.bias" / "h.<l>.attn.masked_bias": the causal-mask buffers older transformers saved.
bool is_dropped_buffer(const std::string& key) {
    if (key.rfind("h.", 0) != 0) return false;
    const size_t dot = key.find('.', 2);
    if (dot == std::string::npos) return false;
    const std::string rest = key.substr(dot + 1);
    return rest == "attn.bias" || rest == "attn.masked_bias";
}

// The file's keys without the prefix, each with its key as stored. A key present both with and
// without the prefix is refused.
std::map<std::string, std::string> keys_without_prefix(const SafetensorsIndex& index) {
    std::map<std::string, std::string> keys;
    const std::string prefix = kPrefix;
    for (const auto& [stored, entry] : index.entries) {
        const std::string key = stored.rfind(prefix, 0) == 0 ? stored.substr(prefix.size()) : stored;
        auto [it, inserted] = keys.emplace(key, stored);
        MP_REQUIRE(inserted, "GPT-2 checkpoint '", index.path, "': '", it->second, "' and '", stored,
                   "' are the same tensor, with and without the '", prefix, "' prefix");
    }
    return keys;
}

// Checks the whole header against the model `hf` describes (the same verdict on every stage).
void check_header(const HfGpt2Config& hf, const SafetensorsIndex& index,
                  const std::map<std::string, std::string>& keys) {
    const std::string where = "GPT-2 checkpoint '" + index.path + "'";
    const std::string sizes = str(" (config.json: n_layer ", hf.gpt.layers, ", n_embd ", hf.gpt.channels,
                                  ", vocab_size ", hf.gpt.vocab, ", n_positions ", hf.gpt.context, ")");
    for (const auto& [key, shape] : expected_shapes(hf.gpt)) {
        auto found = keys.find(key);
        MP_REQUIRE(found != keys.end(), where, ": missing key '", key, "' (or '", kPrefix, key, "'), expected shape ",
                   shape_str(shape), sizes);
        const SafetensorsEntry& entry = index.entries.at(found->second);
        MP_REQUIRE(entry.shape == shape, where, ": key '", found->second, "' has shape ", shape_str(entry.shape),
                   " but the model needs ", shape_str(shape), sizes);
        MP_REQUIRE(entry.dtype == DType::Float32 || entry.dtype == DType::Float64 || entry.dtype == DType::BFloat16,
                   where, ": key '", found->second, "' is ", dtype_name(entry.dtype), ", not a floating-point tensor");
    }
    const std::map<std::string, Shape> expected = expected_shapes(hf.gpt);
    for (const auto& [key, stored] : keys) {
        if (expected.count(key) || is_dropped_buffer(key)) continue;
        if (key == "lm_head.weight") {  // tied: allowed when it is wte (checked where the head loads)
            const SafetensorsEntry& entry = index.entries.at(stored);
            MP_REQUIRE(entry.shape == Shape({hf.gpt.vocab, hf.gpt.channels}), where, ": key '", stored,
                       "' has shape ", shape_str(entry.shape), " but the tied head needs ",
                       shape_str({hf.gpt.vocab, hf.gpt.channels}));
            continue;
        }
        throw std::invalid_argument(str(where, ": unexpected key '", stored, "' (shape ",
                                        shape_str(index.entries.at(stored).shape), "): not part of GPT-2", sizes));
    }
}

// A CPU float32 copy of `tensor` (any floating dtype), transposed when asked (2-D only).
Tensor as_float32(const Tensor& tensor, bool transpose) {
    Tensor value = tensor.dtype() == DType::Float32 ? tensor : tensor.to(DType::Float32);
    if (!transpose) return value;
    MP_REQUIRE(value.dim() == 2, "GPT-2: only a 2-D tensor can be transposed, got ", shape_str(value.shape()));
    const int64_t rows = value.size(0), cols = value.size(1);
    std::vector<float> in = value.to_vector<float>(), out(in.size());
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
            out[static_cast<size_t>(c * rows + r)] = in[static_cast<size_t>(r * cols + c)];
    return Tensor::from_vector(out, {cols, rows});
}

}  // namespace

HfGpt2Config read_hf_gpt2_config(const std::string& init_from) {
    MP_REQUIRE(!init_from.empty(), "model.init_from: the path is empty");
    HfGpt2Config hf;
    if (fs::is_directory(init_from)) {
        hf.config_path = (fs::path(init_from) / "config.json").string();
        hf.weights_path = (fs::path(init_from) / "model.safetensors").string();
    } else {
        MP_REQUIRE(fs::exists(init_from), "model.init_from '", init_from,
                   "' does not exist (give a directory with config.json and model.safetensors, or the "
                   "model.safetensors file)");
        hf.weights_path = init_from;
        const fs::path parent = fs::path(init_from).parent_path();
        hf.config_path = ((parent.empty() ? fs::path(".") : parent) / "config.json").string();
    }
    MP_REQUIRE(fs::is_regular_file(hf.weights_path), "model.init_from '", init_from, "': no weights file '",
               hf.weights_path, "'", fs::exists(fs::path(init_from) / "pytorch_model.bin")
                                         ? " (only model.safetensors is read; pytorch_model.bin is not)"
                                         : "");
    MP_REQUIRE(fs::is_regular_file(hf.config_path), "model.init_from '", init_from, "': no '", hf.config_path,
               "' beside the weights (it gives the model's sizes)");

    std::ifstream in(hf.config_path);
    MP_REQUIRE(in.good(), hf.config_path, ": cannot open");
    std::stringstream text;
    text << in.rdbuf();
    json config;
    try {
        config = json::parse(text.str());
    } catch (const json::parse_error& e) {
        throw std::invalid_argument(str(hf.config_path, ": invalid JSON: ", e.what()));
    }
    const std::string& path = hf.config_path;
    MP_REQUIRE(config.is_object(), path, ": not a JSON object");
    MP_REQUIRE(config.contains("model_type") && config.at("model_type") == "gpt2", path, ": model_type is ",
               config.contains("model_type") ? config.at("model_type").dump() : std::string("missing"),
               "; only \"gpt2\" checkpoints are read");
    if (config.contains("architectures")) {
        const json& architectures = config.at("architectures");
        MP_REQUIRE(architectures.is_array(), path, ": 'architectures' is not a list: ", architectures.dump());
        for (const json& architecture : architectures)
            MP_REQUIRE(architecture == "GPT2LMHeadModel" || architecture == "GPT2Model", path, ": architecture ",
                       architecture.dump(), " is not GPT2LMHeadModel or GPT2Model");
    }
    const json activation = config.value("activation_function", json("gelu_new"));
    MP_REQUIRE(activation == "gelu_new" || activation == "gelu_pytorch_tanh", path, ": activation_function ",
               activation.dump(), " is not the tanh GELU (gelu_new) that minipipe's GPT uses");
    hf.gpt.vocab = positive_int(config, "vocab_size", path);
    hf.gpt.context = positive_int(config, "n_positions", path);
    hf.gpt.layers = positive_int(config, "n_layer", path);
    hf.gpt.heads = positive_int(config, "n_head", path);
    hf.gpt.channels = positive_int(config, "n_embd", path);
    MP_REQUIRE(hf.gpt.channels % hf.gpt.heads == 0, path, ": n_embd ", hf.gpt.channels, " is not divisible by n_head ",
               hf.gpt.heads);
    if (config.contains("n_inner") && !config.at("n_inner").is_null())
        MP_REQUIRE(config.at("n_inner") == 4 * hf.gpt.channels, path, ": n_inner ", config.at("n_inner").dump(),
                   " is not 4 × n_embd = ", 4 * hf.gpt.channels, " (minipipe's MLP is 4 × wide)");
    require_field(config, "tie_word_embeddings", true, true, path, "the head is the token embedding");
    hf.gpt.tie_embeddings = true;
    require_field(config, "add_cross_attention", false, false, path, "no cross-attention");
    require_field(config, "scale_attn_weights", true, true, path, "attention scaled by 1/sqrt(head size)");
    require_field(config, "scale_attn_by_inverse_layer_idx", false, false, path, "no per-layer attention scaling");
    const json eps = config.value("layer_norm_epsilon", json(1e-5));
    MP_REQUIRE(eps.is_number() && eps.get<double>() > 0, path, ": layer_norm_epsilon must be a positive number, got ",
               eps.dump());
    hf.gpt.layer_norm_eps = eps.get<double>();
    return hf;
}

HfKey hf_key_of(const std::string& name) {
    static const std::map<std::string, HfKey> outside_blocks = {
        {"embed.wte", {"wte.weight", false}},      {"embed.wpe", {"wpe.weight", false}},
        {"head.ln_f.weight", {"ln_f.weight", false}}, {"head.ln_f.bias", {"ln_f.bias", false}},
        {"head.weight", {"wte.weight", false}}};
    static const std::map<std::string, HfKey> in_block = {
        {"ln_1.weight", {"ln_1.weight", false}},         {"ln_1.bias", {"ln_1.bias", false}},
        {"attn.qkv.weight", {"attn.c_attn.weight", true}}, {"attn.qkv.bias", {"attn.c_attn.bias", false}},
        {"attn.proj.weight", {"attn.c_proj.weight", true}}, {"attn.proj.bias", {"attn.c_proj.bias", false}},
        {"ln_2.weight", {"ln_2.weight", false}},         {"ln_2.bias", {"ln_2.bias", false}},
        {"mlp.fc.weight", {"mlp.c_fc.weight", true}},     {"mlp.fc.bias", {"mlp.c_fc.bias", false}},
        {"mlp.proj.weight", {"mlp.c_proj.weight", true}}, {"mlp.proj.bias", {"mlp.c_proj.bias", false}}};
    if (auto found = outside_blocks.find(name); found != outside_blocks.end()) return found->second;
    const std::string blocks = "blocks.";
    if (name.rfind(blocks, 0) == 0) {
        const size_t dot = name.find('.', blocks.size());
        if (dot != std::string::npos) {
            const std::string layer = name.substr(blocks.size(), dot - blocks.size());
            auto found = in_block.find(name.substr(dot + 1));
            if (found != in_block.end() && !layer.empty() && layer.find_first_not_of("0123456789") == std::string::npos)
                return {"h." + layer + "." + found->second.key, found->second.transposed};
        }
    }
    throw std::invalid_argument(str("GPT-2: minipipe parameter '", name, "' has no counterpart in a GPT-2 checkpoint"));
}

void load_hf_gpt2(const HfGpt2Config& hf, Module& module) {
    const SafetensorsIndex index = read_safetensors_index(hf.weights_path);
    const std::map<std::string, std::string> keys = keys_without_prefix(index);
    check_header(hf, index, keys);
    for (auto& [name, parameter] : module.named_parameters()) {
        const HfKey where = hf_key_of(name);
        const std::string& stored = keys.at(where.key);
        Tensor value = as_float32(read_safetensors_tensor(index, stored), where.transposed);
        // A padded vocabulary table (GPTConfig::padded_vocab): GPT-2's rows, then zeros.
        if (where.key == "wte.weight" && value.dim() == 2 && parameter.dim() == 2 && parameter.size(0) > value.size(0) &&
            parameter.size(1) == value.size(1))
            value = pad_rows(value, parameter.size(0));
        MP_REQUIRE(value.shape() == parameter.shape(), "GPT-2 checkpoint '", index.path, "': key '", stored, "' gives ",
                   shape_str(value.shape()), where.transposed ? " (transposed)" : "", " but parameter '", name,
                   "' is ", shape_str(parameter.shape()));
        Tensor destination = parameter;  // shares storage with the module's parameter
        destination.copy_from(value.dtype() == parameter.dtype() ? value : value.to(parameter.dtype()));
    }
    // A saved lm_head.weight is accepted only as what the tied head is: wte (checked where the head loads).
    if (keys.count("lm_head.weight") && module.has_parameter("head.weight")) {
        Tensor head = as_float32(read_safetensors_tensor(index, keys.at("lm_head.weight")), false);
        Tensor wte = as_float32(read_safetensors_tensor(index, keys.at("wte.weight")), false);
        MP_REQUIRE(head.to_vector<float>() == wte.to_vector<float>(), "GPT-2 checkpoint '", index.path, "': '",
                   keys.at("lm_head.weight"), "' differs from '", keys.at("wte.weight"),
                   "': an untied head, which minipipe's GPT-2 does not support");
    }
}

void export_hf_gpt2(const std::string& dir, const NamedTensors& whole_model, const GPTConfig& config) {
    MP_REQUIRE(config.tie_embeddings, "export.hf: GPT-2's head is tied to its token embedding; this model's is not "
               "(set model.tie_embeddings = true)");
    NamedTensors tensors;
    std::set<std::string> written;
    for (const auto& [name, parameter] : whole_model) {
        const HfKey where = hf_key_of(name);
        MP_REQUIRE(written.insert(where.key).second, "export.hf: two parameters map to '", where.key, "' (", name,
                   " is the second)");
        Tensor host = parameter.device().is_cpu() ? parameter : parameter.to(Device::cpu());
        // A padded vocabulary table goes out as GPT-2's: its first vocab rows.
        if (where.key == "wte.weight" && host.dim() == 2 && host.size(0) > config.vocab)
            host = host.slice(0, config.vocab).clone();
        tensors.emplace_back(kPrefix + where.key, as_float32(host, where.transposed));
    }
    for (const auto& [key, shape] : expected_shapes(config))
        MP_REQUIRE(written.count(key), "export.hf: the model has no parameter for '", key, "' (shape ",
                   shape_str(shape), "): export the whole model");
    fs::create_directories(dir);
    write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
    json hf_config = {
        {"architectures", {"GPT2LMHeadModel"}},
        {"model_type", "gpt2"},
        {"activation_function", "gelu_new"},
        {"vocab_size", config.vocab},
        {"n_positions", config.context},
        {"n_layer", config.layers},
        {"n_head", config.heads},
        {"n_embd", config.channels},
        {"n_inner", nullptr},
        {"layer_norm_epsilon", config.layer_norm_eps},
        {"tie_word_embeddings", true},
        {"scale_attn_weights", true},
        {"scale_attn_by_inverse_layer_idx", false},
        {"reorder_and_upcast_attn", false},
        {"add_cross_attention", false},
        {"resid_pdrop", config.dropout},  // minipipe drops out on the residual branches only
        {"embd_pdrop", 0.0},
        {"attn_pdrop", 0.0},
        {"initializer_range", 0.02},
        {"bos_token_id", config.vocab - 1},  // GPT-2's <|endoftext|> is its last token (50256)
        {"eos_token_id", config.vocab - 1},
        {"use_cache", true}};
    write_file_atomically((fs::path(dir) / "config.json").string(), hf_config.dump(2) + "\n");
}

}  // namespace mp::nn
