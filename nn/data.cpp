// Dataset loaders (text bytes, uint16 shards, synthetic additions) and batch sampling.
#include "nn/data.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "kernels/common/counter_rng.h"

namespace mp::nn {

std::string TokenDataset::decode(const std::vector<int32_t>& ids) const {
    std::string text;
    for (int32_t id : ids) text += (id >= 0 && id < static_cast<int32_t>(token_text.size())) ? token_text[id] : "?";
    return text;
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
    for (int64_t i = 0; i < lines; ++i) {
        int64_t a = static_cast<int64_t>(rng::uniform01(seed, 2 * i) * limit);
        int64_t b = static_cast<int64_t>(rng::uniform01(seed, 2 * i + 1) * limit);
        text += str(a, "+", b, "=", a + b, "\n");
    }
    data.tokens = data.encode(text);
    data.description = str("synthetic additions (", lines, " lines of up to ", max_digits, "-digit sums, vocab 13)");
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
        int64_t start = std::min(windows - 1, static_cast<int64_t>(rng::uniform01(gen.seed(), offset + b) * windows));
        for (int64_t t = 0; t < time; ++t) {
            ids[b * time + t] = data.tokens[start + t];
            targets[b * time + t] = data.tokens[start + t + 1];
        }
    }
    return Batch{Tensor::from_vector(ids, {batch, time}, device), Tensor::from_vector(targets, {batch, time}, device)};
}

}  // namespace mp::nn
