#include "server/bench/bench_client.h"

#include <httplib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

namespace sy::bench {
namespace {

constexpr size_t kMaxErrorBody = 4096;

double SecondsSince(BenchClock::time_point origin, BenchClock::time_point t) {
  return std::chrono::duration<double>(t - origin).count();
}

std::string FormatSeconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g s", s);
  return buf;
}

// error.message of an OpenAI error object, else the object as JSON.
std::string OpenAiErrorMessage(const nlohmann::json& error) {
  if (error.is_object() && error.contains("message") && error["message"].is_string()) {
    return error["message"].get<std::string>();
  }
  return error.dump();
}

// "HTTP 503: <message>" from an OpenAI error body, or with the raw body when it is not one.
std::string ErrorMessage(int status, const std::string& body) {
  std::string message = body.substr(0, 300);
  const auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error")) message = OpenAiErrorMessage(j["error"]);
  return "HTTP " + std::to_string(status) + (message.empty() ? "" : ": " + message);
}

// A server may close an idle keep-alive connection just as a request goes out on it (llama.cpp's
// does). Like HTTP clients, a request that failed that way is sent once more on a fresh
// connection: only on a reused connection, and only when no response had begun.
bool ShouldRetryOnFreshConnection(bool reused_connection, httplib::Error err,
                                  bool response_started) {
  return reused_connection && !response_started &&
         (err == httplib::Error::Read || err == httplib::Error::Write);
}

httplib::Headers RequestHeaders() {
  httplib::Headers h = {{"Accept", "text/event-stream"}};
  // Hosted OpenAI-compatible endpoints need a key; vLLM's benchmark reads the same variable.
  if (const char* key = std::getenv("OPENAI_API_KEY"); key != nullptr && *key != '\0') {
    h.emplace("Authorization", std::string("Bearer ") + key);
  }
  return h;
}

// Applies one SSE event of a completions stream to the record. A chunk with a non-empty
// `choices` list is a token chunk even when its text is empty (special tokens), as in vLLM.
void ApplyEvent(const std::string& data, BenchClock::time_point origin, RequestRecord* r) {
  if (data == "[DONE]") return;
  const auto now = BenchClock::now();
  const auto j = nlohmann::json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    if (r->error.empty()) r->error = "malformed SSE event: " + data.substr(0, 200);
    return;
  }
  if (j.contains("error")) {
    r->error = "error in stream: " + OpenAiErrorMessage(j["error"]);
    return;
  }
  const auto choices = j.find("choices");
  if (choices != j.end() && choices->is_array() && !choices->empty()) {
    const double t = SecondsSince(origin, now);
    if (r->chunks == 0) {
      r->ttft_s = t - r->start_s;
    } else {
      r->itl_s.push_back(t - (r->start_s + r->latency_s));
    }
    r->latency_s = t - r->start_s;
    r->chunks++;
    const auto text = (*choices)[0].find("text");
    if (text != (*choices)[0].end() && text->is_string()) {
      r->generated_text += text->get<std::string>();
    }
  }
  const auto usage = j.find("usage");
  if (usage != j.end() && usage->is_object()) {
    if (usage->contains("completion_tokens") && (*usage)["completion_tokens"].is_number_integer()) {
      r->output_tokens = (*usage)["completion_tokens"].get<int64_t>();
    }
    if (usage->contains("prompt_tokens") && (*usage)["prompt_tokens"].is_number_integer()) {
      r->prompt_len = (*usage)["prompt_tokens"].get<int64_t>();
    }
  }
}

}  // namespace

void SseParser::Feed(std::string_view bytes) {
  while (!bytes.empty()) {
    const size_t nl = bytes.find('\n');
    if (nl == std::string_view::npos) {
      partial_line_.append(bytes);
      return;
    }
    partial_line_.append(bytes.substr(0, nl));
    bytes.remove_prefix(nl + 1);
    std::string line = std::move(partial_line_);
    partial_line_.clear();
    if (!line.empty() && line.back() == '\r') line.pop_back();
    HandleLine(line);
  }
}

void SseParser::Finish() {
  if (!partial_line_.empty()) {
    std::string line = std::move(partial_line_);
    partial_line_.clear();
    if (!line.empty() && line.back() == '\r') line.pop_back();
    HandleLine(line);
  }
  Dispatch();
}

void SseParser::HandleLine(std::string_view line) {
  if (line.empty()) {
    Dispatch();
    return;
  }
  if (line.front() == ':') return;  // comment, e.g. a keep-alive ping
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  if (field != "data") return;
  std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (has_data_) data_.push_back('\n');
  data_.append(value);
  has_data_ = true;
}

void SseParser::Dispatch() {
  if (!has_data_) return;
  std::string data = std::move(data_);
  data_.clear();
  has_data_ = false;
  on_event_(data);
}

StatusOr<BaseUrl> ParseBaseUrl(const std::string& url) {
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) {
    return Status::InvalidArgument("--url needs a scheme, e.g. http://127.0.0.1:8000");
  }
  const std::string scheme = url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") {
    return Status::InvalidArgument("--url scheme must be http or https: " + url);
  }
  const size_t path_start = url.find('/', scheme_end + 3);
  BaseUrl out;
  out.origin = url.substr(0, path_start);
  if (out.origin.size() == scheme_end + 3) return Status::InvalidArgument("--url has no host");
  if (path_start != std::string::npos) out.prefix = url.substr(path_start);
  while (!out.prefix.empty() && out.prefix.back() == '/') out.prefix.pop_back();
  return out;
}

