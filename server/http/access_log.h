// The access log: one structured spdlog line per finished generation request, and the request
// id (a sanitised client X-Request-Id, else a generated one) that ties it to the response.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "engine/sched/request.h"
#include "server/http/http_message.h"

namespace sy::http {

inline constexpr size_t kMaxRequestIdLength = 128;

// The client's X-Request-Id when it is 1..128 printable ASCII characters, else a fresh "req-..."
// id (so a hostile header cannot forge or break log lines).
std::string RequestIdFor(const HttpRequest& req);

// What one access-log line reports; filled while the request is answered.
struct AccessRecord {
  using Clock = std::chrono::steady_clock;
  std::string request_id;
  std::string method;
  std::string route;
  int status = 0;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  Clock::time_point start = Clock::now();
  std::optional<Clock::time_point> first_token;  // TTFT is measured to here
  std::optional<FinishReason> finish_reason;     // of the last choice to finish

  void NoteToken() {
    if (!first_token) first_token = Clock::now();
  }
};

// The line, e.g. `access id=X method=POST route=/v1/completions status=200 prompt_tokens=2
// completion_tokens=3 ttft_ms=1.2 duration_ms=4.5 finish=stop` ("-" for what is unknown).
std::string FormatAccessLine(const AccessRecord& record);
// Logs the line at info.
void LogAccess(const AccessRecord& record);

}  // namespace sy::http
