// Typed, path-reporting accessors over a parsed nlohmann::json document, shared by the placement
// and routing-trace readers: every error names the offending field ("layers[2].slots[0][3]"), and
// the compact array writer keeps long count vectors on one line. Stateless free functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace sy::json_fields {

// obj[key] when obj is an object holding key, else InvalidArgument "<path>.<key>: missing".
StatusOr<const nlohmann::json*> Member(const nlohmann::json& obj, const std::string& key,
                                       const std::string& path);
// An integer in [min, max], else InvalidArgument naming `path`.
StatusOr<int64_t> Int(const nlohmann::json& value, const std::string& path, int64_t min,
                      int64_t max);
// obj[key] as an integer in [min, max].
StatusOr<int64_t> IntMember(const nlohmann::json& obj, const std::string& key,
                            const std::string& path, int64_t min, int64_t max);
// An array (of `expected_size` elements unless it is negative), else InvalidArgument.
Status CheckArray(const nlohmann::json& value, const std::string& path, int64_t expected_size);
// An array of integers in [min, max] (of `expected_size` unless negative).
StatusOr<std::vector<int64_t>> IntArray(const nlohmann::json& value, const std::string& path,
                                        int64_t expected_size, int64_t min, int64_t max);

// Appends "[a,b,c]".
void AppendIntArray(std::span<const int64_t> values, std::string* out);
void AppendIntArray(std::span<const int32_t> values, std::string* out);

// Writes `text` to `path` (replacing it); NotFound if it cannot be opened, DataLoss on error.
Status WriteStringToFile(const std::string& path, const std::string& text);

}  // namespace sy::json_fields
