// Hugging Face GPT-2 checkpoints in and out: config.json and model.safetensors as save_pretrained
// writes them (keys with or without "transformer.", Conv1D weights stored [in, out], no lm_head
// because it is tied to wte), mapped onto minipipe's tied GPT (nn::gpt_spec with tie_embeddings).
#pragma once

#include <cstdint>
#include <string>

#include "nn/models.h"
#include "nn/module.h"
#include "nn/safetensors.h"

namespace mp::nn {

// What a GPT-2 config.json says — the GPT it describes — with where it and the weights are.
struct HfGpt2Config {
    // vocab_size, n_positions, n_layer, n_head, n_embd and layer_norm_epsilon; tied embeddings;
    // GPTConfig's own seed and dropout (a trainer sets its own).
    GPTConfig gpt;
    std::string config_path, weights_path;
};

// `init_from` is a directory holding config.json and model.safetensors (as save_pretrained
// writes it, or a hub snapshot) or the model.safetensors file itself (config.json beside it).
// Refuses, with std::invalid_argument naming the file, the field and its value: a missing file, a
// model_type other than gpt2, architectures other than GPT2LMHeadModel / GPT2Model, an activation
// other than the tanh GELU (gelu_new, gelu_pytorch_tanh), n_inner other than 4·n_embd, an untied
// head, cross-attention, attention scaled by the layer index, and sizes that are not positive.
HfGpt2Config read_hf_gpt2_config(const std::string& init_from);

// Where minipipe's parameter `name` (e.g. "blocks.1.attn.qkv.weight") lives in a GPT-2 file:
// its key without the "transformer." prefix ("h.1.attn.c_attn.weight") and whether it is stored
// transposed (Conv1D: [in, out] against Linear's [out, in]). head.weight, tied, is "wte.weight".
struct HfKey {
    std::string key;
    bool transposed = false;
};
HfKey hf_key_of(const std::string& name);

// Loads every parameter of `module` — any contiguous range of the tied GPT's layers, a pipeline
// stage — from the checkpoint, reading the header and then only that module's tensors. First the
// whole header is checked against the model `hf` describes, so every stage reaches the same
// verdict: every key present with its shape, no unexpected key (attn.bias and attn.masked_bias
// buffers are dropped; an lm_head.weight must equal wte.weight), F32 (F64 and BF16 are converted).
// Refusals are std::invalid_argument naming the file, the key and both shapes.
void load_hf_gpt2(const HfGpt2Config& hf, Module& module);

// Writes `dir`/model.safetensors (keys "transformer.…", Conv1D weights transposed back, float32,
// metadata {"format": "pt"}) and `dir`/config.json for transformers.GPT2LMHeadModel, from the whole
// tied GPT's named parameters (as named_parameters() lists them: embed.wte once).
void export_hf_gpt2(const std::string& dir, const NamedTensors& whole_model, const GPTConfig& config);

}  // namespace mp::nn
