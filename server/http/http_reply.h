// Helpers that fill a cpp-httplib response with JSON or an OpenAI error object. Stateless.
#pragma once

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "server/http/openai_protocol.h"

namespace sy::http {

void SendJson(httplib::Response& res, int status, const nlohmann::json& body);
// The error object with its status, and Retry-After when the error asks for one.
void SendError(httplib::Response& res, const ApiError& error);

}  // namespace sy::http
