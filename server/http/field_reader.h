// FieldReader: typed, range-checked reads of optional fields of a JSON request object through
// engine/core/json_fields, turning the first wrong type or value into a 400 ApiError that names
// the field. Borrows the object and the error; one per request, not thread-safe.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/core/json_fields.h"
#include "server/http/openai_protocol.h"

namespace sy::http {

class FieldReader {
 public:
  // `path` names the object in errors ("" for the request, "stream_options" for a member).
  FieldReader(const nlohmann::json& object, ApiError* error, std::string path = "")
      : fields_(object, std::move(path), RequestOptions()), error_(error) {}

  // The field, or null when it is absent or JSON null (OpenAI treats both as "not given").
  const nlohmann::json* Get(const char* name) const { return fields_.Find(name); }
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
  // `name` in errors, and 5.0 as the integer 5 (as pydantic takes it).
  static json_fields::Options RequestOptions();
  // Fails with a field's read error, which names it.
  bool Fail(const Status& status, const char* name);

  json_fields::Fields fields_;
  ApiError* error_;
};

}  // namespace sy::http
