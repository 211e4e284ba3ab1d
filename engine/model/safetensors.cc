#include "engine/model/safetensors.h"

#include <array>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

namespace sy {
namespace {

using nlohmann::json;

// The safetensors reference implementation refuses headers above this size.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// Root object -> tensor entry -> shape array: anything deeper is not a safetensors header.
constexpr int kMaxHeaderDepth = 3;

// Every dtype the safetensors format defines, with its width in bits.
struct DTypeInfo {
  std::string_view name;
  uint64_t bits;
  std::optional<DType> dtype;  // nullopt: defined by the format but unsupported here
};

constexpr std::array<DTypeInfo, 20> kDTypes = {{
    {"F32", 32, DType::kF32},     {"F16", 16, DType::kF16},     {"BF16", 16, DType::kBF16},
    {"I32", 32, DType::kI32},     {"I64", 64, DType::kI64},     {"F64", 64, std::nullopt},
    {"U64", 64, std::nullopt},    {"U32", 32, std::nullopt},    {"I16", 16, std::nullopt},
    {"U16", 16, std::nullopt},    {"I8", 8, std::nullopt},      {"U8", 8, std::nullopt},
    {"BOOL", 8, std::nullopt},    {"F8_E5M2", 8, std::nullopt}, {"F8_E4M3", 8, DType::kE4M3},
    {"F8_E8M0", 8, std::nullopt}, {"C64", 64, std::nullopt},    {"F6_E2M3", 6, std::nullopt},
    {"F6_E3M2", 6, std::nullopt}, {"F4", 4, std::nullopt},
}};

const DTypeInfo* FindDType(std::string_view name) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

// Builds the error messages for one file.
class Errors {
 public:
  explicit Errors(std::string_view path) : path_(path) {}
  Status Corrupt(const std::string& what) const {
    return Status::DataLoss("corrupt safetensors file " + path_ + ": " + what);
  }
  Status Truncated(const std::string& what) const {
    return Status::DataLoss("truncated safetensors file " + path_ + ": " + what);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Reads a JSON array of non-negative integers that fit in int64.
bool ReadUnsignedArray(const json& j, std::vector<int64_t>* out) {
  if (!j.is_array()) return false;
  out->clear();
  for (const json& v : j) {
    if (!v.is_number_unsigned()) return false;
    const uint64_t x = v.get<uint64_t>();
    if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    out->push_back(static_cast<int64_t>(x));
  }
  return true;
}

Status ParseMetadata(const json& j, const Errors& err, SafetensorsHeader* header) {
  if (!j.is_object()) return err.Corrupt("__metadata__ is not an object");
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string())
      return err.Corrupt("__metadata__ value of '" + key + "' is not a string");
    header->metadata[key] = value.get<std::string>();
  }
  return Status::Ok();
}

// Validates one tensor entry. Sets *unsupported to the dtype name when the format defines the
// dtype but we cannot load it (the entry is still fully checked).
Status ParseEntry(const std::string& name, const json& j, uint64_t data_size, const Errors& err,
                  SafetensorsEntry* entry, std::string* unsupported) {
  const std::string what = "tensor '" + name + "' ";
  if (!j.is_object()) return err.Corrupt(what + "is not an object");
  const auto dtype_it = j.find("dtype");
  if (dtype_it == j.end() || !dtype_it->is_string()) {
    return err.Corrupt(what + "has no dtype string");
  }
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  const DTypeInfo* info = FindDType(dtype_name);
  if (info == nullptr) return err.Corrupt(what + "has unknown dtype '" + dtype_name + "'");
  if (info->dtype.has_value()) {
    entry->dtype = *info->dtype;
  } else {
    *unsupported = dtype_name;
  }
  const auto shape_it = j.find("shape");
  if (shape_it == j.end() || !ReadUnsignedArray(*shape_it, &entry->shape)) {
    return err.Corrupt(what + "has no shape of non-negative integers");
  }
  uint64_t numel = 1;
  for (int64_t d : entry->shape) {
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel) ||
        numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return err.Corrupt(what + "has a shape whose element count overflows");
    }
  }
  uint64_t bits = 0;
  if (__builtin_mul_overflow(numel, info->bits, &bits)) {
    return err.Corrupt(what + "has a shape whose byte size overflows");
  }
  if (bits % 8 != 0) return err.Corrupt(what + "does not fill a whole number of bytes");
  const uint64_t nbytes = bits / 8;
  std::vector<int64_t> offsets;
  const auto off_it = j.find("data_offsets");
  if (off_it == j.end() || !ReadUnsignedArray(*off_it, &offsets) || offsets.size() != 2) {
    return err.Corrupt(what + "has no data_offsets [begin, end] of non-negative integers");
  }
  entry->begin = static_cast<uint64_t>(offsets[0]);
  entry->end = static_cast<uint64_t>(offsets[1]);
  if (entry->begin > entry->end) return err.Corrupt(what + "has data_offsets with begin > end");
  if (entry->end - entry->begin != nbytes) {
    return err.Corrupt(what + "has " + std::to_string(entry->end - entry->begin) +
                       " bytes of data but its dtype and shape need " + std::to_string(nbytes));
  }
  if (entry->end > data_size) {
    return err.Truncated(what + "ends at data offset " + std::to_string(entry->end) +
                         " but the data region has " + std::to_string(data_size) + " bytes");
  }
  return Status::Ok();
}

