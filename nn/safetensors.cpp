// safetensors encoding and decoding (the header JSON via nlohmann/json), with the validation a
// checkpoint reader needs before it trusts any offset, and the atomic file write (temporary
// file, fsync, rename, fsync of the directory) that every checkpoint file goes through.
#include "nn/safetensors.h"
#include "base/json_limits.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <nlohmann/json.hpp>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.cpp writes tensor memory as is: it assumes a little-endian host"
#endif

namespace mp::nn {

namespace {

using json = nlohmann::json;

constexpr const char* kMetadataKey = "__metadata__";
constexpr size_t kHeaderLengthBytes = 8;
constexpr size_t kHeaderAlignment = 8;

// The dtypes this reader maps; any other safetensors dtype (F16, I64, ...) is refused.
bool dtype_from_safetensors_name(const std::string& name, DType& dtype) {
    if (name == "F32") dtype = DType::Float32;
    else if (name == "F64") dtype = DType::Float64;
    else if (name == "I32") dtype = DType::Int32;
    else if (name == "BF16") dtype = DType::BFloat16;
    else return false;
    return true;
}

std::string system_reason() { return std::strerror(errno); }

// The directory part of a path ("." for a bare file name), for the fsync after a rename.
std::string parent_directory(const std::string& path) {
    size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

// A tensor's bytes on the CPU: the tensor itself when it already lives there, else a copy.
Tensor on_cpu(const Tensor& tensor) { return tensor.device().is_cpu() ? tensor : tensor.to(Device::cpu()); }

// Checks the names and builds the header: (padded header JSON, tensors in layout order).
std::pair<std::string, std::vector<std::pair<std::string, Tensor>>> build_header(const NamedTensors& tensors,
                                                                                 const SafetensorsMetadata& metadata) {
    std::vector<std::pair<std::string, Tensor>> sorted(tensors.begin(), tensors.end());
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t i = 0; i < sorted.size(); ++i) {
        const std::string& name = sorted[i].first;
        MP_REQUIRE(!name.empty(), "safetensors: a tensor has an empty name");
        MP_REQUIRE(name != kMetadataKey, "safetensors: '", kMetadataKey, "' is reserved and cannot name a tensor");
        MP_REQUIRE(i == 0 || sorted[i - 1].first != name, "safetensors: tensor name '", name, "' appears twice");
        MP_REQUIRE(sorted[i].second.defined(), "safetensors: tensor '", name, "' is undefined");
    }
    json header = json::object();  // std::map underneath: keys come out sorted
    if (!metadata.empty()) header[kMetadataKey] = metadata;
    uint64_t offset = 0;
    for (const auto& [name, tensor] : sorted) {
        uint64_t end = offset + tensor.nbytes();
        header[name] = {{"dtype", safetensors_dtype_name(tensor.dtype())},
                        {"shape", tensor.shape()},
                        {"data_offsets", {offset, end}}};
        offset = end;
    }
    std::string text = header.dump();
    // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
    size_t padded = (text.size() + kHeaderAlignment - 1) / kHeaderAlignment * kHeaderAlignment;
    text.append(padded - text.size(), ' ');
    return {text, sorted};
}

void produce_safetensors(const NamedTensors& tensors, const SafetensorsMetadata& metadata, const ByteSink& sink) {
    auto [header, sorted] = build_header(tensors, metadata);
    unsigned char length_bytes[kHeaderLengthBytes];
    uint64_t length = header.size();
    for (size_t i = 0; i < kHeaderLengthBytes; ++i) length_bytes[i] = static_cast<unsigned char>(length >> (8 * i));
    sink(length_bytes, kHeaderLengthBytes);
    sink(header.data(), header.size());
    for (const auto& [name, tensor] : sorted) {
        if (tensor.nbytes() == 0) continue;
        Tensor host = on_cpu(tensor);
        sink(host.raw_data(), host.nbytes());
    }
}

// One header entry, validated field by field.
struct HeaderEntry {
    std::string name;
    DType dtype = DType::Float32;
    Shape shape;
    uint64_t begin = 0, end = 0;
};

HeaderEntry parse_entry(const std::string& name, const json& value, const std::string& source) {
    const std::string where = "safetensors file '" + source + "': tensor '" + name + "'";
    MP_REQUIRE(value.is_object(), where, ": header entry is not a JSON object");
    for (const auto& item : value.items())
        MP_REQUIRE(item.key() == "dtype" || item.key() == "shape" || item.key() == "data_offsets", where,
                   ": unknown header field '", item.key(), "'");
    MP_REQUIRE(value.contains("dtype") && value.contains("shape") && value.contains("data_offsets"), where,
               ": header entry needs dtype, shape and data_offsets");
    HeaderEntry entry;
    entry.name = name;

    const json& dtype = value["dtype"];
    MP_REQUIRE(dtype.is_string(), where, ": dtype is not a string");
    MP_REQUIRE(dtype_from_safetensors_name(dtype.get<std::string>(), entry.dtype), where, ": unknown dtype '",
               dtype.get<std::string>(), "' (this reader knows F32, F64, I32, BF16)");

    const json& shape = value["shape"];
    MP_REQUIRE(shape.is_array(), where, ": shape is not an array");
    uint64_t numel = 1;
    for (const json& extent : shape) {
        MP_REQUIRE(extent.is_number_unsigned(), where, ": shape ", abbreviated(shape), " has an entry that is not a non-negative integer");
        uint64_t size = extent.get<uint64_t>();
        MP_REQUIRE(size <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                       (size == 0 || numel <= std::numeric_limits<uint64_t>::max() / 16 / size),
                   where, ": shape ", abbreviated(shape), " overflows");
        numel *= size;
        entry.shape.push_back(static_cast<int64_t>(size));
    }

    const json& offsets = value["data_offsets"];
    MP_REQUIRE(offsets.is_array() && offsets.size() == 2 && offsets[0].is_number_unsigned() &&
                   offsets[1].is_number_unsigned(),
               where, ": data_offsets ", abbreviated(offsets), " is not a pair of non-negative integers");
    entry.begin = offsets[0].get<uint64_t>();
    entry.end = offsets[1].get<uint64_t>();
    MP_REQUIRE(entry.begin <= entry.end, where, ": data_offsets [", entry.begin, ", ", entry.end, "] end before they begin");
    uint64_t expected_bytes = numel * dtype_size(entry.dtype);
    MP_REQUIRE(entry.end - entry.begin == expected_bytes, where, ": data_offsets [", entry.begin, ", ", entry.end,
               "] hold ", entry.end - entry.begin, " bytes, but ", dtype.get<std::string>(), " shape ",
               shape_str(entry.shape), " needs ", expected_bytes);
    return entry;
}

// Parses the header JSON, refusing duplicate keys at any level (nlohmann would keep the last).
json parse_header_json(const std::string& text, const std::string& source) {
    std::vector<std::set<std::string>> keys_per_open_object;
    std::string duplicate;
    auto track_keys = [&](int depth, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::object_start || event == json::parse_event_t::array_start)
            MP_REQUIRE(depth < kMaxJsonDepth, "safetensors file '", source, "': header nested deeper than ",
                       kMaxJsonDepth, " levels (a valid header is 3 deep)");
        if (event == json::parse_event_t::object_start) keys_per_open_object.emplace_back();
        else if (event == json::parse_event_t::object_end && !keys_per_open_object.empty()) keys_per_open_object.pop_back();
        else if (event == json::parse_event_t::key && !keys_per_open_object.empty() && parsed.is_string())
            if (!keys_per_open_object.back().insert(parsed.get<std::string>()).second && duplicate.empty())
                duplicate = parsed.get<std::string>();
        return true;
    };
    json header;
    try {
        header = json::parse(text, track_keys);
    } catch (const json::parse_error& e) {
        throw std::invalid_argument(str("safetensors file '", source, "': header is not valid JSON: ", e.what()));
    }
    MP_REQUIRE(duplicate.empty(), "safetensors file '", source, "': header has the key '", duplicate, "' twice");
    MP_REQUIRE(header.is_object(), "safetensors file '", source, "': header is not a JSON object");
    return header;
}

}  // namespace

