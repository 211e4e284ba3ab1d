// FieldReader: typed, range-checked reads of optional fields of a JSON request object, turning
// the first wrong type or value into a 400 ApiError that names the field. Borrows the object
// and the error; one per request, not thread-safe.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "server/http/openai_protocol.h"

namespace sy::http {

class FieldReader {
 public:
  // `prefix` is prepended to field names in errors (e.g. "stream_options.").
  FieldReader(const nlohmann::json& object, ApiError* error, std::string prefix = "")
      : object_(object), error_(error), prefix_(std::move(prefix)) {}

  // The field, or null when it is absent or JSON null (OpenAI treats both as "not given").
  const nlohmann::json* Get(const char* name) const;
  bool Has(const char* name) const { return Get(name) != nullptr; }

  // Each reader leaves *out unchanged when the field is not given and returns false (with the
  // error set) when it has the wrong type or lies outside [lo, hi].
  bool Int(const char* name, int64_t lo, int64_t hi, int64_t* out);
  bool Float(const char* name, double lo, double hi, double* out);
  bool Bool(const char* name, bool* out);

  // Records a 400 error (or the given one) and returns false.
  bool Fail(std::string message, std::string param);
  bool Fail(ApiError error);
  ApiError* error() const { return error_; }

 private:
  const nlohmann::json& object_;
  ApiError* error_;
  std::string prefix_;
};

}  // namespace sy::http
