// Dataset loaders (text bytes, uint16 shards, synthetic additions), llm.c's tokenizer file for
// decoding GPT-2 tokens, batch sampling and the fixed evaluation batches.
#include "nn/data.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "kernels/common/counter_rng.h"
#include "nn/additions.h"

namespace mp::nn {

namespace {
// The length of the UTF-8 sequence at text[i] (RFC 3629: no overlong forms, no surrogates, at most
// U+10FFFF), or 0 when the bytes there are not one.
size_t utf8_sequence_length(const std::string& text, size_t i) {
    const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = byte(i);
    size_t length = 0;
    unsigned char low = 0x80, high = 0xBF;  // the range of the second byte
    if (lead < 0x80) return 1;
    if (lead >= 0xC2 && lead <= 0xDF) length = 2;
    else if (lead >= 0xE0 && lead <= 0xEF)
        length = 3, low = lead == 0xE0 ? 0xA0 : 0x80, high = lead == 0xED ? 0x9F : 0xBF;
    else if (lead >= 0xF0 && lead <= 0xF4)
        length = 4, low = lead == 0xF0 ? 0x90 : 0x80, high = lead == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (i + length > text.size() || byte(i + 1) < low || byte(i + 1) > high) return 0;
    for (size_t k = 2; k < length; ++k)
        if ((byte(i + k) & 0xC0) != 0x80) return 0;
    return length;
}

// Valid UTF-8 kept, everything else and control characters (but newline and tab) as '?'.
std::string printable_utf8(const std::string& text) {
    std::string out;
    for (size_t i = 0; i < text.size();) {
        const size_t length = utf8_sequence_length(text, i);
        const unsigned char c = static_cast<unsigned char>(text[i]);
        if (length == 0 || (length == 1 && ((c < 32 && c != '\n' && c != '\t') || c == 127))) {
            out += '?';
            i += 1;
        } else {
            out.append(text, i, length);
            i += length;
        }
    }
    return out;
}
}  // namespace

std::string TokenDataset::decode(const std::vector<int32_t>& ids) const {
    std::string text;
    for (int32_t id : ids) text += (id >= 0 && id < static_cast<int32_t>(token_text.size())) ? token_text[id] : "?";
    return printable_utf8(text);
}

std::vector<int32_t> TokenDataset::encode(const std::string& text) const {
    std::vector<int32_t> ids;
    for (char c : text) {
        auto it = std::find(token_text.begin(), token_text.end(), std::string(1, c));
        MP_REQUIRE(it != token_text.end(), "encode: character '", c, "' is not in the vocabulary of ", description);
        ids.push_back(static_cast<int32_t>(it - token_text.begin()));
    }
    return ids;
}

namespace {
// A directory opens as a stream on Linux and then reads as nothing, and a FIFO blocks the open
// forever: say what it is instead.
void require_regular_file(const char* op, const std::string& path) {
    MP_REQUIRE(!std::filesystem::is_directory(path), op, ": '", path, "' is a directory, not a file");
    MP_REQUIRE(!std::filesystem::exists(path) || std::filesystem::is_regular_file(path), op, ": '", path,
               "' is not a regular file (a FIFO or a device?)");
}
}  // namespace

TokenDataset load_text_file(const std::string& path) {
    require_regular_file("load_text_file", path);
    std::ifstream in(path, std::ios::binary);
    MP_REQUIRE(in.good(), "load_text_file: cannot open '", path, "'");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    MP_REQUIRE(bytes.size() >= 2, "load_text_file: '", path, "' has ", bytes.size(), " bytes; need at least 2");
    TokenDataset data;
    data.vocab = 256;
    for (unsigned char c : bytes) data.tokens.push_back(c);
    for (int b = 0; b < 256; ++b) data.token_text.push_back(b >= 32 && b < 127 ? std::string(1, char(b)) : (b == '\n' ? "\n" : "?"));
    data.description = str("text file '", path, "' (", bytes.size(), " bytes, byte-level vocab 256)");
    return data;
}

TokenDataset load_token_shard(const std::string& path, int64_t vocab) {
    constexpr int32_t kMagic = 20240520;
    constexpr int kHeaderInts = 256;
    require_regular_file("load_token_shard", path);
    std::ifstream in(path, std::ios::binary);
    MP_REQUIRE(in.good(), "load_token_shard: cannot open '", path, "'");
    std::vector<int32_t> header(kHeaderInts);
    in.read(reinterpret_cast<char*>(header.data()), kHeaderInts * sizeof(int32_t));
    MP_REQUIRE(in.gcount() == kHeaderInts * static_cast<std::streamsize>(sizeof(int32_t)), "load_token_shard: '", path,
               "' is shorter than the 1024-byte header (", in.gcount(), " bytes)");
    MP_REQUIRE(header[0] == kMagic, "load_token_shard: '", path, "' has magic ", header[0], ", expected ", kMagic,
               " (not an llm.c token shard)");
    MP_REQUIRE(header[1] == 1, "load_token_shard: '", path, "' has version ", header[1], ", expected 1");
    int64_t count = header[2];
    MP_REQUIRE(count >= 2, "load_token_shard: '", path, "' declares ", count, " tokens; need at least 2");
    // The file must hold exactly what the header declares (llm.c's loader checks the same), and
    // this is checked before anything that size is allocated.
    const std::streamoff header_bytes = in.tellg();
    in.seekg(0, std::ios::end);
    const int64_t data_bytes = static_cast<int64_t>(in.tellg() - header_bytes);
    in.seekg(header_bytes);
    const int64_t available = data_bytes / static_cast<int64_t>(sizeof(uint16_t));
    MP_REQUIRE(available >= count, "load_token_shard: '", path, "' is truncated: the header declares ", count,
               " tokens but only ", available, " follow");
    MP_REQUIRE(data_bytes == count * static_cast<int64_t>(sizeof(uint16_t)), "load_token_shard: '", path,
               "' holds ", data_bytes, " bytes after its header but declares ", count, " tokens (",
               count * static_cast<int64_t>(sizeof(uint16_t)), " bytes): a wrong token count or trailing data");
    std::vector<uint16_t> raw(static_cast<size_t>(count));
    in.read(reinterpret_cast<char*>(raw.data()), count * static_cast<std::streamsize>(sizeof(uint16_t)));
    MP_REQUIRE(in.gcount() == count * static_cast<std::streamsize>(sizeof(uint16_t)), "load_token_shard: '", path,
               "' is truncated: the header declares ", count, " tokens but only ", in.gcount() / 2, " follow");
    TokenDataset data;
    data.tokens.assign(raw.begin(), raw.end());
    int64_t max_token = *std::max_element(raw.begin(), raw.end());
    if (vocab > 0) {
        MP_REQUIRE(max_token < vocab, "load_token_shard: '", path, "' holds token ", max_token,
                   ", outside the vocabulary of ", vocab);
        data.vocab = vocab;
    } else {
        data.vocab = (max_token + 1 + 63) / 64 * 64;
    }
    for (int64_t t = 0; t < data.vocab; ++t) data.token_text.push_back(str("<", t, ">"));
    data.description = str("token shard '", path, "' (", count, " tokens, vocab ", data.vocab, ")");
    return data;
}

TokenVocabulary load_token_vocabulary(const std::string& path) {
    constexpr uint32_t kMagic = 20240328;
    constexpr int kHeaderInts = 256;
    require_regular_file("load_token_vocabulary", path);
    std::ifstream in(path, std::ios::binary);
    MP_REQUIRE(in.good(), "load_token_vocabulary: cannot open '", path, "'");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t header_bytes = kHeaderInts * sizeof(uint32_t);
    MP_REQUIRE(bytes.size() >= header_bytes, "load_token_vocabulary: '", path, "' is shorter than the ",
               header_bytes, "-byte header (", bytes.size(), " bytes)");
    std::vector<uint32_t> header(kHeaderInts);
    std::memcpy(header.data(), bytes.data(), header_bytes);
    MP_REQUIRE(header[0] == kMagic, "load_token_vocabulary: '", path, "' has magic ", header[0], ", expected ", kMagic,
               " (not an llm.c tokenizer file)");
    MP_REQUIRE(header[1] == 1 || header[1] == 2, "load_token_vocabulary: '", path, "' has version ", header[1],
               ", expected 1 or 2");
    const uint32_t size = header[2];
    MP_REQUIRE(size >= 1 && size <= 65536, "load_token_vocabulary: '", path, "' declares ", size,
               " tokens; expected 1 to 65536 (shard tokens are uint16)");
    TokenVocabulary vocabulary;
    vocabulary.path = path;
    // Version 1 files are GPT-2's, whose end-of-text token is 50256; in version 2, 0xFFFFFFFF is none.
    if (header[1] == 2) vocabulary.end_of_text = header[3] == 0xFFFFFFFFu ? -1 : static_cast<int64_t>(header[3]);
    else if (size == 50257) vocabulary.end_of_text = 50256;
    MP_REQUIRE(vocabulary.end_of_text < static_cast<int64_t>(size), "load_token_vocabulary: '", path,
               "' names end-of-text token ", vocabulary.end_of_text, ", outside its ", size, " tokens");
    size_t at = header_bytes;
    for (uint32_t token = 0; token < size; ++token) {
        MP_REQUIRE(at < bytes.size(), "load_token_vocabulary: '", path, "' is truncated: it declares ", size,
                   " tokens but ends after ", token);
        const size_t length = static_cast<unsigned char>(bytes[at++]);
        MP_REQUIRE(length > 0, "load_token_vocabulary: '", path, "': token ", token, " has length 0");
        MP_REQUIRE(at + length <= bytes.size(), "load_token_vocabulary: '", path, "' is truncated inside token ",
                   token, " (", length, " bytes declared, ", bytes.size() - at, " left)");
        vocabulary.token_bytes.push_back(bytes.substr(at, length));
        at += length;
    }
    MP_REQUIRE(at == bytes.size(), "load_token_vocabulary: '", path, "' holds ", bytes.size() - at,
               " bytes after its last token (", size, " declared): a wrong token count or trailing data");
    return vocabulary;
}

void use_vocabulary(TokenDataset& data, const TokenVocabulary& vocabulary) {
    const int64_t size = static_cast<int64_t>(vocabulary.token_bytes.size());
    const auto largest = std::max_element(data.tokens.begin(), data.tokens.end());
    MP_REQUIRE(largest == data.tokens.end() || *largest < size, "the data (", data.description, ") holds token ",
               largest == data.tokens.end() ? 0 : *largest, " but the vocabulary '", vocabulary.path, "' has only ",
               size, " tokens (a shard made with another tokenizer?)");
    data.token_text.resize(static_cast<size_t>(std::max(data.vocab, size)));
    for (int64_t t = 0; t < static_cast<int64_t>(data.token_text.size()); ++t)
        data.token_text[t] = t < size ? vocabulary.token_bytes[t] : str("<", t, ">");
    data.description += str(", decoded by '", vocabulary.path, "'");
}

TokenDataset synthetic_additions(int64_t lines, int max_digits, uint64_t seed) {
    MP_REQUIRE(lines > 0 && max_digits >= 1 && max_digits <= 9, "synthetic_additions: lines ", lines,
               " must be positive and max_digits ", max_digits, " in [1, 9]");
    const std::string alphabet = "0123456789+=\n";
    TokenDataset data;
    data.vocab = static_cast<int64_t>(alphabet.size());
    for (char c : alphabet) data.token_text.push_back(std::string(1, c));
    int64_t limit = 1;
    for (int d = 0; d < max_digits; ++d) limit *= 10;
    std::string text;
    // A held-out pair is drawn again: the demo's accuracy is measured on sums never trained on.
    uint64_t draw = 0;
    for (int64_t i = 0; i < lines; ++i) {
        int64_t a = 0, b = 0;
        do {
            a = static_cast<int64_t>(rng::uniform01(seed, draw++) * limit);
            b = static_cast<int64_t>(rng::uniform01(seed, draw++) * limit);
        } while (is_held_out(a, b));
        text += AdditionProblem{a, b, max_digits}.line();
    }
    data.tokens = data.encode(text);
    data.record_tokens = static_cast<int64_t>(AdditionProblem{0, 0, max_digits}.line().size());
    data.description =
        str("synthetic additions (", lines, " lines of ", max_digits, "-digit sums, zero-padded, vocab 13)");
    return data;
}

Batch sample_batch(const TokenDataset& data, int64_t batch, int64_t time, Generator& gen, Device device) {
    int64_t windows = static_cast<int64_t>(data.tokens.size()) - time;
    MP_REQUIRE(batch > 0 && time > 0, "sample_batch: batch ", batch, " and time ", time, " must be positive");
    MP_REQUIRE(windows >= 1, "sample_batch: ", data.description, " has ", data.tokens.size(),
               " tokens, too few for windows of ", time + 1);
    uint64_t offset = gen.advance(static_cast<uint64_t>(batch));
    std::vector<int32_t> ids(static_cast<size_t>(batch * time)), targets(ids.size());
    for (int64_t b = 0; b < batch; ++b) {
        const double u = rng::uniform01(gen.seed(), offset + b);
        int64_t start = std::min(windows - 1, static_cast<int64_t>(u * windows));
        if (data.record_tokens > 0) {
            const int64_t records = (windows - 1) / data.record_tokens + 1;  // record starts that fit a window
            start = std::min(records - 1, static_cast<int64_t>(u * records)) * data.record_tokens;
        }
        for (int64_t t = 0; t < time; ++t) {
            ids[b * time + t] = data.tokens[start + t];
            targets[b * time + t] = data.tokens[start + t + 1];
        }
    }
    return Batch{Tensor::from_vector(ids, {batch, time}, device), Tensor::from_vector(targets, {batch, time}, device)};
}

int64_t eval_batches_available(const TokenDataset& data, int64_t batch, int64_t time) {
    MP_REQUIRE(batch > 0 && time > 0, "eval_batches_available: batch ", batch, " and time ", time, " must be positive");
    const int64_t tokens = static_cast<int64_t>(data.tokens.size());
    return tokens < 1 ? 0 : (tokens - 1) / (batch * time);
}

Batch eval_batch(const TokenDataset& data, int64_t index, int64_t batch, int64_t time, Device device) {
    const int64_t available = eval_batches_available(data, batch, time);
    MP_REQUIRE(index >= 0 && index < available, "eval_batch: batch ", index, " of ", data.description, " needs ",
               (index + 1) * batch * time + 1, " tokens (", batch, " rows of ", time, " + 1) but it holds ",
               data.tokens.size(), " (", available, " whole batches)");
    std::vector<int32_t> ids(static_cast<size_t>(batch * time)), targets(ids.size());
    for (int64_t b = 0; b < batch; ++b) {
        const int64_t start = (index * batch + b) * time;
        for (int64_t t = 0; t < time; ++t) {
            ids[b * time + t] = data.tokens[start + t];
            targets[b * time + t] = data.tokens[start + t + 1];
        }
    }
    return Batch{Tensor::from_vector(ids, {batch, time}, device), Tensor::from_vector(targets, {batch, time}, device)};
}

}  // namespace mp::nn
