// The HTTP front door against hostile or broken clients, over raw sockets on 127.0.0.1: API keys
// and the admin key, the body cap for every framing, 411/415/431/400 for bad framing, deadlines
// for a request's head and body and for idle keep-alive connections, the connection cap, Expect:
// 100-continue, pipelining, and a stream whose client stops reading. Every expectation is the
// documented status with an OpenAI error body, and the server keeps serving after each.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "server/http/http_server.h"
#include "tests/common/fake_engine.h"

namespace sy::http {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using sy::testing::FakeEngine;

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

void SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close early (e.g. after 413); what it said is read next
    sent += static_cast<size_t>(n);
  }
}

// Reads until the peer closes or `timeout` passes; returns what arrived.
std::string ReadUntilClosed(int fd, std::chrono::milliseconds timeout = 3000ms) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 20) <= 0) continue;
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Whether the peer closed the connection within `timeout` (reading and dropping any data).
bool ClosedWithin(int fd, std::chrono::milliseconds timeout) {
  const auto start = std::chrono::steady_clock::now();
  ReadUntilClosed(fd, timeout);
  return std::chrono::steady_clock::now() - start < timeout;
}

int StatusOf(const std::string& response) {
  if (response.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::stoi(response.substr(9, 3));
}

// The body of the first response in `raw` (Content-Length framed).
std::string BodyOf(const std::string& raw) {
  const size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) return "";
  const size_t cl = raw.find("Content-Length: ");
  if (cl == std::string::npos || cl > head_end) return raw.substr(head_end + 4);
  const size_t length = std::stoul(raw.substr(cl + 16));
  return raw.substr(head_end + 4, length);
}

void ExpectErrorBody(const std::string& raw, int status) {
  EXPECT_EQ(StatusOf(raw), status) << raw;
  const json body = json::parse(BodyOf(raw), nullptr, false);
  ASSERT_TRUE(body.is_object() && body.contains("error")) << raw;
  EXPECT_TRUE(body["error"]["message"].is_string());
  EXPECT_TRUE(body["error"].contains("type") && body["error"].contains("param") &&
              body["error"].contains("code"));
}

const std::string kCompletion = R"({"prompt": "ab", "max_tokens": 2})";

std::string Post(const std::string& path, const std::string& body, const std::string& extra = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::string Get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n";
}

class FrontDoorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sy::testing::ServeFake(&engine_, &ctx_);
    options_.port = 0;
    options_.limits.max_body_bytes = 4096;
    options_.limits.header_timeout = 300ms;
    options_.limits.body_timeout = 300ms;
    options_.limits.keep_alive_timeout = 300ms;
  }
  void StartServer() {
    server_ = std::make_unique<HttpServer>(&ctx_, options_);
    ASSERT_TRUE(server_->Start().ok());
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }
  // One request on a fresh connection; the response as read until the server closes (every
  // request here asks for Connection: close) or 3 s.
  std::string Exchange(const std::string& request) {
    const int fd = Connect(server_->port());
    SendAll(fd, request);
    std::string out = ReadUntilClosed(fd);
    close(fd);
    return out;
  }
  bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!cond() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
    return cond();
  }
  bool WaitForZero() {
    return WaitFor([&] { return server_->open_connections() == 0; }, 2000ms);
  }
  void ExpectHealthy() {
    EXPECT_EQ(StatusOf(Exchange(Get("/health", "Connection: close\r\n"))), 200);
  }

  FakeEngine engine_;
  ServingContext ctx_;
  HttpServerOptions options_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(FrontDoorTest, UserKeysGuardTheApiButNotHealth) {
  SecurityOptions security;
  security.api_keys = {"k1", "k2"};
  options_.access = AccessFrom(security);
  StartServer();
  const std::string close = "Connection: close\r\n";
  const std::string missing = Exchange(Post("/v1/completions", kCompletion, close));
  ExpectErrorBody(missing, 401);
  EXPECT_EQ(json::parse(BodyOf(missing))["error"]["code"], "invalid_api_key");
  ExpectErrorBody(
      Exchange(Post("/v1/completions", kCompletion, "Authorization: Bearer nope\r\n" + close)),
      401);
  ExpectErrorBody(Exchange(Post("/tokenize", R"({"prompt": "a"})", close)), 401);
  ExpectErrorBody(Exchange(Get("/v1/models", close)), 401);
  EXPECT_EQ(StatusOf(Exchange(
                Post("/v1/completions", kCompletion, "Authorization: Bearer k2\r\n" + close))),
            200);
  EXPECT_EQ(StatusOf(Exchange(Get("/v1/models", "Authorization: bearer k1\r\n" + close))), 200);
  EXPECT_EQ(StatusOf(Exchange(Get("/metrics", close))), 200);  // open unless protected
  EXPECT_EQ(StatusOf(Exchange(Get("/health/ready", close))), 200);
  ExpectHealthy();
}

