// Datasets: byte-level text, llm.c uint16 shards (good and bad headers, truncation), llm.c's
// tokenizer file and decoding, the synthetic additions corpus, batch sampling (targets are ids
// shifted by one), the fixed evaluation batches, and the committed fine-tune fixture shards.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "nn/data.h"
#include "tests/support/test_util.h"

using namespace mp;
using mp::testing::expect_invalid_argument;

namespace {
std::string temp_path(const std::string& name) { return ::testing::TempDir() + "minipipe_" + name; }

void write_shard(const std::string& path, int32_t magic, int32_t version, int32_t declared,
                 const std::vector<uint16_t>& tokens) {
    std::vector<int32_t> header(256, 0);
    header[0] = magic, header[1] = version, header[2] = declared;
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(header.data()), header.size() * 4);
    out.write(reinterpret_cast<const char*>(tokens.data()), tokens.size() * 2);
}
// llm.c's tokenizer file: header (magic, version, size, end-of-text), then length-prefixed tokens.
void write_vocabulary(const std::string& path, const std::vector<std::string>& tokens, uint32_t version = 2,
                      uint32_t end_of_text = 0xFFFFFFFFu, uint32_t magic = 20240328, int64_t declared = -1) {
    std::vector<uint32_t> header(256, 0);
    header[0] = magic, header[1] = version;
    header[2] = declared >= 0 ? static_cast<uint32_t>(declared) : static_cast<uint32_t>(tokens.size());
    header[3] = end_of_text;
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(header.data()), header.size() * 4);
    for (const std::string& token : tokens) {
        out.put(static_cast<char>(token.size()));
        out << token;
    }
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}
}  // namespace

TEST(Data, TextFileIsByteLevel) {
    std::string path = temp_path("text.txt");
    std::ofstream(path) << "hi\n";
    nn::TokenDataset data = nn::load_text_file(path);
    EXPECT_EQ(data.vocab, 256);
    EXPECT_EQ(data.tokens, (std::vector<int32_t>{'h', 'i', '\n'}));
    EXPECT_EQ(data.decode(data.tokens), "hi\n");
    expect_invalid_argument([] { nn::load_text_file("/nonexistent/file.txt"); }, {"cannot open", "/nonexistent/file.txt"});
}

TEST(Data, ShardRoundTripAndVocab) {
    std::string path = temp_path("good.bin");
    write_shard(path, 20240520, 1, 5, {1, 2, 300, 4, 5});
    nn::TokenDataset data = nn::load_token_shard(path);
    EXPECT_EQ(data.tokens, (std::vector<int32_t>{1, 2, 300, 4, 5}));
    EXPECT_EQ(data.vocab, 320);  // 301 rounded up to a multiple of 64
    EXPECT_EQ(nn::load_token_shard(path, 50257).vocab, 50257);
    expect_invalid_argument([&] { nn::load_token_shard(path, 300); }, {"token 300", "vocabulary of 300", path});
}

TEST(Data, BadShardsAreRefusedNamingTheFile) {
    std::string bad_magic = temp_path("bad_magic.bin");
    write_shard(bad_magic, 12345, 1, 3, {1, 2, 3});
    expect_invalid_argument([&] { nn::load_token_shard(bad_magic); }, {bad_magic, "magic 12345", "20240520"});
    std::string bad_version = temp_path("bad_version.bin");
    write_shard(bad_version, 20240520, 2, 3, {1, 2, 3});
    expect_invalid_argument([&] { nn::load_token_shard(bad_version); }, {bad_version, "version 2"});
    std::string truncated = temp_path("truncated.bin");
    write_shard(truncated, 20240520, 1, 10, {1, 2, 3});
    expect_invalid_argument([&] { nn::load_token_shard(truncated); }, {truncated, "truncated", "declares 10 tokens", "only 3"});
    std::string short_header = temp_path("short.bin");
    std::ofstream(short_header) << "tiny";
    expect_invalid_argument([&] { nn::load_token_shard(short_header); }, {short_header, "shorter than the 1024-byte header"});
    // A header declaring 2^31 - 1 tokens over 3: refused from the file's size, before 4 GiB are allocated.
    std::string huge = temp_path("huge.bin");
    write_shard(huge, 20240520, 1, 2147483647, {1, 2, 3});
    expect_invalid_argument([&] { nn::load_token_shard(huge); }, {huge, "truncated", "declares 2147483647 tokens", "only 3"});
}

