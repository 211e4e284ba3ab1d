// The load tester's HTTP side: a server-sent-events parser and a client that sends one
// streaming POST /v1/completions and times its chunks the way vLLM's benchmark does.
// A BenchClient owns one keep-alive connection and is used by one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "engine/core/status.h"
#include "server/bench/bench_dataset.h"
#include "server/bench/bench_record.h"

namespace httplib {
class Client;
}

namespace sy::bench {

using BenchClock = std::chrono::steady_clock;

// Splits a byte stream into SSE events, however the bytes were chunked. Lines end in "\n" or
// "\r\n"; "data:" lines of one event are joined with "\n"; a blank line dispatches the event;
// comment lines (":") and other fields are ignored.
class SseParser {
 public:
  using EventFn = std::function<void(const std::string& data)>;
  explicit SseParser(EventFn on_event) : on_event_(std::move(on_event)) {}

  void Feed(std::string_view bytes);
  // End of stream: an unterminated last line and a pending event still count.
  void Finish();

 private:
  void HandleLine(std::string_view line);
  void Dispatch();

  EventFn on_event_;
  std::string partial_line_;
  std::string data_;
  bool has_data_ = false;
};

// "http://host:port/prefix" split into what httplib connects to and the path prefix.
struct BaseUrl {
  std::string origin;  // scheme://host[:port]
  std::string prefix;  // "" or "/prefix" (no trailing slash)
};
StatusOr<BaseUrl> ParseBaseUrl(const std::string& url);

struct CompletionParams {
  std::string model;
  double temperature = 0;
  bool ignore_eos = false;
};

class BenchClient {
 public:
  // timeout_s bounds each whole request, connect to last byte.
  BenchClient(const BaseUrl& url, double timeout_s);
  ~BenchClient();
  BenchClient(const BenchClient&) = delete;
  BenchClient& operator=(const BenchClient&) = delete;

  // Sends the request streaming with usage included and returns what was measured; times are
  // relative to origin. Never throws: transport errors, non-200 statuses (429/503 included) and
  // streams without a token are failed records with the reason.
  RequestRecord Complete(const CompletionParams& params, const BenchRequest& request,
                         BenchClock::time_point origin);

  // The first model id of GET /v1/models.
  StatusOr<std::string> FirstModel();
  // Token count of a text through POST /tokenize (vLLM's and our server's extension).
  StatusOr<int64_t> CountTokens(const std::string& model, const std::string& text);

 private:
  StatusOr<std::string> Call(const std::string& method, const std::string& path,
                             const std::string& body);

  BaseUrl url_;
  double timeout_s_;
  std::unique_ptr<httplib::Client> http_;
};

}  // namespace sy::bench
