// HttpServer: the OpenAI-compatible HTTP frontend (cpp-httplib) over a ServingContext:
// completions, chat, models, tokenize, health/readiness and metrics. Borrows the context, which
// must outlive it. Start/Stop from one thread; handlers run on the server's own thread pool.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <thread>

#include "engine/core/status.h"
#include "server/serving_context.h"

namespace httplib {
class Server;
}

namespace sy::http {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                   // 0: any free port (see HttpServer::port())
  size_t max_body_bytes = 8u << 20;  // larger bodies get 413
  int threads = 512;                 // connections served at once (each stream holds one)
  std::chrono::milliseconds poll_interval{20};  // how often waiting requests check the client
  bool access_log = true;  // an info line per finished generation request (access_log.h)
};

class HttpServer {
 public:
  HttpServer(ServingContext* ctx, HttpServerOptions options);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving on a background thread. Unavailable when the address cannot be
  // bound (e.g. the port is taken).
  Status Start();
  // Stops accepting, cuts off open streams (aborting their requests) and joins the threads.
  // For a graceful shutdown, set ctx->ready = false and wait for active_requests() == 0 first.
  void Stop();

  int port() const { return bound_port_; }
  // Generation requests admitted and not yet fully answered (streaming or not).
  size_t active_requests() const { return active_.load(); }

 private:
  void RegisterRoutes();
  void RegisterAdminRoutes();

  ServingContext* ctx_;
  HttpServerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<size_t> active_{0};
  std::atomic<bool> stopping_{false};
  int bound_port_ = -1;
  int listen_fd_ = -1;  // the listening socket, seen by the socket-options hook
};

}  // namespace sy::http