TEST_F(FrontDoorTest, ProtectedMetricsNeedAUserKey) {
  SecurityOptions security;
  security.api_keys = {"k1"};
  security.protect_metrics = true;
  options_.access = AccessFrom(security);
  StartServer();
  ExpectErrorBody(Exchange(Get("/metrics", "Connection: close\r\n")), 401);
  EXPECT_EQ(
      StatusOf(Exchange(Get("/metrics", "Authorization: Bearer k1\r\nConnection: close\r\n"))),
      200);
}

TEST_F(FrontDoorTest, AdminRoutesAreOffWithoutAnAdminKey) {
  StartServer();
  const std::string off = Exchange(Get("/admin/placement", "Connection: close\r\n"));
  ExpectErrorBody(off, 403);
  EXPECT_NE(BodyOf(off).find("--admin-api-key"), std::string::npos);
  ExpectErrorBody(Exchange(Post("/admin/placement", "{}", "Connection: close\r\n")), 403);
}

TEST_F(FrontDoorTest, AdminKeyIsSeparateFromUserKeys) {
  SecurityOptions security;
  security.api_keys = {"user"};
  security.admin_api_key = "root";
  options_.access = AccessFrom(security);
  StartServer();
  const std::string close = "Connection: close\r\n";
  ExpectErrorBody(Exchange(Get("/admin/placement", close)), 401);
  ExpectErrorBody(Exchange(Get("/admin/placement", "Authorization: Bearer user\r\n" + close)), 401);
  // The admin key opens the route (one rank: no placement, 404) but not the user API.
  ExpectErrorBody(Exchange(Get("/admin/placement", "Authorization: Bearer root\r\n" + close)), 404);
  ExpectErrorBody(
      Exchange(Post("/v1/completions", kCompletion, "Authorization: Bearer root\r\n" + close)),
      401);
}

TEST_F(FrontDoorTest, BodyCapHoldsForContentLengthAndChunked) {
  StartServer();
  // Refused from the head alone: the 5 MB body is never read.
  ExpectErrorBody(Exchange("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000"
                           "\r\n\r\n" +
                           std::string(5000, 'x')),
                  413);
  std::string chunked =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 10; ++i) chunked += "400\r\n" + std::string(1024, ' ') + "\r\n";
  chunked += "0\r\n\r\n";
  ExpectErrorBody(Exchange(chunked), 413);
  // Under the cap, chunked is fine.
  const std::string ok =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
      "Transfer-Encoding: chunked\r\n\r\n" +
      fmt::format("{:x}\r\n{}\r\n0\r\n\r\n", kCompletion.size(), kCompletion);
  EXPECT_EQ(StatusOf(Exchange(ok)), 200);
  ExpectHealthy();
}