TEST(Data, ADirectoryOrAFifoIsNamedAsOne) {
    const std::string dir = ::testing::TempDir();
    expect_invalid_argument([&] { nn::load_token_shard(dir); }, {dir, "is a directory, not a file"});
    expect_invalid_argument([&] { nn::load_text_file(dir); }, {dir, "is a directory, not a file"});
    // A FIFO would block the open forever.
    const std::string fifo = temp_path("data.fifo");
    std::remove(fifo.c_str());
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    expect_invalid_argument([&] { nn::load_text_file(fifo); }, {fifo, "not a regular file"});
    expect_invalid_argument([&] { nn::load_token_shard(fifo); }, {fifo, "not a regular file"});
    std::remove(fifo.c_str());
}

// The header's token count must match the file exactly: more data than declared is refused too.
TEST(Data, ShardWithMoreDataThanDeclaredIsRefused) {
    std::string path = temp_path("count_small.bin");
    write_shard(path, 20240520, 1, 3, {1, 2, 3, 4, 5, 6});
    expect_invalid_argument([&] { nn::load_token_shard(path); }, {path, "declares 3 tokens", "trailing data"});
}

// A model vocabulary that covers the data is used as is (never rounded up and then refused).
TEST(Data, ShardWithTheModelsVocabulary) {
    std::string path = temp_path("small_vocab.bin");
    write_shard(path, 20240520, 1, 21, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20});
    EXPECT_EQ(nn::load_token_shard(path, 32).vocab, 32);
    EXPECT_EQ(nn::load_token_shard(path, 21).vocab, 21);
    expect_invalid_argument([&] { nn::load_token_shard(path, 20); }, {"token 20", "vocabulary of 20", path});
}

TEST(Data, SyntheticAdditionsAreCorrectAndDeterministic) {
    nn::TokenDataset data = nn::synthetic_additions(50, 3, 7);
    EXPECT_EQ(data.vocab, 13);
    std::string text = data.decode(data.tokens);
    EXPECT_EQ(text, data.decode(nn::synthetic_additions(50, 3, 7).tokens));
    EXPECT_NE(text, data.decode(nn::synthetic_additions(50, 3, 8).tokens));
    int lines = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        std::string line = text.substr(pos, end - pos);
        long a = 0, b = 0, c = 0;
        ASSERT_EQ(std::sscanf(line.c_str(), "%ld+%ld=%ld", &a, &b, &c), 3) << line;
        EXPECT_EQ(a + b, c) << line;
        EXPECT_LT(a, 1000);
        EXPECT_EQ(line.size(), 12u) << line;  // zero-padded: 3 + 1 + 3 + 1 + 4 characters
        ++lines;
        pos = end + 1;
    }
    EXPECT_EQ(lines, 50);
}

TEST(Data, BatchTargetsAreIdsShiftedByOne) {
    nn::TokenDataset data;
    data.vocab = 1000;
    for (int i = 0; i < 1000; ++i) data.tokens.push_back(i);
    Generator gen(3);
    nn::Batch batch = nn::sample_batch(data, 4, 9, gen, Device::cpu());
    EXPECT_EQ(batch.ids.shape(), (Shape{4, 9}));
    std::vector<int32_t> ids = batch.ids.to_vector<int32_t>(), targets = batch.targets.to_vector<int32_t>();
    for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(targets[i], ids[i] + 1);
    for (int b = 0; b < 4; ++b)
        for (int t = 1; t < 9; ++t) EXPECT_EQ(ids[b * 9 + t], ids[b * 9 + t - 1] + 1);
    nn::TokenDataset tiny;
    tiny.tokens = {1, 2, 3};
    tiny.description = "tiny";
    expect_invalid_argument([&] { nn::sample_batch(tiny, 1, 3, gen, Device::cpu()); }, {"tiny", "3 tokens", "windows of 4"});
}

