// The one reader of typed fields out of parsed nlohmann::json documents (config.json, placement
// and trace files, tokenizer files, API requests): errors are InvalidArgument and name the field
// by its path ("rope_scaling.factor", "layers[2].slots[0][3]"). Stateless; borrows the JSON.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sy::json_fields {

using nlohmann::json;

// How errors read. Files say "field 'a.b' must be ...", API requests "`a.b` must be ...".
struct Options {
  std::string context;           // prepended to every message, e.g. "config.json: "
  bool backtick_names = false;   // `a.b` rather than field 'a.b'
  bool integral_floats = false;  // 5.0 reads as the integer 5 (as pydantic does)
};

// "key" under the top level (path ""), else "path.key"; and "path[i]".
std::string MemberPath(const std::string& path, std::string_view key);
std::string IndexPath(const std::string& path, size_t i);
// InvalidArgument "<context><field 'path'> <what>".
Status FieldError(const std::string& path, const std::string& what, const Options& options = {});

// obj[key], or nullptr when obj is not an object or lacks key. A null member is returned.
const json* FindMember(const json& obj, std::string_view key);
// Lenient reads for formats whose readers take a member of another type as not given
// (tokenizer files): the value when it has the type, else nullopt / `fallback`.
std::optional<std::string> LenientString(const json& obj, std::string_view key);
bool LenientBool(const json& obj, std::string_view key, bool fallback);
// v when it is an integer that fits int64.
std::optional<int64_t> AsInt(const json& v);

// Value reads; each error names `path`.
StatusOr<int64_t> Int(const json& v, const std::string& path, int64_t lo, int64_t hi,
                      const Options& options = {});
Status CheckObject(const json& v, const std::string& path, const Options& options = {});
// An array (of `expected_size` elements unless it is negative).
Status CheckArray(const json& v, const std::string& path, int64_t expected_size,
                  const Options& options = {});
// An array of integers in [lo, hi] (of `expected_size` unless negative).
StatusOr<std::vector<int64_t>> IntArray(const json& v, const std::string& path,
                                        int64_t expected_size, int64_t lo, int64_t hi,
                                        const Options& options = {});
// obj[key], required: obj must be an object and the member present and not null.
StatusOr<const json*> Member(const json& obj, std::string_view key, const std::string& path,
                             const Options& options = {});
StatusOr<int64_t> IntMember(const json& obj, std::string_view key, const std::string& path,
                            int64_t lo, int64_t hi, const Options& options = {});

// The members of one object, named under `path`. A null member counts as absent, as
// transformers treats None and the OpenAI API treats null. Required reads fail with
// "... is missing"; optional ones set *out to `dflt` when the member is absent.
class Fields {
 public:
  explicit Fields(const json& object, std::string path = "", Options options = {})
      : object_(object), path_(std::move(path)), options_(std::move(options)) {}

  std::string PathOf(std::string_view key) const { return MemberPath(path_, key); }
  // Whether `key` is there, null included.
  bool Present(std::string_view key) const { return FindMember(object_, key) != nullptr; }
  // The member, or nullptr when absent or null.
  const json* Find(std::string_view key) const;

  Status Int(std::string_view key, int64_t* out) const;
  Status Int(std::string_view key, int64_t dflt, int64_t* out) const;
  // A required integer in [lo, hi].
  Status IntIn(std::string_view key, int64_t lo, int64_t hi, int64_t* out) const;
  // v (the member `key` or an element of it) as an integer.
  Status ToInt(std::string_view key, const json& v, int64_t* out) const;
  Status Double(std::string_view key, double* out) const;
  Status Double(std::string_view key, double dflt, double* out) const;
  Status OptDouble(std::string_view key, std::optional<double>* out) const;
  Status Bool(std::string_view key, bool dflt, bool* out) const;
  Status String(std::string_view key, std::string dflt, std::string* out) const;

  // Errors about the member `key`.
  Status Missing(std::string_view key) const;
  Status Bad(std::string_view key, const std::string& expected, const json& got) const;
  Status Range(std::string_view key, int64_t value, int64_t lo, int64_t hi) const;
  Status Range(std::string_view key, double value, double lo, double hi) const;
  Status Positive(std::string_view key, double value) const;

 private:
  const json& object_;
  std::string path_;
  Options options_;
};

}  // namespace sy::json_fields
