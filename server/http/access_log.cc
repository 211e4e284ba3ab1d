#include "server/http/access_log.h"

#include <spdlog/spdlog.h>

#include <random>

namespace sy::http {
namespace {

bool ValidRequestId(const std::string& id) {
  if (id.empty() || id.size() > kMaxRequestIdLength) return false;
  for (const char c : id) {
    if (c <= ' ' || c > '~') return false;  // spaces too: they would split the log line's fields
  }
  return true;
}

std::string NewRequestId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id = "req-";
  for (int i = 0; i < 32; ++i) id.push_back(kHex[rng() & 15]);
  return id;
}

std::string Millis(AccessRecord::Clock::duration d) {
  return fmt::format("{:.1f}", std::chrono::duration<double, std::milli>(d).count());
}

}  // namespace

std::string RequestIdFor(const HttpRequest& req) {
  std::string id(req.Header("X-Request-Id"));
  return ValidRequestId(id) ? id : NewRequestId();
}

std::string FormatAccessLine(const AccessRecord& r) {
  const auto end = AccessRecord::Clock::now();
  return fmt::format(
      "access id={} method={} route={} status={} prompt_tokens={} completion_tokens={} "
      "ttft_ms={} duration_ms={} finish={}",
      r.request_id, r.method, r.route, r.status, r.prompt_tokens, r.completion_tokens,
      r.first_token ? Millis(*r.first_token - r.start) : "-", Millis(end - r.start),
      r.finish_reason ? FinishReasonName(*r.finish_reason) : "-");
}

void LogAccess(const AccessRecord& record) { spdlog::info("{}", FormatAccessLine(record)); }

}  // namespace sy::http
