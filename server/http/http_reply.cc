#include "server/http/http_reply.h"

#include <string>

namespace sy::http {

HttpResponse JsonResponse(int status, const nlohmann::json& body) {
  HttpResponse res;
  res.status = status;
  res.body = Dump(body);
  return res;
}

HttpResponse ErrorResponse(const ApiError& error) {
  HttpResponse res = JsonResponse(error.http_status, ErrorBody(error));
  if (error.retry_after_s > 0) {
    res.headers.emplace_back("Retry-After", std::to_string(error.retry_after_s));
  }
  return res;
}

}  // namespace sy::http
