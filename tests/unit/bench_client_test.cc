// The load tester's client and driver against an in-test cpp-httplib server that streams canned
// SSE chunks with known sleeps, usage and failure modes.
#include "server/bench/bench_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "server/bench/bench_runner.h"
#include "server/bench/bench_stats.h"

namespace sy::bench {
namespace {

using std::chrono::milliseconds;

std::string TextChunk(const std::string& text) {
  return "data: " +
         nlohmann::json({{"id", "c1"}, {"choices", {{{"index", 0}, {"text", text}}}}}).dump() +
         "\n\n";
}

// One step of a canned stream: sleep, then write.
struct Step {
  int sleep_ms;
  std::string bytes;
};

// Serves /v1/models, /tokenize and a /v1/completions whose behaviour is picked by "model".
class FakeServer {
 public:
  FakeServer() {
    server_.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"object":"list","data":[{"id":"m1"},{"id":"m2"}]})", "application/json");
    });
    server_.Post("/tokenize", [](const httplib::Request& req, httplib::Response& res) {
      const auto j = nlohmann::json::parse(req.body);
      const std::string prompt = j["prompt"];
      res.set_content(nlohmann::json({{"count", prompt.size()}}).dump(), "application/json");
    });
    server_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      Complete(req, res);
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(milliseconds(1));
  }
  ~FakeServer() {
    server_.stop();
    thread_.join();
  }

  BaseUrl url() const { return {"http://127.0.0.1:" + std::to_string(port_), ""}; }
  nlohmann::json last_body() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_body_;
  }

 private:
  void Complete(const httplib::Request& req, httplib::Response& res) {
    const auto body = nlohmann::json::parse(req.body);
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_body_ = body;
    }
    const std::string model = body["model"];
    const std::string usage =
        R"(data: {"id":"c1","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5}})"
        "\n\n";
    std::vector<Step> steps;
    if (model == "ok") {
      steps = {{100, TextChunk("a")},
               {50, TextChunk("b")},
               {50, TextChunk("")},
               {0, usage + "data: [DONE]\n\n"}};
    } else if (model == "nousage") {
      steps = {{0, TextChunk("x")}, {20, TextChunk("y") + "data: [DONE]\n\n"}};
    } else if (model == "empty") {
      steps = {{0, "data: [DONE]\n\n"}};
    } else if (model == "broken") {
      steps = {{0, TextChunk("a")}, {0, "data: {\"error\":{\"message\":\"engine died\"}}\n\n"}};
    } else if (model == "slow") {
      steps = {{1000, TextChunk("late")}};
    } else if (model == "busy" || model == "limited") {
      res.status = model == "busy" ? 503 : 429;
      res.set_header("Retry-After", "1");
      res.set_content(R"({"error":{"message":"queue full","type":"server_error"}})",
                      "application/json");
      return;
    }
    res.set_chunked_content_provider("text/event-stream", [steps](size_t, httplib::DataSink& sink) {
      for (const Step& s : steps) {
        std::this_thread::sleep_for(milliseconds(s.sleep_ms));
        if (!sink.write(s.bytes.data(), s.bytes.size())) {
          return false;
        }
      }
      sink.done();
      return true;
    });
  }

  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  nlohmann::json last_body_;
};

BenchRequest TokenPrompt() {
  BenchRequest r;
  r.prompt = nlohmann::json::array({1, 2, 3});
  r.prompt_len = 3;
  r.output_len = 16;
  return r;
}

RequestRecord Send(BenchClient& client, const std::string& model, bool ignore_eos = false) {
  CompletionParams p;
  p.model = model;
  p.ignore_eos = ignore_eos;
  return client.Complete(p, TokenPrompt(), BenchClock::now());
}

