// HttpServer over a scripted fake engine on 127.0.0.1: routes, status codes and error bodies,
// non-streaming and SSE responses, readiness, and that a client going away (mid-stream or while
// a non-streaming request waits) aborts its engine request. The fake engine emits "t0 t1 ..."
// one token per `token_delay`, so every expected body is written down by hand. Also X-Request-Id
// and the access-log line, read back from spdlog through a ring-buffer sink.
#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <stdexcept>
#include <thread>

#include "tests/common/fake_engine.h"

namespace sy::http {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

using sy::testing::FakeEngine;

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sy::testing::ServeFake(&engine_, &ctx_);
    HttpServerOptions options;
    options.port = 0;
    options.limits.max_body_bytes = 1 << 20;
    server_ = std::make_unique<HttpServer>(&ctx_, options);
    ASSERT_TRUE(server_->Start().ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_read_timeout(10, 0);
  }
  void TearDown() override { server_->Stop(); }

  httplib::Result Post(const std::string& path, const std::string& body) {
    return client_->Post(path.c_str(), body, "application/json");
  }
  // Asserts an OpenAI error object with the given status.
  void ExpectError(const httplib::Result& r, int status) {
    ASSERT_TRUE(r) << "no response";
    EXPECT_EQ(r->status, status) << r->body;
    json body = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << r->body;
    ASSERT_TRUE(body.contains("error")) << r->body;
    EXPECT_TRUE(body["error"]["message"].is_string());
    EXPECT_TRUE(body["error"]["type"].is_string());
    EXPECT_TRUE(body["error"].contains("param"));
    EXPECT_TRUE(body["error"].contains("code"));
  }
  bool WaitFor(const std::function<bool()>& cond) {
    for (int i = 0; i < 300 && !cond(); ++i) std::this_thread::sleep_for(10ms);
    return cond();
  }

