// SHA-256 (FIPS 180-4), streaming: the digest behind the run summary's parameter checksum.
// Generic and dependency-free, so it lives in base/: every layer may use it, it uses nothing.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace mp {

// update() any number of times, then hex_digest() once (it pads and finishes the hash).
class Sha256 {
  public:
    void update(const void* data, size_t size);
    std::string hex_digest();  // 64 lowercase hex digits

  private:
    void compress(const uint8_t* block);

    std::array<uint32_t, 8> state_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::array<uint8_t, 64> block_{};
    size_t block_used_ = 0;
    uint64_t total_bytes_ = 0;
};

// SHA-256 of `size` bytes as 64 lowercase hex digits.
std::string sha256_hex(const void* data, size_t size);

}  // namespace mp