TEST(BenchClient, TimesAStreamedCompletion) {
  FakeServer server;
  BenchClient client(server.url(), 10);
  const RequestRecord r = Send(client, "ok", /*ignore_eos=*/true);
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_EQ(r.http_status, 200);
  EXPECT_GE(r.start_s, 0);
  EXPECT_GE(r.ttft_s, 0.1);     // the server slept 100 ms before the first chunk
  EXPECT_GE(r.latency_s, 0.2);  // and 200 ms before the last
  EXPECT_LT(r.latency_s, 5.0);
  EXPECT_EQ(r.chunks, 3);  // the empty-text chunk counts, the usage chunk does not
  ASSERT_EQ(r.itl_s.size(), 2u);
  EXPECT_NEAR(std::accumulate(r.itl_s.begin(), r.itl_s.end(), 0.0), r.latency_s - r.ttft_s, 1e-9);
  EXPECT_EQ(r.output_tokens, 5);  // from usage
  EXPECT_EQ(r.prompt_len, 7);     // usage overrides the dataset's count
  EXPECT_EQ(r.generated_text, "ab");

  const nlohmann::json body = server.last_body();
  EXPECT_EQ(body["prompt"], nlohmann::json({1, 2, 3}));
  EXPECT_EQ(body["max_tokens"], 16);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_EQ(body["temperature"], 0.0);

  // The same connection serves the next request; without usage, chunks count as tokens.
  const RequestRecord n = Send(client, "nousage");
  ASSERT_TRUE(n.success) << n.error;
  EXPECT_EQ(n.output_tokens, 0);
  EXPECT_EQ(OutputTokens(n), 2);
  EXPECT_EQ(n.prompt_len, 3);
  EXPECT_FALSE(server.last_body().contains("ignore_eos"));
}

TEST(BenchClient, FailuresCarryStatusAndReason) {
  FakeServer server;
  BenchClient client(server.url(), 10);
  RequestRecord r = Send(client, "busy");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.http_status, 503);
  EXPECT_EQ(r.error, "HTTP 503: queue full");
  r = Send(client, "limited");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.http_status, 429);
  r = Send(client, "empty");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.http_status, 200);
  EXPECT_NE(r.error.find("no token"), std::string::npos);
  r = Send(client, "broken");
  EXPECT_FALSE(r.success);
  EXPECT_NE(r.error.find("engine died"), std::string::npos);
  // The client is still usable after failures.
  EXPECT_TRUE(Send(client, "nousage").success);
}

TEST(BenchClient, TimeoutAndRefusedConnection) {
  FakeServer server;
  BenchClient impatient(server.url(), 0.3);
  const auto t0 = BenchClock::now();
  const RequestRecord r = Send(impatient, "slow");
  EXPECT_FALSE(r.success);
  EXPECT_NE(r.error.find("timed out"), std::string::npos) << r.error;
  EXPECT_LT(std::chrono::duration<double>(BenchClock::now() - t0).count(), 0.9);

  BenchClient nowhere({"http://127.0.0.1:1", ""}, 2);
  const RequestRecord refused = Send(nowhere, "ok");
  EXPECT_FALSE(refused.success);
  EXPECT_EQ(refused.http_status, 0);
  EXPECT_FALSE(refused.error.empty());
}

TEST(BenchClient, ModelsAndTokenize) {
  FakeServer server;
  BenchClient client(server.url(), 10);
  auto model = client.FirstModel();
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ(*model, "m1");
  auto n = client.CountTokens("m1", "hello");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 5);
  BenchClient nowhere({"http://127.0.0.1:1", ""}, 2);
  EXPECT_FALSE(nowhere.FirstModel().ok());
}