  FakeEngine engine_;
  ServingContext ctx_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(HttpServerTest, CompletionNonStreaming) {
  auto r = Post("/v1/completions", R"({"model": "tiny", "prompt": "ab", "max_tokens": 3})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json body = json::parse(r->body);
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["model"], "tiny");
  EXPECT_EQ(body["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  ASSERT_EQ(body["choices"].size(), 1u);
  EXPECT_EQ(body["choices"][0]["text"], "t0 t1 t2 ");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  // Prompt: <s> a b = 3 tokens; 3 generated.
  EXPECT_EQ(body["usage"], json::parse(R"({"prompt_tokens": 3, "completion_tokens": 3,
                                           "total_tokens": 6})"));
  ASSERT_EQ(engine_.submitted.size(), 1u);
  EXPECT_EQ(engine_.submitted[0].prompt, (std::vector<int32_t>{256, 97, 98}));
  EXPECT_EQ(server_->active_requests(), 0u);
}

TEST_F(HttpServerTest, MultiplePromptsAndChoicesAreIndexedPromptMajor) {
  auto r = Post("/v1/completions", R"({"prompt": ["a", "b"], "n": 2, "max_tokens": 1})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json body = json::parse(r->body);
  ASSERT_EQ(body["choices"].size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(body["choices"][i]["index"], i);
  // Two prompts of 2 tokens each; 2 choices x 1 token per prompt.
  EXPECT_EQ(body["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(body["usage"]["completion_tokens"], 4);
}

// Splits an SSE body into the JSON of its data events; the last must be [DONE].
std::vector<json> SseEvents(const std::string& body) {
  std::vector<json> events;
  size_t pos = 0;
  bool done = false;
  while (pos < body.size()) {
    const size_t end = body.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << "unterminated event";
    if (end == std::string::npos) break;
    const std::string event = body.substr(pos, end - pos);
    pos = end + 2;
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    EXPECT_FALSE(done) << "event after [DONE]";
    if (event == "data: [DONE]") {
      done = true;
      continue;
    }
    events.push_back(json::parse(event.substr(6)));
  }
  EXPECT_TRUE(done);
  return events;
}

TEST_F(HttpServerTest, CompletionStreamingWithUsage) {
  auto r = Post("/v1/completions", R"({"prompt": "ab", "max_tokens": 2, "stream": true,
                                       "stream_options": {"include_usage": true}})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  std::vector<json> events = SseEvents(r->body);
  ASSERT_EQ(events.size(), 3u) << r->body;
  const std::string id = events[0]["id"];
  for (const json& e : events) {
    EXPECT_EQ(e["id"], id);
    EXPECT_EQ(e["object"], "text_completion");
  }
  EXPECT_EQ(events[0]["choices"][0]["text"], "t0 ");
  EXPECT_EQ(events[0]["choices"][0]["finish_reason"], nullptr);
  EXPECT_TRUE(events[0]["usage"].is_null());
  EXPECT_EQ(events[1]["choices"][0]["text"], "t1 ");
  EXPECT_EQ(events[1]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(events[2]["choices"], json::array());
  EXPECT_EQ(events[2]["usage"], json::parse(R"({"prompt_tokens": 3, "completion_tokens": 2,
                                                "total_tokens": 5})"));
}

TEST_F(HttpServerTest, ChatNonStreamingAndStreaming) {
  auto tmpl = ChatTemplate::FromSource(
      "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>"
      "{% endif %}",
      "", "");
  ASSERT_TRUE(tmpl.ok()) << tmpl.status().ToString();
  ctx_.chat_template = *tmpl;
  const std::string messages = R"("messages": [{"role": "user", "content": "hi"}])";
  auto r = Post("/v1/chat/completions", "{" + messages + R"(, "max_completion_tokens": 2})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json body = json::parse(r->body);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(body["choices"][0]["message"], json::parse(R"({"role": "assistant",
                                                            "content": "t0 t1 "})"));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  // "hi>" is 3 tokens (chat prompts get no <s>).
  EXPECT_EQ(body["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(engine_.submitted.back().prompt, (std::vector<int32_t>{'h', 'i', '>'}));

  r = Post("/v1/chat/completions", "{" + messages + R"(, "max_tokens": 2, "stream": true})");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  std::vector<json> events = SseEvents(r->body);
  ASSERT_EQ(events.size(), 3u) << r->body;
  for (const json& e : events) EXPECT_EQ(e["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"], json::parse(R"({"role": "assistant",
                                                              "content": ""})"));
  EXPECT_EQ(events[1]["choices"][0]["delta"], json::parse(R"({"content": "t0 "})"));
  EXPECT_EQ(events[1]["choices"][0]["finish_reason"], nullptr);
  EXPECT_EQ(events[2]["choices"][0]["delta"], json::parse(R"({"content": "t1 "})"));
  EXPECT_EQ(events[2]["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(events[2].contains("usage"));
}

TEST_F(HttpServerTest, StreamsAreNotCompressed) {
  // httpx (the openai client) asks for gzip; a compressed SSE stream would arrive in bursts.
  client_->set_decompress(false);
  httplib::Headers headers = {{"Accept-Encoding", "gzip, deflate, br"}};
  auto r =
      client_->Post("/v1/completions", headers,
                    R"({"prompt": "ab", "max_tokens": 1, "stream": true})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->has_header("Content-Encoding"));
  EXPECT_EQ(r->body.rfind("data: {", 0), 0u) << r->body;
}

TEST_F(HttpServerTest, EngineFaultIs500OrAnErrorEvent) {
  engine_.state->fail_at = 1;
  ExpectError(Post("/v1/completions", R"({"prompt": "a", "max_tokens": 5})"), 500);
  auto r = Post("/v1/completions", R"({"prompt": "a", "max_tokens": 5, "stream": true})");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);  // the fault came after the headers
  std::vector<json> events = SseEvents(r->body);
  ASSERT_EQ(events.size(), 2u) << r->body;
  EXPECT_EQ(events[0]["choices"][0]["text"], "t0 ");
  EXPECT_EQ(events[1]["error"]["message"], "kernel exploded");
  EXPECT_EQ(events[1]["error"]["type"], "internal_error");
}

TEST_F(HttpServerTest, ErrorsHaveStatusAndOpenAiBody) {
  ExpectError(Post("/v1/completions", "{not json"), 400);
  ExpectError(Post("/v1/completions", "[1, 2]"), 400);
  ExpectError(Post("/v1/completions", "{\"prompt\": \"\xC3\x28\"}"), 400);
  ExpectError(Post("/v1/completions", R"({"prompt": "a", "max_tokens": -1})"), 400);
  ExpectError(Post("/v1/completions", R"({"prompt": "a", "max_tokens": 1000})"), 400);
  ExpectError(Post("/v1/completions", R"({"prompt": ""})"), 400);
  ExpectError(Post("/v1/completions", R"({"model": "other", "prompt": "a"})"), 404);
  ExpectError(Post("/v1/chat/completions", R"({"messages": [{"role": "user", "content": "hi"}]})"),
              400);  // this model has no chat template
  ExpectError(Post("/v1/completions", R"({"prompt": "a", "response_format": {"type": 5}})"), 400);
  ExpectError(Post("/v1/completions",
                   "{\"prompt\": " + std::string(100000, '[') + std::string(100000, ']') + "}"),
              400);
  ExpectError(Post("/v1/nothing", "{}"), 404);
  ExpectError(client_->Get("/v1/completions"), 405);
  ExpectError(Post("/v1/models", "{}"), 405);
  ExpectError(Post("/v1/completions", std::string(2 << 20, ' ')), 413);
  EXPECT_TRUE(engine_.submitted.empty());
  // The server is still healthy after all of that.
  auto health = client_->Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

TEST_F(HttpServerTest, DeepNestingIs400OnEveryJsonRoute) {
  // 300,000 levels would overflow the stack of any recursive walk; the parse refuses it first.
  const std::string deep = std::string(300000, '[') + std::string(300000, ']');
  for (const std::string path :
       {"/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"}) {
    auto r = Post(path, R"({"prompt": "a", "x": )" + deep + "}");
    ExpectError(r, 400);
    EXPECT_NE(r->body.find("deeper than 64 levels"), std::string::npos) << path << r->body;
  }
  EXPECT_TRUE(engine_.submitted.empty());
  EXPECT_EQ(client_->Get("/health")->status, 200);
}

TEST_F(HttpServerTest, EngineRejectionsMapTo429And503WithRetryAfter) {
  engine_.reject = Status::ResourceExhausted("queue full");
  auto r = Post("/v1/completions", R"({"prompt": "a", "max_tokens": 1})");
  ExpectError(r, 429);
  EXPECT_FALSE(r->get_header_value("Retry-After").empty());
  engine_.reject = Status::Unavailable("draining");
  r = Post("/v1/completions", R"({"prompt": "a", "max_tokens": 1, "stream": true})");
  ExpectError(r, 503);
  EXPECT_FALSE(r->get_header_value("Retry-After").empty());
}

TEST_F(HttpServerTest, WhileLoadingOnlyHealthAndMetricsAnswer) {
  ctx_.ready = false;
  ctx_.loaded = false;
  EXPECT_EQ(client_->Get("/health")->status, 200);  // alive: loading is not dead
  ExpectError(client_->Get("/health/ready"), 503);
  ExpectError(client_->Get("/v1/models"), 503);
  ExpectError(Post("/tokenize", R"({"prompt": "a"})"), 503);
  ExpectError(Post("/detokenize", R"({"tokens": [1]})"), 503);
  ExpectError(Post("/v1/completions", R"({"prompt": "a", "max_tokens": 1})"), 503);
  EXPECT_EQ(client_->Get("/metrics")->status, 200);
  EXPECT_TRUE(engine_.submitted.empty());
}

TEST_F(HttpServerTest, NotReadyRefusesGenerationButServesHealth) {
  ctx_.ready = false;
  auto r = Post("/v1/completions", R"({"prompt": "a", "max_tokens": 1})");
  ExpectError(r, 503);
  EXPECT_FALSE(r->get_header_value("Retry-After").empty());
  ExpectError(client_->Get("/ready"), 503);
  ExpectError(client_->Get("/health/ready"), 503);
  EXPECT_EQ(client_->Get("/health")->status, 200);
  ctx_.ready = true;
  EXPECT_EQ(client_->Get("/ready")->status, 200);
  engine_.alive = false;
  ExpectError(client_->Get("/health"), 503);
  // A dead engine serves nothing: readiness follows it, though `ready` is still set.
  ExpectError(client_->Get("/health/ready"), 503);
  ExpectError(client_->Get("/ready"), 503);
}

TEST_F(HttpServerTest, AHandlerExceptionIs500WithoutItsText) {
  engine_.throw_from_submit = "secret detail of the failure";
  auto r = Post("/v1/completions", R"({"prompt": "a", "max_tokens": 1})");
  ExpectError(r, 500);
  EXPECT_EQ(r->body.find("secret"), std::string::npos) << r->body;
  EXPECT_EQ(client_->Get("/health")->status, 200);
}

TEST_F(HttpServerTest, InfoRoutes) {
  auto models = client_->Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(models->status, 200);
  json m = json::parse(models->body);
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 1u);
  EXPECT_EQ(m["data"][0]["id"], "tiny");
  EXPECT_EQ(m["data"][0]["object"], "model");
  EXPECT_EQ(m["data"][0]["max_model_len"], 64);

  auto tok = Post("/tokenize", R"({"prompt": "hi"})");
  ASSERT_TRUE(tok);
  EXPECT_EQ(json::parse(tok->body),
            json::parse(R"({"tokens": [256, 104, 105], "count": 3, "max_model_len": 64})"));
  auto detok = Post("/detokenize", R"({"tokens": [104, 105]})");
  ASSERT_TRUE(detok);
  EXPECT_EQ(json::parse(detok->body), json::parse(R"({"prompt": "hi"})"));
  ExpectError(Post("/detokenize", R"({"tokens": [100000]})"), 400);

  auto metrics = client_->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->body, "sy_up 1\n");
  EXPECT_EQ(metrics->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0), 0u);
  auto version = client_->Get("/version");
  ASSERT_TRUE(version);
  EXPECT_TRUE(json::parse(version->body)["version"].is_string());
}

// Sends a raw request and returns the connected socket (the caller closes it).
int SendRaw(int port, const std::string& body) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string request =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  EXPECT_EQ(send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  return fd;
}

TEST_F(HttpServerTest, ClientDisconnectMidStreamAborts) {
  engine_.state->token_delay = 50ms;
  // 60 tokens at 50 ms would stream for 3 s; the client leaves after the first bytes.
  const int fd = SendRaw(server_->port(), R"({"prompt": "a", "max_tokens": 60, "stream": true})");
  char buf[512];
  ASSERT_GT(recv(fd, buf, sizeof(buf), 0), 0);
  close(fd);
  EXPECT_TRUE(WaitFor([&] { return engine_.NumAborted() == 1; }));
  EXPECT_TRUE(WaitFor([&] { return server_->active_requests() == 0; }));
}

TEST_F(HttpServerTest, ClientDisconnectWhileWaitingAborts) {
  engine_.state->token_delay = 100ms;
  const int fd = SendRaw(server_->port(), R"({"prompt": "a", "max_tokens": 60})");
  ASSERT_TRUE(WaitFor([&] { return server_->active_requests() == 1; }));
  close(fd);
  const auto start = Clock::now();
  EXPECT_TRUE(WaitFor([&] { return engine_.NumAborted() == 1; }));
  EXPECT_LT(Clock::now() - start, 1s);  // far sooner than the 6 s the request would take
  EXPECT_TRUE(WaitFor([&] { return server_->active_requests() == 0; }));
}

TEST_F(HttpServerTest, PortInUseIsAnError) {
  HttpServerOptions options;
  options.port = server_->port();
  HttpServer second(&ctx_, options);
  Status s = second.Start();
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
}

// Captures what spdlog's default logger writes (message text only) while it lives.
class LogCapture {
 public:
  LogCapture()
      : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256)),
        previous_(spdlog::default_logger()) {
    sink_->set_pattern("%v");
    auto logger = std::make_shared<spdlog::logger>("capture", sink_);
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  // The access-log lines so far (other log lines left out), without line ends.
  std::vector<std::string> AccessLines() {
    std::vector<std::string> lines;
    for (std::string line : sink_->last_formatted()) {
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      if (line.rfind("access ", 0) == 0) lines.push_back(line);
    }
    return lines;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> previous_;
};

// The value of `key=` in an access line ("" when absent).
std::string Field(const std::string& line, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(line, m, std::regex("(^| )" + key + "=([^ ]*)"))) return "";
  return m[2];
}

TEST_F(HttpServerTest, ClientRequestIdIsEchoedAndLogged) {
  LogCapture capture;
  httplib::Headers headers = {{"X-Request-Id", "trace-42.abc_DEF"}};
  auto r = client_->Post("/v1/completions", headers, R"({"prompt": "ab", "max_tokens": 3})",
                         "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("X-Request-Id"), "trace-42.abc_DEF");
  std::vector<std::string> lines = capture.AccessLines();
  ASSERT_EQ(lines.size(), 1u);
  const std::string& line = lines[0];
  EXPECT_EQ(Field(line, "id"), "trace-42.abc_DEF");
  EXPECT_EQ(Field(line, "method"), "POST");
  EXPECT_EQ(Field(line, "route"), "/v1/completions");
  EXPECT_EQ(Field(line, "status"), "200");
  // Prompt: <s> a b = 3 tokens; 3 generated, the last by max_tokens.
  EXPECT_EQ(Field(line, "prompt_tokens"), "3");
  EXPECT_EQ(Field(line, "completion_tokens"), "3");
  EXPECT_EQ(Field(line, "finish"), "length");
  const double ttft = std::stod(Field(line, "ttft_ms"));
  const double duration = std::stod(Field(line, "duration_ms"));
  EXPECT_GE(ttft, 0.0);
  EXPECT_LE(ttft, duration);
}

TEST_F(HttpServerTest, MissingOrInvalidRequestIdIsReplacedByAGeneratedOne) {
  // (A control character such as DEL is not a valid header value at all: the request is 400.)
  const std::vector<std::string> bad = {std::string(129, 'a'), "has space", "tab\there",
                                        "caf\xC3\xA9"};
  std::set<std::string> seen;
  for (size_t i = 0; i <= bad.size(); ++i) {
    httplib::Headers headers;
    if (i < bad.size()) headers.emplace("X-Request-Id", bad[i]);
    auto r = client_->Post("/v1/completions", headers, R"({"prompt": "a", "max_tokens": 1})",
                           "application/json");
    ASSERT_TRUE(r) << i;
    EXPECT_EQ(r->status, 200) << r->body;
    const std::string id = r->get_header_value("X-Request-Id");
    EXPECT_TRUE(std::regex_match(id, std::regex("req-[0-9a-f]{32}"))) << i << ": " << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), bad.size() + 1);  // fresh each time
  ExpectError(
      client_->Post("/v1/completions", {{"X-Request-Id", "del\x7f"}}, "{}", "application/json"),
      400);
  // 128 characters is still accepted.
  const std::string longest(128, 'z');
  auto r = client_->Post("/v1/completions", {{"X-Request-Id", longest}},
                         R"({"prompt": "a", "max_tokens": 1})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get_header_value("X-Request-Id"), longest);
}

TEST_F(HttpServerTest, StreamIsLoggedWhenItEnds) {
  LogCapture capture;
  auto r =
      client_->Post("/v1/completions", {{"X-Request-Id", "s1"}},
                    R"({"prompt": "ab", "max_tokens": 2, "stream": true})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("X-Request-Id"), "s1");
  // The line is written once the stream's last chunk has been sent.
  ASSERT_TRUE(WaitFor([&] { return capture.AccessLines().size() == 1; }));
  const std::string line = capture.AccessLines()[0];
  EXPECT_EQ(Field(line, "id"), "s1");
  EXPECT_EQ(Field(line, "route"), "/v1/completions");
  EXPECT_EQ(Field(line, "prompt_tokens"), "3");
  EXPECT_EQ(Field(line, "status"), "200");
  EXPECT_EQ(Field(line, "completion_tokens"), "2");
  EXPECT_EQ(Field(line, "finish"), "length");
  EXPECT_NE(Field(line, "ttft_ms"), "-");
}

TEST_F(HttpServerTest, StreamTheClientLeftIsLoggedAs499Abort) {
  engine_.state->token_delay = 50ms;
  LogCapture capture;
  const int fd = SendRaw(server_->port(), R"({"prompt": "a", "max_tokens": 60, "stream": true})");
  char buf[512];
  ASSERT_GT(recv(fd, buf, sizeof(buf), 0), 0);
  close(fd);
  ASSERT_TRUE(WaitFor([&] { return capture.AccessLines().size() == 1; }));
  const std::string line = capture.AccessLines()[0];
  EXPECT_EQ(Field(line, "status"), "499");
  EXPECT_EQ(Field(line, "finish"), "abort");
  EXPECT_TRUE(std::regex_match(Field(line, "id"), std::regex("req-[0-9a-f]{32}"))) << line;
  EXPECT_LT(std::stoi(Field(line, "completion_tokens")), 60);  // left long before the end
}

TEST_F(HttpServerTest, RejectedRequestIsLoggedWithItsStatus) {
  LogCapture capture;
  auto r = client_->Post("/v1/completions", {{"X-Request-Id", "bad-1"}},
                         R"({"prompt": "a", "max_tokens": -1})", "application/json");
  ExpectError(r, 400);
  EXPECT_EQ(r->get_header_value("X-Request-Id"), "bad-1");
  std::vector<std::string> lines = capture.AccessLines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(Field(lines[0], "id"), "bad-1");
  EXPECT_EQ(Field(lines[0], "status"), "400");
  EXPECT_EQ(Field(lines[0], "prompt_tokens"), "0");
  EXPECT_EQ(Field(lines[0], "completion_tokens"), "0");
  EXPECT_EQ(Field(lines[0], "ttft_ms"), "-");
  EXPECT_EQ(Field(lines[0], "finish"), "-");
}

TEST_F(HttpServerTest, NoAccessLineWhenDisabled) {
  HttpServerOptions options;
  options.port = 0;
  options.access_log = false;
  HttpServer quiet(&ctx_, options);
  ASSERT_TRUE(quiet.Start().ok());
  httplib::Client client("127.0.0.1", quiet.port());
  LogCapture capture;
  auto r = client.Post("/v1/completions", {{"X-Request-Id", "q1"}},
                       R"({"prompt": "a", "max_tokens": 1})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("X-Request-Id"), "q1");  // still echoed
  r = client.Post("/v1/completions", R"({"prompt": "a", "max_tokens": 1, "stream": true})",
                  "application/json");
  ASSERT_TRUE(r);
  std::this_thread::sleep_for(50ms);  // past when a stream's line would have been written
  EXPECT_TRUE(capture.AccessLines().empty());
  quiet.Stop();
}

}  // namespace
}  // namespace sy::http
