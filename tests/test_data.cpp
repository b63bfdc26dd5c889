// Datasets: byte-level text, llm.c uint16 shards (good and bad headers, truncation), the
// synthetic additions corpus, and batch sampling (targets are ids shifted by one).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>

#include <cstdio>
#include <fstream>

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
