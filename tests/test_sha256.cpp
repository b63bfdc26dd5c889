// SHA-256 (base/sha256.h) against FIPS 180-4's known vectors, and streaming in pieces of every size
// giving the one-shot digest (the block boundary and the 56-byte padding edge are the risky parts).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "base/sha256.h"

using mp::sha256_hex;

TEST(Sha256, KnownVectors) {
    // FIPS 180-4 examples: the empty message, "abc" (one block), and a 56-byte message whose
    // padding spills into a second block.
    EXPECT_EQ(sha256_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_hex("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    EXPECT_EQ(sha256_hex(two_blocks.data(), two_blocks.size()),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const std::string million(1000000, 'a');
    EXPECT_EQ(sha256_hex(million.data(), million.size()),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, StreamingInPiecesEqualsOneShot) {
    std::string message;
    for (int i = 0; i < 300; ++i) message += static_cast<char>('a' + (i * 7) % 26);
    for (size_t length : {0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 300}) {
        const std::string expected = sha256_hex(message.data(), length);
        for (size_t piece : {1, 3, 17, 64, 100}) {
            mp::Sha256 hash;
            for (size_t at = 0; at < length; at += piece) hash.update(message.data() + at, std::min(piece, length - at));
            EXPECT_EQ(hash.hex_digest(), expected) << "length " << length << " piece " << piece;
        }
    }
}
