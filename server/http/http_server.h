// HttpServer: the OpenAI-compatible HTTP frontend over a ServingContext: completions, chat,
// models, tokenize, health/readiness, metrics and the admin routes (http_routes.h), served by an
// event-driven server (Boost.Beast on Asio): a few network threads hold every connection, a small
// worker pool runs what may block. Borrows the context, which must outlive it. Start/Stop from
// one thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "engine/core/status.h"
#include "server/http/http_connection.h"
#include "server/http/http_routes.h"
#include "server/security.h"
#include "server/serving_context.h"

namespace sy::http {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                 // 0: any free port (see HttpServer::port())
  int io_threads = 2;              // network threads (every connection is served by these)
  int worker_threads = 2;          // request parsing, tokenizing, submission, migrations
  size_t max_connections = 10000;  // beyond: a new connection gets 503 and is closed
  ConnectionLimits limits;
  RouteAccess access;
  // TLS when set (server/security.h); with CA certificates, clients must present a
  // certificate one of them signs.
  TlsFiles tls;
  bool access_log = true;  // an info line per finished generation request (access_log.h)
};

class HttpServer {
 public:
  HttpServer(ServingContext* ctx, HttpServerOptions options);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving on background threads. Unavailable when the address cannot be
  // bound (e.g. the port is taken); InvalidArgument when the TLS certificate or key cannot be used.
  Status Start();
  // Stops accepting, cuts off open connections (aborting their requests) and joins the threads.
  // For a graceful shutdown, set ctx->ready = false and wait for active_requests() == 0 first.
  void Stop();

  int port() const { return bound_port_; }
  // Generation requests admitted and not yet fully answered (streaming or not).
  size_t active_requests() const { return active_.load(); }
  // Client connections open now.
  size_t open_connections() const { return open_.load(); }

 private:
  struct Net;  // the Asio objects
  void Accept();

  ServingContext* ctx_;
  HttpServerOptions options_;
  HttpRoutes routes_;
  std::atomic<size_t> active_{0};
  std::atomic<size_t> open_{0};
  std::atomic<bool> stopping_{false};
  std::unique_ptr<Net> net_;
  int bound_port_ = -1;
};

}  // namespace sy::http
