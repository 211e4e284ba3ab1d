// HttpResponses with a JSON body or an OpenAI error object. Stateless.
#pragma once

#include <nlohmann/json.hpp>

#include "server/http/http_message.h"
#include "server/http/openai_protocol.h"

namespace sy::http {

HttpResponse JsonResponse(int status, const nlohmann::json& body);
// The error object with its status, and Retry-After when the error asks for one.
HttpResponse ErrorResponse(const ApiError& error);

}  // namespace sy::http
