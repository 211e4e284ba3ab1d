#include "engine/moe/json_fields.h"

#include <fstream>
#include <limits>

namespace sy::json_fields {

using json = nlohmann::json;

StatusOr<const json*> Member(const json& obj, const std::string& key, const std::string& path) {
  if (!obj.is_object()) return Status::InvalidArgument(path + ": expected an object");
  auto it = obj.find(key);
  if (it == obj.end()) return Status::InvalidArgument(path + "." + key + ": missing");
  return &*it;
}

StatusOr<int64_t> Int(const json& value, const std::string& path, int64_t min, int64_t max) {
  if (!value.is_number_integer()) return Status::InvalidArgument(path + ": expected an integer");
  // Unsigned values above INT64_MAX would wrap in get<int64_t>().
  if (value.is_number_unsigned() &&
      value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Status::InvalidArgument(path + ": out of range");
  }
  const int64_t v = value.get<int64_t>();
  if (v < min || v > max) {
    return Status::InvalidArgument(path + ": " + std::to_string(v) + " is outside [" +
                                   std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return v;
}

StatusOr<int64_t> IntMember(const json& obj, const std::string& key, const std::string& path,
                            int64_t min, int64_t max) {
  SY_ASSIGN_OR_RETURN(const json* member, Member(obj, key, path));
  return Int(*member, path + "." + key, min, max);
}

Status CheckArray(const json& value, const std::string& path, int64_t expected_size) {
  if (!value.is_array()) return Status::InvalidArgument(path + ": expected an array");
  if (expected_size >= 0 && static_cast<int64_t>(value.size()) != expected_size) {
    return Status::InvalidArgument(path + ": expected " + std::to_string(expected_size) +
                                   " elements, got " + std::to_string(value.size()));
  }
  return Status::Ok();
}

StatusOr<std::vector<int64_t>> IntArray(const json& value, const std::string& path,
                                        int64_t expected_size, int64_t min, int64_t max) {
  SY_RETURN_IF_ERROR(CheckArray(value, path, expected_size));
  std::vector<int64_t> out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    SY_ASSIGN_OR_RETURN(const int64_t v,
                        Int(value[i], path + "[" + std::to_string(i) + "]", min, max));
    out.push_back(v);
  }
  return out;
}

template <typename T>
static void AppendInts(std::span<const T> values, std::string* out) {
  out->push_back('[');
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out->push_back(',');
    out->append(std::to_string(values[i]));
  }
  out->push_back(']');
}

void AppendIntArray(std::span<const int64_t> values, std::string* out) { AppendInts(values, out); }
void AppendIntArray(std::span<const int32_t> values, std::string* out) { AppendInts(values, out); }

Status WriteStringToFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::NotFound("cannot write " + path);
  out << text;
  out.flush();
  if (!out) return Status::DataLoss("error writing " + path);
  return Status::Ok();
}

}  // namespace sy::json_fields
