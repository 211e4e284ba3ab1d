// Errors as OpenAI's error object, the Status -> HTTP mapping, and the checks every request body
// goes through before its fields are read (UTF-8, JSON nested at most
// kMaxUserJsonDepth levels, an object at the top).
#include <string>

#include "engine/core/bounded_json.h"
#include "engine/tokenizer/unicode.h"
#include "server/http/openai_protocol.h"

namespace sy::http {
namespace {

// Seconds a client should wait before retrying when the server is full or not serving.
constexpr int kRetryAfterSeconds = 1;

}  // namespace

ApiError InvalidRequest(std::string message, std::string param) {
  ApiError error;
  error.http_status = 400;
  error.message = std::move(message);
  error.param = std::move(param);
  return error;
}

ApiError ErrorFromStatus(const Status& status) {
  ApiError error;
  error.message = status.message();
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      error.http_status = 400;
      break;
    case StatusCode::kNotFound:
      error.http_status = 404;
      error.code = "not_found";
      break;
    case StatusCode::kResourceExhausted:
      error.http_status = 429;
      error.type = "rate_limit_error";
      error.code = "queue_full";
      error.retry_after_s = kRetryAfterSeconds;
      break;
    case StatusCode::kUnavailable:
      error.http_status = 503;
      error.type = "service_unavailable";
      error.retry_after_s = kRetryAfterSeconds;
      break;
    case StatusCode::kDeadlineExceeded:
      error.http_status = 504;
      error.type = "timeout_error";
      error.code = "request_timeout";
      break;
    default:
      error.http_status = 500;
      error.type = "internal_error";
      break;
  }
  return error;
}

nlohmann::json ErrorBody(const ApiError& error) {
  nlohmann::json inner = {{"message", error.message}, {"type", error.type}};
  inner["param"] = error.param.empty() ? nlohmann::json(nullptr) : nlohmann::json(error.param);
  inner["code"] = error.code.empty() ? nlohmann::json(nullptr) : nlohmann::json(error.code);
  return {{"error", inner}};
}

std::optional<nlohmann::json> ParseJsonObject(const std::string& body, ApiError* error) {
  if (body.empty()) {
    *error = InvalidRequest("The request body is empty; expected a JSON object.");
    return std::nullopt;
  }
  if (!tokenizer::IsValidUtf8(body)) {
    *error = InvalidRequest("The request body is not valid UTF-8.");
    return std::nullopt;
  }
  StatusOr<nlohmann::json> parsed = ParseBoundedJson(body, "The request body");
  if (!parsed.ok()) {
    *error = InvalidRequest(parsed.status().message() + ".");
    return std::nullopt;
  }
  nlohmann::json value = std::move(*parsed);
  if (!value.is_object()) {
    *error = InvalidRequest("The request body must be a JSON object.");
    return std::nullopt;
  }
  return value;
}

}  // namespace sy::http
