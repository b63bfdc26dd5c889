// Training data for the language-model examples: a token stream with its vocabulary, from
// user text (byte-level), from llm.c / nanoGPT-style uint16 token shards (with llm.c's tokenizer
// file to print GPT-2 tokens as text), or from a synthetic corpus generated in code (lines of
// multi-digit additions), plus seeded batch sampling and the fixed batches of an evaluation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace mp::nn {

struct TokenDataset {
    std::vector<int32_t> tokens;
    int64_t vocab = 0;
    // Token -> its text, for samples. Byte-level and synthetic data decode to characters; shard
    // tokens (GPT-2 BPE ids) to "<id>", or to their bytes once a vocabulary is given (use_vocabulary).
    std::vector<std::string> token_text;
    std::string description;
    // Records of a fixed length (the zero-padded additions' lines): sample_batch's windows then start
    // at a record, so each digit keeps its position within the window. 0 = any start.
    int64_t record_tokens = 0;

    // The tokens' texts joined, made printable: bytes that are not valid UTF-8 (a BPE token may
    // end inside a character) and control characters other than newline and tab become '?'.
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

// llm.c's tokenizer file (tools/prepare_data.py writes one; llm.c's gpt2_tokenizer.bin is one): a
// header of 256 uint32 (magic 20240328, version 1 or 2, vocabulary size, and for version 2 the
// end-of-text token), then per token one length byte (1..255) and that many bytes. Decoding only.
struct TokenVocabulary {
    std::vector<std::string> token_bytes;  // [token id]
    int64_t end_of_text = -1;              // -1: none given
    std::string path;
};
// Refused with std::invalid_argument naming the file and the values: a bad magic or version, a
// vocabulary size of 0 or above 65536 (shard tokens are uint16), a zero length, a truncated file,
// bytes after the last token.
TokenVocabulary load_token_vocabulary(const std::string& path);

// Makes `data` decode through `vocabulary`. Every token of the data must lie inside the vocabulary
// (refused naming the token, the vocabulary's size and both files otherwise); ids beyond the
// vocabulary that a model may still generate decode to "<id>".
void use_vocabulary(TokenDataset& data, const TokenVocabulary& vocabulary);

// Lines "a+b=c\n" with a and b uniform in [0, 10^max_digits), zero-padded to a fixed width
// ("07+25=032\n", nn/additions.h: AdditionProblem), from `seed`, leaving out the
// held-out pairs (nn/additions.h: is_held_out); the vocabulary is the 13 characters
// "0123456789+=\n". The structure is learnable, so the loss falls well below the uniform guess
// ln 13 ≈ 2.565.
TokenDataset synthetic_additions(int64_t lines, int max_digits, uint64_t seed);

// A batch of `batch` windows of `time + 1` consecutive tokens starting at positions drawn from
// `gen` (at record starts when data.record_tokens > 0): ids = window[0..T),
// targets = window[1..T]. Both int32 (batch, time) on `device`.
struct Batch {
    Tensor ids, targets;
};
Batch sample_batch(const TokenDataset& data, int64_t batch, int64_t time, Generator& gen, Device device);

// Evaluation reads fixed batches, the same at every evaluation and on every rank: batch `index` is
// `batch` windows of `time + 1` tokens, row r starting at token (index · batch + r) · time, so the
// batches tile the data from its start without overlap (consecutive windows share one token, the
// last target of one being the first input of the next). Refused when the data is too short.
Batch eval_batch(const TokenDataset& data, int64_t index, int64_t batch, int64_t time, Device device);
// How many evaluation batches `data` holds: (tokens − 1) / (batch · time).
int64_t eval_batches_available(const TokenDataset& data, int64_t batch, int64_t time);

}  // namespace mp::nn
