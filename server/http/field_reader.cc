#include "server/http/field_reader.h"

#include <cmath>
#include <sstream>

namespace sy::http {
namespace {

std::string FormatNumber(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

const nlohmann::json* FieldReader::Get(const char* name) const {
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool FieldReader::Int(const char* name, int64_t lo, int64_t hi, int64_t* out) {
  const nlohmann::json* v = Get(name);
  if (!v) return true;
  const std::string field = prefix_ + name;
  const std::string range = "`" + field + "` must be an integer in [" + std::to_string(lo) + ", " +
                            std::to_string(hi) + "]";
  int64_t value = 0;
  if (v->is_number_unsigned()) {
    if (v->get<uint64_t>() > static_cast<uint64_t>(hi)) return Fail(range, field);
    value = static_cast<int64_t>(v->get<uint64_t>());
  } else if (v->is_number_integer()) {
    value = v->get<int64_t>();
  } else if (v->is_number_float()) {
    // 5.0 is accepted as 5 (as pydantic does); 5.5 and values past int64 are not.
    const double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d))
      return Fail("`" + field + "` must be an integer", field);
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) return Fail(range, field);
    value = static_cast<int64_t>(d);
  } else {
    return Fail("`" + field + "` must be an integer", field);
  }
  if (value < lo || value > hi) return Fail(range + ", got " + std::to_string(value), field);
  *out = value;
  return true;
}

bool FieldReader::Float(const char* name, double lo, double hi, double* out) {
  const nlohmann::json* v = Get(name);
  if (!v) return true;
  const std::string field = prefix_ + name;
  if (!v->is_number()) return Fail("`" + field + "` must be a number", field);
  const double d = v->get<double>();
  if (!(d >= lo && d <= hi)) {
    return Fail("`" + field + "` must be in [" + FormatNumber(lo) + ", " + FormatNumber(hi) +
                    "], got " + FormatNumber(d),
                field);
  }
  *out = d;
  return true;
}

bool FieldReader::Bool(const char* name, bool* out) {
  const nlohmann::json* v = Get(name);
  if (!v) return true;
  const std::string field = prefix_ + name;
  if (!v->is_boolean()) return Fail("`" + field + "` must be a boolean", field);
  *out = v->get<bool>();
  return true;
}

bool FieldReader::Fail(std::string message, std::string param) {
  return Fail(InvalidRequest(std::move(message), std::move(param)));
}

bool FieldReader::Fail(ApiError error) {
  *error_ = std::move(error);
  return false;
}

}  // namespace sy::http