BenchClient::BenchClient(const BaseUrl& url, double timeout_s)
    : url_(url), timeout_s_(timeout_s), http_(std::make_unique<httplib::Client>(url.origin)) {
  const auto timeout = std::chrono::duration<double>(timeout_s);
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(timeout);
  http_->set_connection_timeout(std::min(micros, std::chrono::microseconds(30'000'000)));
  http_->set_read_timeout(micros);
  http_->set_write_timeout(micros);
  http_->set_keep_alive(true);
  http_->set_tcp_nodelay(true);
}

BenchClient::~BenchClient() = default;

RequestRecord BenchClient::Complete(const CompletionParams& params, const BenchRequest& request,
                                    BenchClock::time_point origin) {
  nlohmann::json body = {{"model", params.model},
                         {"prompt", request.prompt},
                         {"max_tokens", request.output_len},
                         {"temperature", params.temperature},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}}};
  if (params.ignore_eos) body["ignore_eos"] = true;

  RequestRecord r;
  r.prompt_len = request.prompt_len;
  bool timed_out = false;
  std::string error_body;
  SseParser parser([&](const std::string& data) { ApplyEvent(data, origin, &r); });

  httplib::Request req;
  req.method = "POST";
  req.path = url_.prefix + "/v1/completions";
  req.headers = RequestHeaders();
  req.set_header("Content-Type", "application/json");
  req.body = body.dump();
  req.response_handler = [&](const httplib::Response& res) {
    r.http_status = res.status;
    return true;
  };
  const auto start = BenchClock::now();
  const auto deadline = start + std::chrono::duration_cast<BenchClock::duration>(
                                    std::chrono::duration<double>(timeout_s_));
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (r.http_status != 200) {
      error_body.append(data,
                        std::min(n, kMaxErrorBody - std::min(kMaxErrorBody, error_body.size())));
    } else {
      parser.Feed(std::string_view(data, n));
    }
    timed_out = BenchClock::now() > deadline;
    return !timed_out;
  };
  r.start_s = SecondsSince(origin, start);

  // A silent server trips httplib's read timeout (a Read error) rather than our deadline.
  const auto ran_out_of_time = [&] {
    const double elapsed = std::chrono::duration<double>(BenchClock::now() - start).count();
    return timed_out || elapsed >= 0.99 * timeout_s_;
  };
  const bool reused_connection = http_->is_socket_open() != 0;
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  bool sent = http_->send(req, res, err);
  if (!sent && !ran_out_of_time() &&
      ShouldRetryOnFreshConnection(reused_connection, err, r.http_status != 0)) {
    res = httplib::Response();
    sent = http_->send(req, res, err);
  }
  if (!sent) {
    r.error = ran_out_of_time() ? "timed out after " + FormatSeconds(timeout_s_)
                                : "transport error: " + httplib::to_string(err);
    return r;
  }
  if (res.status != 200) {
    r.http_status = res.status;
    r.error = ErrorMessage(res.status, error_body);
    return r;
  }
  parser.Finish();
  if (r.error.empty() && r.chunks == 0) r.error = "the stream carried no token";
  r.success = r.error.empty();
  return r;
}

StatusOr<std::string> BenchClient::Call(const std::string& method, const std::string& path,
                                        const std::string& body) {
  const auto call = [&] {
    return method == "GET" ? http_->Get(url_.prefix + path)
                           : http_->Post(url_.prefix + path, body, "application/json");
  };
  const bool reused_connection = http_->is_socket_open() != 0;
  httplib::Result res = call();
  // Listing models and counting tokens are idempotent: safe to resend whatever came back.
  if (!res && ShouldRetryOnFreshConnection(reused_connection, res.error(), false)) res = call();
  if (!res) {
    return Status::Unavailable(method + " " + path + ": " + httplib::to_string(res.error()) +
                               " error (is the server at " + url_.origin + " up?)");
  }
  if (res->status != 200) {
    return Status::Unavailable(method + " " + path + ": " + ErrorMessage(res->status, res->body));
  }
  return res->body;
}

StatusOr<std::string> BenchClient::FirstModel() {
  SY_ASSIGN_OR_RETURN(const std::string body, Call("GET", "/v1/models", ""));
  const auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() ||
      !j["data"][0].is_object() || !j["data"][0].contains("id") ||
      !j["data"][0]["id"].is_string()) {
    return Status::Unavailable("GET /v1/models returned no model");
  }
  return j["data"][0]["id"].get<std::string>();
}

StatusOr<int64_t> BenchClient::CountTokens(const std::string& model, const std::string& text) {
  const nlohmann::json req = {{"model", model}, {"prompt", text}};
  SY_ASSIGN_OR_RETURN(const std::string body, Call("POST", "/tokenize", req.dump()));
  const auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("count") && j["count"].is_number_integer()) {
    return j["count"].get<int64_t>();
  }
  if (j.is_object() && j.contains("tokens") && j["tokens"].is_array()) {
    return static_cast<int64_t>(j["tokens"].size());
  }
  return Status::Unavailable("POST /tokenize returned neither count nor tokens");
}

}  // namespace sy::bench
