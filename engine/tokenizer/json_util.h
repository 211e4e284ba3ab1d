// Non-throwing accessors for nlohmann::json values read from untrusted tokenizer files.
// Free functions over borrowed values; thread-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace sy::tokenizer {

// The member `key` of `obj`, or nullptr if obj is not an object or lacks it.
inline const nlohmann::json* JsonField(const nlohmann::json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

inline std::optional<std::string> JsonString(const nlohmann::json& obj, std::string_view key) {
  const nlohmann::json* v = JsonField(obj, key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  return v->get_ref<const std::string&>();
}

inline bool JsonBool(const nlohmann::json& obj, std::string_view key, bool fallback) {
  const nlohmann::json* v = JsonField(obj, key);
  if (v == nullptr || !v->is_boolean()) return fallback;
  return v->get<bool>();
}

inline std::optional<int64_t> JsonInt(const nlohmann::json& v) {
  if (!v.is_number_integer()) return std::nullopt;
  return v.get<int64_t>();
}

}  // namespace sy::tokenizer
