// Training data for the language-model examples: a token stream with its vocabulary, from
// user text (byte-level), from llm.c / nanoGPT-style uint16 token shards, or from a synthetic
// corpus generated in code (lines of multi-digit additions), plus seeded batch sampling.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mp::nn {

struct TokenDataset {
    std::vector<int32_t> tokens;
    int64_t vocab = 0;
    // Token -> printable text, for samples. Byte-level and synthetic data decode to characters;
    // shard tokens (GPT-2 BPE ids) decode to "<id>" since no tokenizer is bundled.
    std::vector<std::string> token_text;
    std::string description;

    std::string decode(const std::vector<int32_t>& ids) const;
    // Encodes text with this dataset's character vocabulary; throws on an unknown character.
    std::vector<int32_t> encode(const std::string& text) const;
};

// Every byte of the file is a token (vocab 256).
TokenDataset load_text_file(const std::string& path);

// llm.c / nanoGPT shard: a header of 256 int32 (magic 20240520, version 1, token count), then
// count uint16 tokens. A bad magic, version, or a file shorter than the header says is refused
// with a message naming the file. vocab is max token + 1 rounded up to a multiple of 64, or the
// given vocab when positive (then every token must be below it).
TokenDataset load_token_shard(const std::string& path, int64_t vocab = 0);

// Lines "a+b=c\n" with a and b uniform in [0, 10^max_digits), from `seed`; the vocabulary is
// the 13 characters "0123456789+=\n". The structure is learnable, so the loss falls well below
// the uniform guess ln 13 ≈ 2.565.
TokenDataset synthetic_additions(int64_t lines, int max_digits, uint64_t seed);

// A batch of `batch` windows of `time + 1` consecutive tokens starting at positions drawn from
// `gen`: ids = window[0..T), targets = window[1..T]. Both int32 (batch, time) on `device`.
struct Batch {
    Tensor ids, targets;
};
Batch sample_batch(const TokenDataset& data, int64_t batch, int64_t time, Generator& gen, Device device);

}  // namespace mp::nn