TEST_F(FrontDoorTest, BadFramingIsRefused) {
  StartServer();
  // No length at all: the body would run to EOF, which HTTP/1.1 requests may not do.
  ExpectErrorBody(Exchange("POST /v1/completions HTTP/1.1\r\nHost: x\r\n\r\n" + kCompletion), 411);
  ExpectErrorBody(Exchange(Post("/v1/completions", kCompletion, "Content-Encoding: gzip\r\n")),
                  415);
  // Both lengths: a request-smuggling shape.
  ExpectErrorBody(Exchange("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
                  400);
  ExpectErrorBody(Exchange("POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                           "Transfer-Encoding: gzip\r\n\r\n"),
                  400);
  ExpectErrorBody(Exchange(Get("/health", "X-Big: " + std::string(20000, 'a') + "\r\n")), 431);
  ExpectErrorBody(Exchange("GARBAGE\r\n\r\n"), 400);
  ExpectErrorBody(Exchange("GET /health HTTP/2.0\r\nHost: x\r\n\r\n"), 400);
  ExpectErrorBody(Exchange(Post("/v1/completions", kCompletion, "Expect: magic\r\n")), 417);
  ExpectHealthy();
}

TEST_F(FrontDoorTest, SlowHeadAndSlowBodyGet408) {
  StartServer();
  int fd = Connect(server_->port());
  SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\n");  // the head never ends
  std::string out = ReadUntilClosed(fd, 2000ms);
  close(fd);
  ExpectErrorBody(out, 408);
  fd = Connect(server_->port());
  SendAll(fd, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{");
  out = ReadUntilClosed(fd, 2000ms);
  close(fd);
  ExpectErrorBody(out, 408);
  ExpectHealthy();
}

TEST_F(FrontDoorTest, IdleConnectionsAreClosed) {
  StartServer();
  int fd = Connect(server_->port());  // never sends a byte
  EXPECT_TRUE(ClosedWithin(fd, 2000ms));
  close(fd);
  fd = Connect(server_->port());
  SendAll(fd, Get("/health"));  // keep-alive, then idle
  EXPECT_TRUE(ClosedWithin(fd, 2000ms));
  close(fd);
  EXPECT_TRUE(WaitForZero());
}

TEST_F(FrontDoorTest, ConnectionsBeyondTheCapGet503) {
  options_.max_connections = 2;
  options_.limits.keep_alive_timeout = 5000ms;
  options_.limits.header_timeout = 5000ms;
  StartServer();
  const int a = Connect(server_->port());
  const int b = Connect(server_->port());
  std::this_thread::sleep_for(100ms);
  const int c = Connect(server_->port());
  const std::string refused = ReadUntilClosed(c, 2000ms);
  close(c);
  ExpectErrorBody(refused, 503);
  EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos);
  close(a);
  close(b);
  ASSERT_TRUE(WaitForZero());
  ExpectHealthy();  // room again
}

TEST_F(FrontDoorTest, ExpectContinueAndPipelining) {
  StartServer();
  int fd = Connect(server_->port());
  SendAll(fd,
          "POST /v1/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
          "Content-Length: " +
              std::to_string(kCompletion.size()) + "\r\nConnection: close\r\n\r\n");
  char buf[64];
  const ssize_t n = recv(fd, buf, sizeof(buf), 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "HTTP/1.1 100 Continue\r\n\r\n");
  SendAll(fd, kCompletion);
  EXPECT_EQ(StatusOf(ReadUntilClosed(fd)), 200);
  close(fd);

  // Two requests in one write: two answers, in order.
  fd = Connect(server_->port());
  SendAll(fd, Post("/v1/completions", kCompletion) + Get("/version", "Connection: close\r\n"));
  const std::string both = ReadUntilClosed(fd);
  close(fd);
  EXPECT_EQ(StatusOf(both), 200);
  const size_t second = both.find("HTTP/1.1 200", 10);
  ASSERT_NE(second, std::string::npos) << both;
  EXPECT_NE(both.find("\"version\"", second), std::string::npos);
}

TEST_F(FrontDoorTest, AStreamWhoseClientStopsReadingIsCutOff) {
  options_.limits.max_pending_output = 16u << 10;
  engine_.model_len = 1 << 30;
  StartServer();
  const int fd = Connect(server_->port());
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  // 64 choices x 100k tokens as fast as the engine makes them; the client reads nothing.
  SendAll(fd, Post("/v1/completions",
                   R"({"prompt": "a", "n": 64, "max_tokens": 100000, "stream": true})"));
  EXPECT_TRUE(WaitFor([&] { return engine_.NumAborted() == 1; }, 10s));
  EXPECT_TRUE(WaitFor([&] { return server_->active_requests() == 0; }, 2s));
  close(fd);
  ExpectHealthy();
}

// A stream is many small writes; with Nagle's algorithm on, each waits for the client's delayed
// ACK (40 ms on Linux), so 40 short streams would take ~1.7 s instead of ~0.2 s.
TEST_F(FrontDoorTest, SmallWritesAreNotDelayed) {
  StartServer();
  const int fd = Connect(server_->port());
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 40; ++i) {
    SendAll(fd, Post("/v1/completions", R"({"prompt": "a", "max_tokens": 4, "stream": true})"));
    std::string got;
    char buf[4096];
    while (got.find("0\r\n\r\n",
                    got.find("[DONE]") == std::string::npos ? got.size() : got.find("[DONE]")) ==
           std::string::npos) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      ASSERT_GT(n, 0) << got;
      got.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1000ms);
}

}  // namespace
}  // namespace sy::http