// GPT-2-style tokens: several bytes each, a space inside, a character split over two tokens.
TEST(Data, VocabularyDecodesTokensToTheirBytes) {
    const std::string path = temp_path("vocab.bin");
    // "é" is C3 A9 in UTF-8: tokens 3 and 4 hold one byte of it each.
    write_vocabulary(path, {"Hello", " world", "\n", "\xC3", "\xA9", "<|endoftext|>"}, 2, 5);
    const nn::TokenVocabulary vocabulary = nn::load_token_vocabulary(path);
    EXPECT_EQ(vocabulary.token_bytes.size(), 6u);
    EXPECT_EQ(vocabulary.end_of_text, 5);
    std::string shard = temp_path("vocab_tokens.bin");
    write_shard(shard, 20240520, 1, 6, {0, 1, 2, 3, 4, 5});
    nn::TokenDataset data = nn::load_token_shard(shard, 8);
    EXPECT_EQ(data.decode({0, 1}), "<0><1>");  // ids until a vocabulary is given
    nn::use_vocabulary(data, vocabulary);
    EXPECT_EQ(data.decode({0, 1, 2, 0}), "Hello world\nHello");
    EXPECT_EQ(data.decode({3, 4}), "\xC3\xA9");         // the two halves make one valid character
    EXPECT_EQ(data.decode({3, 0}), "?Hello");             // half a character is not printed as such
    EXPECT_EQ(data.decode({7}), "<7>");                   // a model id beyond the vocabulary
    // No end-of-text token (0xFFFFFFFF), and version 1 (GPT-2's: 50256 only for 50257 tokens).
    write_vocabulary(path, {"a", "b"});
    EXPECT_EQ(nn::load_token_vocabulary(path).end_of_text, -1);
    write_vocabulary(path, {"a", "b"}, 1);
    EXPECT_EQ(nn::load_token_vocabulary(path).end_of_text, -1);
}

TEST(Data, ControlBytesDecodeAsQuestionMarks) {
    nn::TokenDataset data;
    data.token_text = {"a", std::string(1, '\x01'), "\t", "\xFF", std::string(1, '\x7F')};
    EXPECT_EQ(data.decode({0, 1, 2, 3, 4}), "a?\t??");
}