// A raw HTTP/1.1 server that answers the first request of each connection with a one-token
// stream and keeps the connection open, then closes it unanswered when the next request arrives
// on it: a server closing an idle keep-alive connection just as the client reuses it.
class IdleClosingServer {
 public:
  IdleClosingServer() {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(listen_fd_, 8) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~IdleClosingServer() {
    shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    if (thread_.joinable()) thread_.join();
    close(listen_fd_);
  }

  BaseUrl url() const { return {"http://127.0.0.1:" + std::to_string(port_), ""}; }
  int connections() const { return connections_; }

 private:
  void Serve() {
    for (;;) {
      const int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      ++connections_;
      if (ReadRequest(fd)) {
        const std::string body = TextChunk("a") + "data: [DONE]\n\n";
        const std::string response =
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body;
        if (write(fd, response.data(), response.size()) != static_cast<ssize_t>(response.size())) {
          ADD_FAILURE() << "short write";
        }
        char next;
        (void)recv(fd, &next, 1, 0);  // idle until the client reuses the connection (or leaves)
      }
      close(fd);
    }
  }

  // Reads one request's head and its Content-Length body; false when the peer went away.
  static bool ReadRequest(int fd) {
    std::string in;
    char buf[4096];
    size_t head_end = std::string::npos;
    size_t need = 0;
    while (head_end == std::string::npos || in.size() < need) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return false;
      in.append(buf, static_cast<size_t>(n));
      if (head_end == std::string::npos && (head_end = in.find("\r\n\r\n")) != std::string::npos) {
        const size_t at = in.find("Content-Length: ");
        const size_t length = at < head_end ? std::stoul(in.substr(at + 16)) : 0;
        need = head_end + 4 + length;
      }
    }
    return true;
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<int> connections_{0};
  std::thread thread_;
};

TEST(BenchClient, ResendsOnAFreshConnectionWhenTheServerClosedTheIdleOne) {
  IdleClosingServer server;
  BenchClient client(server.url(), 10);
  for (int i = 0; i < 3; ++i) {
    const RequestRecord r = Send(client, "ok");
    EXPECT_TRUE(r.success) << "request " << i << ": " << r.error;
    EXPECT_EQ(r.generated_text, "a");
  }
  // The first request opened a connection; each later one found its connection closed.
  EXPECT_EQ(server.connections(), 3);
}

// A fake sender that sleeps and tracks how many calls overlap.
struct Overlap {
  std::atomic<int> now{0}, peak{0};
  SendFnFactory Factory(int sleep_ms) {
    return [this, sleep_ms]() -> SendFn {
      return [this, sleep_ms](const BenchRequest& req, BenchClock::time_point origin) {
        RequestRecord r;
        r.start_s = std::chrono::duration<double>(BenchClock::now() - origin).count();
        const int in_flight = ++now;
        int p = peak.load();
        while (in_flight > p && !peak.compare_exchange_weak(p, in_flight)) {
        }
        std::this_thread::sleep_for(milliseconds(sleep_ms));
        --now;
        r.success = true;
        r.prompt_len = req.prompt_len;
        return r;
      };
    };
  }
};

std::vector<BenchRequest> Numbered(int n) {
  std::vector<BenchRequest> reqs(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) reqs[static_cast<size_t>(i)].prompt_len = i;
  return reqs;
}

TEST(BenchLoad, ClosedLoopKeepsExactlyNInFlight) {
  Overlap o;
  LoadOptions opts;
  opts.max_concurrency = 3;
  const LoadResult res = RunLoad(Numbered(12), opts, o.Factory(30));
  ASSERT_EQ(res.records.size(), 12u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(res.records[static_cast<size_t>(i)].prompt_len, i);
  EXPECT_EQ(o.peak.load(), 3);
  EXPECT_GE(res.duration_s, 4 * 0.030 * 0.9);  // 12 requests / 3 clients x 30 ms
}

TEST(BenchLoad, OpenLoopReleasesOnSchedule) {
  Overlap o;
  LoadOptions opts;
  opts.request_rate = 50;
  opts.seed = 9;
  const LoadResult res = RunLoad(Numbered(10), opts, o.Factory(1));
  const auto schedule = ArrivalSchedule(10, 50, 1.0, 9);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(res.records[i].arrival_s, schedule[i]);
    EXPECT_GE(res.records[i].start_s, schedule[i]);
  }
  EXPECT_NEAR(schedule.back(), 0.2, 1e-9);
  EXPECT_GE(res.duration_s, 0.2);
}

TEST(BenchLoad, RealClientsAgainstTheFakeServer) {
  FakeServer server;
  const BaseUrl url = server.url();
  CompletionParams params;
  params.model = "nousage";
  const SendFnFactory factory = [&]() -> SendFn {
    auto client = std::make_shared<BenchClient>(url, 10);
    return [client, &params](const BenchRequest& r, BenchClock::time_point t0) {
      return client->Complete(params, r, t0);
    };
  };
  LoadOptions opts;
  opts.max_concurrency = 4;
  std::vector<BenchRequest> reqs(8, TokenPrompt());
  const LoadResult res = RunLoad(reqs, opts, factory);
  const BenchSummary s = Summarize(res.records, res.duration_s, {50, 99});
  EXPECT_EQ(s.completed, 8);
  EXPECT_EQ(s.failed, 0);
  EXPECT_EQ(s.total_output_tokens, 16);
  EXPECT_EQ(s.total_input_tokens, 24);
  EXPECT_GT(s.itl.mean_ms, 0);
}

}  // namespace
}  // namespace sy::bench