// Parses the JSON header text, refusing duplicate tensor names and deep nesting.
Status ParseHeaderJson(std::string_view text, const Errors& err, json* out) {
  size_t root_keys = 0;
  bool too_deep = false;
  json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json&) {
    if (event == json::parse_event_t::key && depth == 1) ++root_keys;
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kMaxHeaderDepth) {
      too_deep = true;
      return false;
    }
    return true;
  };
  *out = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
  if (out->is_discarded()) return err.Corrupt("header is not valid JSON");
  if (too_deep) return err.Corrupt("header nests deeper than a safetensors header can");
  if (!out->is_object()) return err.Corrupt("header is not a JSON object");
  if (out->size() != root_keys) return err.Corrupt("header has duplicate tensor names");
  return Status::Ok();
}

StatusOr<SafetensorsHeader> ParseHeaderImpl(std::string_view bytes, const Errors& err) {
  if (bytes.size() < 8) {
    return err.Truncated("file has " + std::to_string(bytes.size()) +
                         " bytes, fewer than the 8-byte header length");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) {
    header_len = (header_len << 8) | static_cast<uint8_t>(bytes[static_cast<size_t>(i)]);
  }
  if (header_len > kMaxHeaderBytes) {
    return err.Corrupt("header length " + std::to_string(header_len) + " exceeds the limit of " +
                       std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (header_len > bytes.size() - 8) {
    return err.Truncated("header length " + std::to_string(header_len) + " exceeds the " +
                         std::to_string(bytes.size() - 8) + " bytes after the length");
  }
  const std::string_view text = bytes.substr(8, header_len);
  if (text.empty() || text.front() != '{') return err.Corrupt("header does not start with '{'");
  json root;
  SY_RETURN_IF_ERROR(ParseHeaderJson(text, err, &root));

  SafetensorsHeader header;
  header.data_start = 8 + header_len;
  const uint64_t data_size = bytes.size() - header.data_start;
  std::string first_unsupported;  // "name\0dtype" of the first unsupported tensor
  for (const auto& [name, value] : root.items()) {
    if (name == "__metadata__") {
      SY_RETURN_IF_ERROR(ParseMetadata(value, err, &header));
      continue;
    }
    SafetensorsEntry entry;
    std::string unsupported;
    SY_RETURN_IF_ERROR(ParseEntry(name, value, data_size, err, &entry, &unsupported));
    if (!unsupported.empty() && first_unsupported.empty()) {
      first_unsupported = "tensor '" + name + "' has dtype " + unsupported;
    }
    header.tensors.emplace(name, std::move(entry));
  }
  if (!first_unsupported.empty()) {
    return Status::Unimplemented(
        "safetensors file " + err.path() + ": " + first_unsupported +
        ", which is not supported (supported: F32, F16, BF16, I32, I64, F8_E4M3)");
  }
  return header;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string_view SafetensorsDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI32:
      return "I32";
    case DType::kI64:
      return "I64";
    case DType::kE4M3:
      return "F8_E4M3";
    case DType::kI8:  // rows with scales: layouts of ours, not safetensors dtypes
    case DType::kI4G32:
    case DType::kI4G64:
    case DType::kI4G128:
    case DType::kF8:
    case DType::kF8Row:
      return "?";
  }
  return "?";
}

std::optional<DType> ParseSafetensorsDType(std::string_view name) {
  const DTypeInfo* info = FindDType(name);
  if (info == nullptr) return std::nullopt;
  return info->dtype;
}

StatusOr<SafetensorsHeader> ParseSafetensorsHeader(std::string_view file_bytes,
                                                   std::string_view path) {
  const Errors err(path);
  try {
    return ParseHeaderImpl(file_bytes, err);
  } catch (const json::exception& e) {
    return err.Corrupt(std::string("malformed header: ") + e.what());
  }
}

SafetensorsFile::SafetensorsFile(std::unique_ptr<MappedFile> file, SafetensorsHeader header)
    : file_(std::move(file)), metadata_(std::move(header.metadata)) {
  const std::byte* data = file_->data() + header.data_start;
  for (auto& [name, entry] : header.tensors) {
    TensorView view;
    view.name = name;
    view.dtype = entry.dtype;
    view.shape = std::move(entry.shape);
    view.data = data + entry.begin;
    view.nbytes = static_cast<size_t>(entry.end - entry.begin);
    tensors_.emplace(name, std::move(view));
  }
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  SY_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  SY_ASSIGN_OR_RETURN(SafetensorsHeader header, ParseSafetensorsHeader(file->bytes(), path));
  return std::unique_ptr<SafetensorsFile>(new SafetensorsFile(std::move(file), std::move(header)));
}

StatusOr<TensorView> SafetensorsFile::Get(std::string_view name) const {
  const TensorView* view = Find(name);
  if (view == nullptr) {
    return Status::NotFound("missing tensor " + std::string(name) + " in " + path());
  }
  return *view;
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  const auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [name, view] : tensors_) out.push_back(name);
  return out;
}

}  // namespace sy
