// The safetensors file format (8-byte little-endian header length, a JSON header of dtype, shape
// and data_offsets per tensor, then the raw little-endian data), read with every field validated,
// and written atomically, so checkpoints and exported models are readable by PyTorch's loader.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace mp::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
// The header's optional "__metadata__": a map of strings to strings.
using SafetensorsMetadata = std::map<std::string, std::string>;

struct SafetensorsContents {
    std::map<std::string, Tensor> tensors;  // CPU tensors, by name
    SafetensorsMetadata metadata;
};

// One tensor of a file's header: where its bytes are, relative to the data section.
struct SafetensorsEntry {
    std::string name;
    DType dtype = DType::Float32;
    Shape shape;
    uint64_t begin = 0, end = 0;
};

// A file's validated header: the tensors' places, without their data, so that a reader can take
// only the tensors it needs (a pipeline stage reading its layers from a whole model's file).
struct SafetensorsIndex {
    std::string path;
    uint64_t data_start = 0;  // byte offset of the data section in the file
    std::map<std::string, SafetensorsEntry> entries;
    SafetensorsMetadata metadata;
};

// Largest header accepted on read (the reference implementation's limit): a corrupt header
// length cannot make the reader allocate more than this.
constexpr size_t kSafetensorsMaxHeaderBytes = 100u << 20;

// The safetensors name of a dtype ("F32", "F64", "I32"); throws for dtypes the format mapping
// does not cover here.
std::string safetensors_dtype_name(DType dtype);

// The whole file as bytes. Keys in the JSON header are sorted, tensors are laid out in the
// same order with offsets relative to the data section, and the header is padded with spaces
// to a multiple of 8 bytes (as the reference writer does) so the data is aligned. Tensors on
// any device are copied to the CPU. Duplicate or empty names, or the name "__metadata__", are
// refused.
std::string encode_safetensors(const NamedTensors& tensors, const SafetensorsMetadata& metadata = {});

// Parses bytes of a safetensors file; `source` (a file name) is named in every error.
// Validates: header length against the byte count, the JSON, every entry's dtype, shape and
// offsets (in range, contiguous, non-overlapping, covering the data section exactly, byte count
// equal to numel × dtype size), duplicate names and the metadata's types.
SafetensorsContents decode_safetensors(const std::string& bytes, const std::string& source);

// Reads only the 8-byte length and the header of `path` and validates them as decode_safetensors
// does, against the file's size (so a truncated file is refused here, before any tensor is read).
SafetensorsIndex read_safetensors_index(const std::string& path);
// Reads one tensor's bytes, and only them, from the file `index` describes (a CPU tensor).
// std::invalid_argument when the file has no such tensor; mp::RuntimeError when the read fails.
Tensor read_safetensors_tensor(const SafetensorsIndex& index, const std::string& name);

// encode_safetensors, written to `path` with write_file_atomically.
void write_safetensors(const std::string& path, const NamedTensors& tensors, const SafetensorsMetadata& metadata = {});
// Reads and validates `path`. Malformed contents throw std::invalid_argument, an unreadable
// file mp::RuntimeError; both name the file and the problem.
SafetensorsContents read_safetensors(const std::string& path);

// Writes `path` so that a crash leaves either the old file or the new one, never a mix: the
// bytes go to "<path>.tmp.<pid>", which is fsynced and renamed over `path`, then the directory
// is fsynced. On any failure (including an exception from `produce`) the temporary file is
// removed and the previous `path` is untouched. I/O failures throw mp::RuntimeError naming the
// file and the system's reason.
using ByteSink = std::function<void(const void* data, size_t size)>;
void write_file_atomically(const std::string& path, const std::function<void(const ByteSink& sink)>& produce);
void write_file_atomically(const std::string& path, const std::string& contents);

// The whole file as bytes; mp::RuntimeError naming the file when it cannot be read.
std::string read_file_bytes(const std::string& path);

}  // namespace mp::nn
