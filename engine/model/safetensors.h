// Reading safetensors files: a validated header parser and a memory-mapped, zero-copy reader.
// SafetensorsFile owns its mapping and is immutable after Open: reads are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/mapped_file.h"
#include "engine/core/status.h"
#include "kernels/dtype.h"

namespace sy {

// One tensor of a checkpoint. `data` points into a mapping owned by the file (or checkpoint) it
// came from and stays valid as long as that object lives. Files written per the current
// safetensors rules (ours and the Python library's) keep `data` aligned to the element size.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
};

// "F32", "F16", "BF16", "I32", "I64", "F8_E4M3": the spelling in safetensors headers.
std::string_view SafetensorsDTypeName(DType dtype);
// The DType for a safetensors dtype string; nullopt for anything we do not support.
std::optional<DType> ParseSafetensorsDType(std::string_view name);

// A header entry: where a tensor lies, relative to the start of the data region.
struct SafetensorsEntry {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct SafetensorsHeader {
  uint64_t data_start = 0;  // file offset of the data region: 8 + header length
  std::map<std::string, SafetensorsEntry, std::less<>> tensors;
  std::map<std::string, std::string> metadata;  // the "__metadata__" object, if any
};

// Parses and validates the complete bytes of a safetensors file (length prefix, JSON header
// and data region): every offset is checked against `file_bytes.size()`. `path` only names the
// file in messages. DataLoss "corrupt safetensors file <path>: ..." or "truncated ..." for bad
// bytes; Unimplemented for a well-formed tensor whose dtype we do not support.
StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view file_bytes,
                                                   std::string_view path = "<memory>");

// A safetensors file mapped into memory; tensors are views into the mapping (zero copy).
class SafetensorsFile {
 public:
  // NotFound if the file is missing; errors of ParseSafetensorsHeader otherwise.
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  // NotFound "missing tensor <name> in <path>" when absent.
  StatusOr<TensorView> Get(std::string_view name) const;
  // nullptr when absent.
  const TensorView* Find(std::string_view name) const;
  bool Has(std::string_view name) const { return Find(name) != nullptr; }
  // Sorted tensor names.
  std::vector<std::string> names() const;
  size_t num_tensors() const { return tensors_.size(); }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return file_->path(); }

 private:
  SafetensorsFile(std::unique_ptr<MappedFile> file, SafetensorsHeader header);

  std::unique_ptr<MappedFile> file_;
  std::map<std::string, TensorView, std::less<>> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace sy
