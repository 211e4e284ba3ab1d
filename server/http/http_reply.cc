#include "server/http/http_reply.h"

#include <string>

namespace sy::http {

void SendJson(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

void SendError(httplib::Response& res, const ApiError& error) {
  if (error.retry_after_s > 0) res.set_header("Retry-After", std::to_string(error.retry_after_s));
  SendJson(res, error.http_status, ErrorBody(error));
}

}  // namespace sy::http
