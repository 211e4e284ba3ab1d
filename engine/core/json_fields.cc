#include "engine/core/json_fields.h"

#include <cmath>
#include <limits>
#include <sstream>

namespace sy::json_fields {
namespace {

// A value as it appears in the document, cut to 40 characters.
std::string Abbrev(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

std::string FormatNumber(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

Status Expected(const std::string& path, const std::string& expected, const json& got,
                const Options& options) {
  return FieldError(path, "must be " + expected + ", got " + Abbrev(got), options);
}

Status OutOfRange(const std::string& path, const std::string& lo, const std::string& hi,
                  const std::string& got, const Options& options) {
  return FieldError(path, "must be between " + lo + " and " + hi + ", got " + got, options);
}

}  // namespace

std::string MemberPath(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string IndexPath(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

Status FieldError(const std::string& path, const std::string& what, const Options& options) {
  const std::string name = options.backtick_names ? "`" + path + "`" : "field '" + path + "'";
  return Status::InvalidArgument(options.context + name + " " + what);
}

const json* FindMember(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

std::optional<std::string> LenientString(const json& obj, std::string_view key) {
  const json* v = FindMember(obj, key);
  if (v == nullptr || !v->is_string()) return std::nullopt;
  return v->get_ref<const std::string&>();
}

bool LenientBool(const json& obj, std::string_view key, bool fallback) {
  const json* v = FindMember(obj, key);
  if (v == nullptr || !v->is_boolean()) return fallback;
  return v->get<bool>();
}

std::optional<int64_t> AsInt(const json& v) {
  if (!v.is_number_integer()) return std::nullopt;
  // Unsigned values above INT64_MAX would wrap in get<int64_t>().
  if (v.is_number_unsigned() &&
      v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return std::nullopt;
  }
  return v.get<int64_t>();
}

StatusOr<int64_t> Int(const json& v, const std::string& path, int64_t lo, int64_t hi,
                      const Options& options) {
  const auto out_of_range = [&](const std::string& got) {
    return OutOfRange(path, std::to_string(lo), std::to_string(hi), got, options);
  };
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  if (v.is_number_unsigned() && !AsInt(v)) {
    return hi < kMax ? out_of_range(Abbrev(v)) : Expected(path, "a 64-bit integer", v, options);
  }
  int64_t value = 0;
  if (const std::optional<int64_t> i = AsInt(v)) {
    value = *i;
  } else if (options.integral_floats && v.is_number_float() && std::isfinite(v.get<double>()) &&
             v.get<double>() == std::floor(v.get<double>())) {
    const double d = v.get<double>();
    // 2^63 itself does not fit, though it compares equal to (double)INT64_MAX.
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi) || d >= 0x1p63) {
      return out_of_range(Abbrev(v));
    }
    value = static_cast<int64_t>(d);
  } else {
    return Expected(path, "an integer", v, options);
  }
  if (value < lo || value > hi) return out_of_range(std::to_string(value));
  return value;
}

Status CheckObject(const json& v, const std::string& path, const Options& options) {
  return v.is_object() ? Status::Ok() : Expected(path, "an object", v, options);
}

Status CheckArray(const json& v, const std::string& path, int64_t expected_size,
                  const Options& options) {
  if (!v.is_array()) return Expected(path, "an array", v, options);
  if (expected_size >= 0 && static_cast<int64_t>(v.size()) != expected_size) {
    return FieldError(
        path,
        "must have " + std::to_string(expected_size) + " elements, got " + std::to_string(v.size()),
        options);
  }
  return Status::Ok();
}

StatusOr<std::vector<int64_t>> IntArray(const json& v, const std::string& path,
                                        int64_t expected_size, int64_t lo, int64_t hi,
                                        const Options& options) {
  SY_RETURN_IF_ERROR(CheckArray(v, path, expected_size, options));
  std::vector<int64_t> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    SY_ASSIGN_OR_RETURN(const int64_t x, Int(v[i], IndexPath(path, i), lo, hi, options));
    out.push_back(x);
  }
  return out;
}

StatusOr<const json*> Member(const json& obj, std::string_view key, const std::string& path,
                             const Options& options) {
  SY_RETURN_IF_ERROR(CheckObject(obj, path, options));
  const json* v = FindMember(obj, key);
  if (v == nullptr || v->is_null()) return FieldError(MemberPath(path, key), "is missing", options);
  return v;
}

StatusOr<int64_t> IntMember(const json& obj, std::string_view key, const std::string& path,
                            int64_t lo, int64_t hi, const Options& options) {
  SY_ASSIGN_OR_RETURN(const json* v, Member(obj, key, path, options));
  return Int(*v, MemberPath(path, key), lo, hi, options);
}

const json* Fields::Find(std::string_view key) const {
  const json* v = FindMember(object_, key);
  return v == nullptr || v->is_null() ? nullptr : v;
}

Status Fields::Int(std::string_view key, int64_t* out) const {
  const json* v = Find(key);
  if (v == nullptr) return Missing(key);
  return ToInt(key, *v, out);
}

Status Fields::Int(std::string_view key, int64_t dflt, int64_t* out) const {
  *out = dflt;
  return Find(key) == nullptr ? Status::Ok() : Int(key, out);
}

Status Fields::IntIn(std::string_view key, int64_t lo, int64_t hi, int64_t* out) const {
  SY_RETURN_IF_ERROR(Int(key, out));
  return Range(key, *out, lo, hi);
}

Status Fields::ToInt(std::string_view key, const json& v, int64_t* out) const {
  SY_ASSIGN_OR_RETURN(*out, json_fields::Int(v, PathOf(key), std::numeric_limits<int64_t>::min(),
                                             std::numeric_limits<int64_t>::max(), options_));
  return Status::Ok();
}

Status Fields::Double(std::string_view key, double* out) const {
  const json* v = Find(key);
  if (v == nullptr) return Missing(key);
  if (!v->is_number()) return Bad(key, "a number", *v);
  *out = v->get<double>();
  return Status::Ok();
}

Status Fields::Double(std::string_view key, double dflt, double* out) const {
  *out = dflt;
  return Find(key) == nullptr ? Status::Ok() : Double(key, out);
}

Status Fields::OptDouble(std::string_view key, std::optional<double>* out) const {
  out->reset();
  if (Find(key) == nullptr) return Status::Ok();
  double v = 0;
  SY_RETURN_IF_ERROR(Double(key, &v));
  *out = v;
  return Status::Ok();
}

Status Fields::Bool(std::string_view key, bool dflt, bool* out) const {
  const json* v = Find(key);
  *out = dflt;
  if (v == nullptr) return Status::Ok();
  if (!v->is_boolean()) return Bad(key, "true or false", *v);
  *out = v->get<bool>();
  return Status::Ok();
}

Status Fields::String(std::string_view key, std::string dflt, std::string* out) const {
  const json* v = Find(key);
  *out = std::move(dflt);
  if (v == nullptr) return Status::Ok();
  if (!v->is_string()) return Bad(key, "a string", *v);
  *out = v->get<std::string>();
  return Status::Ok();
}

Status Fields::Missing(std::string_view key) const {
  return FieldError(PathOf(key), "is missing", options_);
}

Status Fields::Bad(std::string_view key, const std::string& expected, const json& got) const {
  return Expected(PathOf(key), expected, got, options_);
}

Status Fields::Range(std::string_view key, int64_t value, int64_t lo, int64_t hi) const {
  if (value >= lo && value <= hi) return Status::Ok();
  return OutOfRange(PathOf(key), std::to_string(lo), std::to_string(hi), std::to_string(value),
                    options_);
}

Status Fields::Range(std::string_view key, double value, double lo, double hi) const {
  if (value >= lo && value <= hi) return Status::Ok();
  return OutOfRange(PathOf(key), FormatNumber(lo), FormatNumber(hi), FormatNumber(value), options_);
}

Status Fields::Positive(std::string_view key, double value) const {
  if (value > 0) return Status::Ok();
  return FieldError(PathOf(key), "must be positive, got " + FormatNumber(value), options_);
}

}  // namespace sy::json_fields