std::string safetensors_dtype_name(DType dtype) {
    switch (dtype) {
        case DType::Float32: return "F32";
        case DType::Float64: return "F64";
        case DType::Int32: return "I32";
        case DType::BFloat16: return "BF16";
    }
    throw std::invalid_argument(str("safetensors: dtype ", dtype_name(dtype), " is not supported"));
}

std::string encode_safetensors(const NamedTensors& tensors, const SafetensorsMetadata& metadata) {
    std::string bytes;
    produce_safetensors(tensors, metadata, [&](const void* data, size_t size) {
        bytes.append(static_cast<const char*>(data), size);
    });
    return bytes;
}

namespace {

// The header length (the first 8 bytes), checked against the bytes that follow it.
uint64_t header_length_of(const unsigned char* first_bytes, uint64_t file_bytes, const std::string& source) {
    MP_REQUIRE(file_bytes >= kHeaderLengthBytes, "safetensors file '", source, "' is truncated: ", file_bytes,
               " bytes, fewer than the 8-byte header length");
    uint64_t header_length = 0;
    for (size_t i = 0; i < kHeaderLengthBytes; ++i) header_length |= static_cast<uint64_t>(first_bytes[i]) << (8 * i);
    const uint64_t after_length = file_bytes - kHeaderLengthBytes;
    MP_REQUIRE(header_length <= after_length, "safetensors file '", source, "': header length ", header_length,
               " exceeds the ", after_length, " bytes that follow it (truncated file or corrupt header length)");
    MP_REQUIRE(header_length <= kSafetensorsMaxHeaderBytes, "safetensors file '", source, "': header length ",
               header_length, " exceeds the limit of ", kSafetensorsMaxHeaderBytes, " bytes (corrupt header length)");
    return header_length;
}

// Parses and validates the header text against a data section of `data_bytes`: every entry, and
// the entries tiling the data section exactly (so a truncated file is refused from its size alone).
SafetensorsIndex parse_index(const std::string& header_text, uint64_t data_start, uint64_t data_bytes,
                             const std::string& source) {
    MP_REQUIRE(header_text.size() >= 2 && header_text[0] == '{', "safetensors file '", source,
               "': header does not start with '{' (corrupt header length or not a safetensors file)");
    json header = parse_header_json(header_text, source);
    SafetensorsIndex index;
    index.path = source;
    index.data_start = data_start;
    std::vector<HeaderEntry> entries;
    for (const auto& item : header.items()) {
        if (item.key() == kMetadataKey) {
            MP_REQUIRE(item.value().is_object(), "safetensors file '", source, "': __metadata__ is not a JSON object");
            for (const auto& field : item.value().items()) {
                MP_REQUIRE(field.value().is_string(), "safetensors file '", source, "': __metadata__ value of '",
                           field.key(), "' is not a string");
                index.metadata[field.key()] = field.value().get<std::string>();
            }
            continue;
        }
        entries.push_back(parse_entry(item.key(), item.value(), source));
        const HeaderEntry& entry = entries.back();
        MP_REQUIRE(entry.end <= data_bytes, "safetensors file '", source, "': tensor '", entry.name, "' data_offsets [",
                   entry.begin, ", ", entry.end, "] lie beyond the data section's ", data_bytes, " bytes (truncated file?)");
    }

    // The data section must be tiled exactly: sorted by offset, each tensor starts where the
    // previous one ended, and the last one ends at the end of the file.
    std::vector<const HeaderEntry*> by_offset;
    for (const HeaderEntry& entry : entries) by_offset.push_back(&entry);
    std::sort(by_offset.begin(), by_offset.end(), [](const HeaderEntry* a, const HeaderEntry* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t covered = 0;
    const HeaderEntry* previous = nullptr;
    for (const HeaderEntry* entry : by_offset) {
        MP_REQUIRE(entry->begin >= covered, "safetensors file '", source, "': tensor '", entry->name, "' data_offsets [",
                   entry->begin, ", ", entry->end, "] overlap tensor '", previous ? previous->name : "", "' ending at ",
                   covered);
        MP_REQUIRE(entry->begin == covered, "safetensors file '", source, "': gap in the data section: tensor '",
                   entry->name, "' begins at ", entry->begin, " but the data before it ends at ", covered);
        covered = entry->end;
        previous = entry;
    }
    MP_REQUIRE(covered == data_bytes, "safetensors file '", source, "': the data section has ", data_bytes,
               " bytes but the tensors cover ", covered, " (trailing bytes)");
    for (const HeaderEntry& entry : entries)
        index.entries.emplace(entry.name,
                              SafetensorsEntry{entry.name, entry.dtype, entry.shape, entry.begin, entry.end});
    return index;
}

}  // namespace

SafetensorsContents decode_safetensors(const std::string& bytes, const std::string& source) {
    const uint64_t header_length =
        header_length_of(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), source);
    const uint64_t data_start = kHeaderLengthBytes + header_length;
    SafetensorsIndex index =
        parse_index(bytes.substr(kHeaderLengthBytes, header_length), data_start, bytes.size() - data_start, source);
    SafetensorsContents contents;
    contents.metadata = index.metadata;
    for (const auto& [name, entry] : index.entries) {
        Tensor tensor = Tensor::empty(entry.shape, entry.dtype);
        if (tensor.nbytes() > 0) std::memcpy(tensor.raw_data(), bytes.data() + data_start + entry.begin, tensor.nbytes());
        contents.tensors.emplace(name, tensor);
    }
    return contents;
}

SafetensorsIndex read_safetensors_index(const std::string& path) {
    if (std::filesystem::exists(path) && !std::filesystem::is_regular_file(path))
        throw RuntimeError(str("cannot read '", path, "': it is ",
                               std::filesystem::is_directory(path) ? "a directory" : "not a regular file"));
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw RuntimeError(str("cannot open '", path, "' for reading: ", system_reason()));
    const std::streamoff size = in.tellg();
    if (size < 0) throw RuntimeError(str("cannot determine the size of '", path, "'"));
    const uint64_t file_bytes = static_cast<uint64_t>(size);
    unsigned char length_bytes[kHeaderLengthBytes] = {};
    in.seekg(0);
    if (file_bytes >= kHeaderLengthBytes && !in.read(reinterpret_cast<char*>(length_bytes), kHeaderLengthBytes))
        throw RuntimeError(str("cannot read the header length of '", path, "'"));
    const uint64_t header_length = header_length_of(length_bytes, file_bytes, path);
    std::string header(static_cast<size_t>(header_length), '\0');
    if (header_length > 0 && !in.read(header.data(), static_cast<std::streamsize>(header_length)))
        throw RuntimeError(str("cannot read the ", header_length, "-byte header of '", path, "'"));
    const uint64_t data_start = kHeaderLengthBytes + header_length;
    return parse_index(header, data_start, file_bytes - data_start, path);
}

Tensor read_safetensors_tensor(const SafetensorsIndex& index, const std::string& name) {
    auto found = index.entries.find(name);
    MP_REQUIRE(found != index.entries.end(), "safetensors file '", index.path, "' has no tensor '", name, "'");
    const SafetensorsEntry& entry = found->second;
    Tensor tensor = Tensor::empty(entry.shape, entry.dtype);
    if (tensor.nbytes() == 0) return tensor;
    std::ifstream in(index.path, std::ios::binary);
    if (!in) throw RuntimeError(str("cannot open '", index.path, "' for reading: ", system_reason()));
    in.seekg(static_cast<std::streamoff>(index.data_start + entry.begin));
    if (!in.read(static_cast<char*>(tensor.raw_data()), static_cast<std::streamsize>(tensor.nbytes())))
        throw RuntimeError(str("cannot read tensor '", name, "' (", tensor.nbytes(), " bytes at offset ",
                               index.data_start + entry.begin, ") of '", index.path, "': the file changed since its "
                               "header was read?"));
    return tensor;
}

void write_safetensors(const std::string& path, const NamedTensors& tensors, const SafetensorsMetadata& metadata) {
    // Header checks happen before the temporary file is created, so bad input leaves no trace.
    build_header(tensors, metadata);
    write_file_atomically(path, [&](const ByteSink& sink) { produce_safetensors(tensors, metadata, sink); });
}

SafetensorsContents read_safetensors(const std::string& path) { return decode_safetensors(read_file_bytes(path), path); }

std::string read_file_bytes(const std::string& path) {
    if (std::filesystem::exists(path) && !std::filesystem::is_regular_file(path))
        throw RuntimeError(str("cannot read '", path, "': it is ",
                               std::filesystem::is_directory(path) ? "a directory" : "not a regular file"));
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw RuntimeError(str("cannot open '", path, "' for reading: ", system_reason()));
    std::streamoff size = in.tellg();
    if (size < 0) throw RuntimeError(str("cannot determine the size of '", path, "'"));
    std::string bytes(static_cast<size_t>(size), '\0');
    in.seekg(0);
    if (size > 0 && !in.read(bytes.data(), size)) throw RuntimeError(str("cannot read ", size, " bytes of '", path, "'"));
    return bytes;
}

// Removes "<path>.tmp.<pid>" files that a killed earlier write of `path` left behind. One writer
// owns each path at a time (each rank writes its own stage file), so every such file is stale.
void remove_stale_temporaries(const std::string& path) {
    const std::filesystem::path target(path);
    const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
    const std::string prefix = target.filename().string() + ".tmp.";
    std::error_code error;
    for (std::filesystem::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
        const std::string name = it->path().filename().string();
        if (name.compare(0, prefix.size(), prefix) == 0) std::filesystem::remove(it->path(), error);
    }
}

void write_file_atomically(const std::string& path, const std::function<void(const ByteSink& sink)>& produce) {
    remove_stale_temporaries(path);
    const std::string temporary = path + ".tmp." + std::to_string(::getpid());
    int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw RuntimeError(str("cannot create '", temporary, "' (writing '", path, "'): ", system_reason()));
    bool cleaned_up = false;
    auto fail = [&](const std::string& what) {
        std::string reason = system_reason();
        if (fd >= 0) ::close(fd);
        ::unlink(temporary.c_str());
        cleaned_up = true;
        throw RuntimeError(str("writing '", path, "': ", what, ": ", reason));
    };
    try {
        produce([&](const void* data, size_t size) {
            const char* cursor = static_cast<const char*>(data);
            while (size > 0) {
                ssize_t written = ::write(fd, cursor, size);
                if (written < 0 && errno == EINTR) continue;
                if (written <= 0) fail("write to '" + temporary + "' failed");
                cursor += written;
                size -= static_cast<size_t>(written);
            }
        });
    } catch (...) {
        if (!cleaned_up) {  // an exception from `produce` itself: leave no temporary behind
            ::close(fd);
            ::unlink(temporary.c_str());
        }
        throw;
    }
    if (::fsync(fd) != 0) fail("fsync of '" + temporary + "' failed");
    int closed = ::close(fd);
    fd = -1;
    if (closed != 0) fail("close of '" + temporary + "' failed");
    if (::rename(temporary.c_str(), path.c_str()) != 0) fail("rename of '" + temporary + "' failed");
    // The rename is durable only once the directory entry is on disk.
    const std::string directory = parent_directory(path);
    int dir_fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) throw RuntimeError(str("writing '", path, "': cannot open directory '", directory, "': ", system_reason()));
    int synced = ::fsync(dir_fd);
    std::string reason = system_reason();
    ::close(dir_fd);
    if (synced != 0) throw RuntimeError(str("writing '", path, "': fsync of directory '", directory, "' failed: ", reason));
}

void write_file_atomically(const std::string& path, const std::string& contents) {
    write_file_atomically(path, [&](const ByteSink& sink) { sink(contents.data(), contents.size()); });
}

}  // namespace mp::nn
