// HttpRequest and HttpResponse: one parsed HTTP request and the reply to it, as plain data, so
// that routes and handlers do not depend on the HTTP library underneath (Boost.Beast).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sy::http {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without its query, e.g. "/v1/completions"
  std::string query;   // after '?', undecoded; empty when none
  std::vector<std::pair<std::string, std::string>> headers;  // as received
  std::string body;

  // The first header named `name` (case-insensitive); empty when absent.
  std::string_view Header(std::string_view name) const;
  // The value of query parameter `name` (percent-decoded); empty when absent.
  std::string QueryParam(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // beyond type, length, connection
};

bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// The response's status line, headers (Content-Type, Content-Length, Connection) and body, as
// HTTP/1.1 bytes.
std::string SerializeResponse(const HttpResponse& response, bool keep_alive);
// The head of a chunked 200 response of `content_type` (server-sent events), with `headers`.
std::string SerializeChunkedHead(std::string_view content_type,
                                 const std::vector<std::pair<std::string, std::string>>& headers);
// One chunk of a chunked body; empty `data` gives the last chunk ("0\r\n\r\n").
std::string SerializeChunk(std::string_view data);

}  // namespace sy::http
