// Run summary: JSON conversion both ways, the write-then-rename writer, and the parameter
// checksum — a streaming SHA-256 (FIPS 180-4) fed with a length-prefixed encoding of each tensor.
#include "pipeline/summary.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <type_traits>

#include "kernels/common/error.h"

namespace mp::pipeline {

namespace {

// ---- SHA-256, streaming: update() any number of times, then hex_digest() once.
class Sha256 {
  public:
    void update(const void* data, size_t size) {
        const auto* bytes = static_cast<const uint8_t*>(data);
        total_bytes_ += size;
        while (size > 0) {
            const size_t take = std::min(size, block_.size() - block_used_);
            std::memcpy(block_.data() + block_used_, bytes, take);
            block_used_ += take;
            bytes += take;
            size -= take;
            if (block_used_ == block_.size()) {
                compress(block_.data());
                block_used_ = 0;
            }
        }
    }

    std::string hex_digest() {
        const uint64_t total_bits = total_bytes_ * 8;
        const uint8_t one_bit = 0x80;
        update(&one_bit, 1);
        const uint8_t zero = 0;
        while (block_used_ != 56) update(&zero, 1);
        uint8_t length[8];
        for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(total_bits >> (56 - 8 * i));
        update(length, 8);  // completes the last block
        std::string hex;
        const char* digits = "0123456789abcdef";
        for (uint32_t word : state_)
            for (int shift = 28; shift >= 0; shift -= 4) hex += digits[(word >> shift) & 0xf];
        return hex;
    }

  private:
    static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

