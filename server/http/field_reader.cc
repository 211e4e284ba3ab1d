#include "server/http/field_reader.h"

namespace sy::http {

json_fields::Options FieldReader::RequestOptions() {
  json_fields::Options options;
  options.backtick_names = true;
  options.integral_floats = true;
  return options;
}

bool FieldReader::Int(const char* name, int64_t lo, int64_t hi, int64_t* out) {
  int64_t value = 0;
  Status s = fields_.Int(name, *out, &value);
  // Only a given value is checked: *out may hold a sentinel outside [lo, hi].
  if (s.ok() && Has(name)) s = fields_.Range(name, value, lo, hi);
  if (!s.ok()) return Fail(s, name);
  *out = value;
  return true;
}

bool FieldReader::Float(const char* name, double lo, double hi, double* out) {
  double value = 0;
  Status s = fields_.Double(name, *out, &value);
  if (s.ok() && Has(name)) s = fields_.Range(name, value, lo, hi);
  if (!s.ok()) return Fail(s, name);
  *out = value;
  return true;
}

bool FieldReader::Bool(const char* name, bool* out) {
  const Status s = fields_.Bool(name, *out, out);
  return s.ok() || Fail(s, name);
}

bool FieldReader::Fail(const Status& status, const char* name) {
  return Fail(status.message(), fields_.PathOf(name));
}

bool FieldReader::Fail(std::string message, std::string param) {
  return Fail(InvalidRequest(std::move(message), std::move(param)));
}

bool FieldReader::Fail(ApiError error) {
  *error_ = std::move(error);
  return false;
}

}  // namespace sy::http