TEST(Data, BadVocabularyFilesAreRefusedNamingTheValues) {
    const std::string path = temp_path("bad_vocab.bin");
    write_vocabulary(path, {"a"}, 2, 0, 12345);
    expect_invalid_argument([&] { nn::load_token_vocabulary(path); }, {path, "magic 12345", "20240328"});
    write_vocabulary(path, {"a"}, 3);
    expect_invalid_argument([&] { nn::load_token_vocabulary(path); }, {path, "version 3", "1 or 2"});
    write_vocabulary(path, {}, 2);
    expect_invalid_argument([&] { nn::load_token_vocabulary(path); }, {path, "declares 0 tokens"});
    write_vocabulary(path, {"a", "b"}, 2, 0xFFFFFFFFu, 20240328, 3);
    expect_invalid_argument([&] { nn::load_token_vocabulary(path); }, {path, "truncated", "declares 3", "after 2"});
    write_vocabulary(path, {"a", "b"}, 2, 0xFFFFFFFFu, 20240328, 1);
    expect_invalid_argument([&] { nn::load_token_vocabulary(path); }, {path, "2 bytes after its last token"});
    write_vocabulary(path, {"a", ""});
    expect_invalid_argument([&] { nn::load_token_vocabulary(path); }, {path, "token 1 has length 0"});
    write_vocabulary(path, {"a"}, 2, 7);
    expect_invalid_argument([&] { nn::load_token_vocabulary(path); }, {path, "end-of-text token 7", "1 tokens"});
    std::ofstream(path, std::ios::binary | std::ios::trunc) << "short";
    expect_invalid_argument([&] { nn::load_token_vocabulary(path); }, {path, "shorter than the 1024-byte header"});
    expect_invalid_argument([] { nn::load_token_vocabulary("/nonexistent/tok.bin"); }, {"cannot open", "/nonexistent"});
    // A shard holding a token the vocabulary does not have: both named.
    write_vocabulary(path, {"a", "b"});
    const std::string shard = temp_path("beyond_vocab.bin");
    write_shard(shard, 20240520, 1, 3, {0, 1, 5});
    nn::TokenDataset data = nn::load_token_shard(shard, 8);
    expect_invalid_argument([&] { nn::use_vocabulary(data, nn::load_token_vocabulary(path)); },
                            {"token 5", path, "only 2 tokens", shard});
}

// Evaluation batches tile the data from its start: row r of batch b starts at (b · batch + r) · time.
TEST(Data, EvalBatchesTileTheDataInOrder) {
    nn::TokenDataset data;
    data.description = "counting";
    for (int i = 0; i < 50; ++i) data.tokens.push_back(i);
    EXPECT_EQ(nn::eval_batches_available(data, 2, 4), 6);  // (50 - 1) / 8
    for (int64_t b = 0; b < 6; ++b) {
        const nn::Batch batch = nn::eval_batch(data, b, 2, 4, Device::cpu());
        const std::vector<int32_t> ids = batch.ids.to_vector<int32_t>(), targets = batch.targets.to_vector<int32_t>();
        for (int64_t i = 0; i < 8; ++i) {
            EXPECT_EQ(ids[i], b * 8 + i);
            EXPECT_EQ(targets[i], b * 8 + i + 1);
        }
    }
    // The same batch every time it is asked for (no generator involved).
    EXPECT_EQ(nn::eval_batch(data, 3, 2, 4, Device::cpu()).ids.to_vector<int32_t>(),
              nn::eval_batch(data, 3, 2, 4, Device::cpu()).ids.to_vector<int32_t>());
    expect_invalid_argument([&] { nn::eval_batch(data, 6, 2, 4, Device::cpu()); },
                            {"batch 6 of counting", "needs 57 tokens", "holds 50", "6 whole batches"});
    data.tokens.resize(8);
    EXPECT_EQ(nn::eval_batches_available(data, 2, 4), 0);  // 8 tokens: one short of a batch's 9
}

// The fine-tune fixture, written by tools/prepare_data.py --encoding ascii96 from corpus.txt
// (--val-fraction 0.15): the two splits decode through its tokenizer.bin back to the text.
TEST(Data, FineTuneFixtureDecodesToItsCorpus) {
    const std::string dir = std::string(MP_SOURCE_DIR) + "/tests/fixtures/finetune_text/";
    nn::TokenDataset train = nn::load_token_shard(dir + "train.bin", 96);
    nn::TokenDataset val = nn::load_token_shard(dir + "val.bin", 96);
    const nn::TokenVocabulary vocabulary = nn::load_token_vocabulary(dir + "tokenizer.bin");
    EXPECT_EQ(vocabulary.token_bytes.size(), 96u);
    nn::use_vocabulary(train, vocabulary);
    nn::use_vocabulary(val, vocabulary);
    EXPECT_EQ(train.decode(train.tokens) + val.decode(val.tokens), read_file(dir + "corpus.txt"));
    EXPECT_EQ(val.tokens.size(), 652u);
}
