// The parameter checksum (nn/parameter_checksum.h): a streaming SHA-256 (base/sha256.h) fed with a
// length-prefixed, fixed-width little-endian encoding of each tensor, so every host encodes alike.
#include "nn/parameter_checksum.h"

#include <algorithm>
#include <cstdint>

#include "base/error.h"
#include "base/sha256.h"

namespace mp::nn {

namespace {

// Fixed-width little-endian integers, so the encoding is the same on every host.
void update_u64(Sha256& hash, uint64_t value) {
    uint8_t bytes[8];
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i));
    hash.update(bytes, 8);
}

void update_string(Sha256& hash, const std::string& text) {
    update_u64(hash, text.size());
    hash.update(text.data(), text.size());
}

}  // namespace

std::string parameter_checksum(const std::vector<std::pair<std::string, Tensor>>& named) {
    std::vector<const std::pair<std::string, Tensor>*> sorted;
    for (const auto& entry : named) {
        MP_REQUIRE(entry.second.defined(), "parameter_checksum: parameter '", entry.first, "' is an undefined tensor");
        sorted.push_back(&entry);
    }
    std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
    for (size_t i = 1; i < sorted.size(); ++i)
        MP_REQUIRE(sorted[i]->first != sorted[i - 1]->first, "parameter_checksum: the name '", sorted[i]->first,
                   "' appears twice");

    Sha256 hash;
    update_string(hash, "minipipe-parameters-v1");
    update_u64(hash, sorted.size());
    for (const auto* entry : sorted) {
        const Tensor& tensor = entry->second;
        update_string(hash, entry->first);
        update_string(hash, dtype_name(tensor.dtype()));
        update_u64(hash, tensor.shape().size());
        for (int64_t extent : tensor.shape()) update_u64(hash, static_cast<uint64_t>(extent));
        const Tensor host = tensor.device().is_cpu() ? tensor : tensor.to(Device::cpu());
        update_u64(hash, host.nbytes());
        if (host.nbytes() > 0) hash.update(host.raw_data(), host.nbytes());
    }
    return hash.hex_digest();
}

}  // namespace mp::nn