    void compress(const uint8_t* block) {
        static const uint32_t k[64] = {
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
            0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
            0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
            0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
            0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
            0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
            0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
        uint32_t w[64];
        for (int i = 0; i < 16; ++i)
            w[i] = (uint32_t(block[4 * i]) << 24) | (uint32_t(block[4 * i + 1]) << 16) |
                   (uint32_t(block[4 * i + 2]) << 8) | uint32_t(block[4 * i + 3]);
        for (int i = 16; i < 64; ++i) {
            const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
        uint32_t e = state_[4], f = state_[5], g = state_[6], h = state_[7];
        for (int i = 0; i < 64; ++i) {
            const uint32_t sum1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
            const uint32_t choose = (e & f) ^ (~e & g);
            const uint32_t t1 = h + sum1 + choose + k[i] + w[i];
            const uint32_t sum0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
            const uint32_t majority = (a & b) ^ (a & c) ^ (b & c);
            const uint32_t t2 = sum0 + majority;
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        state_[0] += a, state_[1] += b, state_[2] += c, state_[3] += d;
        state_[4] += e, state_[5] += f, state_[6] += g, state_[7] += h;
    }

    std::array<uint32_t, 8> state_ = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                      0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    std::array<uint8_t, 64> block_{};
    size_t block_used_ = 0;
    uint64_t total_bytes_ = 0;
};

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

// ---- JSON reading with errors that name the field.
const nlohmann::json& field(const nlohmann::json& json, const char* name) {
    MP_REQUIRE(json.is_object(), "run_summary_from_json: expected an object, got ", json.type_name());
    MP_REQUIRE(json.contains(name), "run_summary_from_json: missing field '", name, "'");
    return json.at(name);
}

// A number, or null for a value that was NaN / infinite when written.
double read_double(const nlohmann::json& json, const char* name) {
    const nlohmann::json& value = field(json, name);
    if (value.is_null()) return std::numeric_limits<double>::quiet_NaN();
    MP_REQUIRE(value.is_number(), "run_summary_from_json: field '", name, "' is ", value.type_name(), ", not a number");
    return value.get<double>();
}

template <typename T>
std::vector<T> read_numbers(const nlohmann::json& json, const char* name) {
    const nlohmann::json& value = field(json, name);
    MP_REQUIRE(value.is_array(), "run_summary_from_json: field '", name, "' is ", value.type_name(), ", not an array");
    std::vector<T> numbers;
    for (const nlohmann::json& element : value) {
        if (element.is_null() && std::numeric_limits<T>::has_quiet_NaN) {
            numbers.push_back(std::numeric_limits<T>::quiet_NaN());
            continue;
        }
        MP_REQUIRE(element.is_number() && (std::is_floating_point<T>::value || element.is_number_unsigned()),
                   "run_summary_from_json: field '", name, "' holds ", element.dump(), ", not a ",
                   std::is_floating_point<T>::value ? "number" : "non-negative integer");
        numbers.push_back(element.get<T>());
    }
    return numbers;
}

}  // namespace

nlohmann::json to_json(const RunSummary& summary) {
    nlohmann::json json;
    json["format"] = "minipipe-run-summary";
    json["version"] = 1;
    json["final_loss"] = summary.final_loss;
    json["val_loss"] = summary.val_losses.empty() ? nlohmann::json() : nlohmann::json(summary.val_losses.back().second);
    json["val_losses"] = nlohmann::json::array();
    for (const auto& [step, loss] : summary.val_losses)
        json["val_losses"].push_back({{"step", step}, {"loss", loss}});
    json["accuracy"] =
        summary.accuracies.empty() ? nlohmann::json() : nlohmann::json(summary.accuracies.back().accuracy());
    json["accuracies"] = nlohmann::json::array();
    for (const HeldOutAccuracy& a : summary.accuracies)
        json["accuracies"].push_back({{"step", a.step}, {"correct", a.correct}, {"total", a.total},
                                      {"accuracy", a.accuracy()}});
    json["tokens_per_second"] = summary.tokens_per_second;
    json["samples_per_second"] = summary.samples_per_second;
    json["bubble_per_stage"] = summary.bubble_per_stage;
    json["peak_memory_per_stage"] = summary.peak_memory_per_stage;
    json["peak_stash_per_stage"] = summary.peak_stash_per_stage;
    json["parameter_checksum"] = summary.parameter_checksum;
    json["steps"] = summary.steps;
    json["config"] = summary.config;
    return json;
}

RunSummary run_summary_from_json(const nlohmann::json& json) {
    RunSummary summary;
    summary.final_loss = read_double(json, "final_loss");
    if (json.contains("val_losses")) {
        const nlohmann::json& evaluations = json.at("val_losses");
        MP_REQUIRE(evaluations.is_array(), "run_summary_from_json: field 'val_losses' is ", evaluations.type_name(),
                   ", not an array");
        for (const nlohmann::json& evaluation : evaluations) {
            const bool has_step = evaluation.is_object() && evaluation.contains("step");
            MP_REQUIRE(has_step && evaluation.at("step").is_number_integer(),
                       "run_summary_from_json: field 'val_losses' holds ", evaluation.dump(),
                       ", not {\"step\": integer, \"loss\": number}");
            summary.val_losses.emplace_back(evaluation.at("step").get<int64_t>(), read_double(evaluation, "loss"));
        }
    }
    if (json.contains("accuracies")) {
        const nlohmann::json& scores = json.at("accuracies");
        MP_REQUIRE(scores.is_array(), "run_summary_from_json: field 'accuracies' is ", scores.type_name(),
                   ", not an array");
        for (const nlohmann::json& score : scores) {
            bool integers = score.is_object();
            for (const char* key : {"step", "correct", "total"})
                integers = integers && score.contains(key) && score.at(key).is_number_integer();
            MP_REQUIRE(integers, "run_summary_from_json: field 'accuracies' holds ", score.dump(),
                       ", not {\"step\", \"correct\", \"total\": integers}");
            summary.accuracies.push_back({score.at("step").get<int64_t>(), score.at("correct").get<int64_t>(),
                                          score.at("total").get<int64_t>()});
        }
    }
    summary.tokens_per_second = read_double(json, "tokens_per_second");
    summary.samples_per_second = read_double(json, "samples_per_second");
    summary.bubble_per_stage = read_numbers<double>(json, "bubble_per_stage");
    summary.peak_memory_per_stage = read_numbers<size_t>(json, "peak_memory_per_stage");
    summary.peak_stash_per_stage = read_numbers<size_t>(json, "peak_stash_per_stage");
    const nlohmann::json& checksum = field(json, "parameter_checksum");
    MP_REQUIRE(checksum.is_string(), "run_summary_from_json: field 'parameter_checksum' is ", checksum.type_name(),
               ", not a string");
    summary.parameter_checksum = checksum.get<std::string>();
    const nlohmann::json& steps = field(json, "steps");
    MP_REQUIRE(steps.is_number_integer(), "run_summary_from_json: field 'steps' is ", steps.dump(), ", not an integer");
    summary.steps = steps.get<int64_t>();
    summary.config = field(json, "config");
    return summary;
}

void write_summary(const RunSummary& summary, const std::string& path) {
    const std::string text = to_json(summary).dump(2) + "\n";
    const std::string temporary = path + ".tmp";
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        MP_REQUIRE(out.good(), "write_summary: cannot open '", temporary, "' for writing (summary for '", path, "')");
        out << text;
        out.close();
        if (!out.good()) {
            std::remove(temporary.c_str());
            MP_REQUIRE(false, "write_summary: writing '", temporary, "' failed (summary for '", path, "')");
        }
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
        const std::string reason = std::strerror(errno);
        std::remove(temporary.c_str());
        MP_REQUIRE(false, "write_summary: cannot rename '", temporary, "' to '", path, "': ", reason);
    }
}

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

std::string sha256_hex(const void* data, size_t size) {
    Sha256 hash;
    hash.update(data, size);
    return hash.hex_digest();
}

}  // namespace mp::pipeline
