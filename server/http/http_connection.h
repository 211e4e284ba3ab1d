// HttpConnection: one client connection of the event-driven HTTP server (Boost.Beast on Asio).
// Reads each request under a deadline and size caps, answers it through HttpRoutes, streams
// generation output as the engine produces it, and notices a client that goes away. All of its
// work runs on its own strand; the server holds it by shared_ptr until it closes.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

#include "server/http/generation_handler.h"
#include "server/http/http_routes.h"

namespace sy::http {

struct ConnectionLimits {
  size_t max_body_bytes = 8u << 20;     // Content-Length or chunked: larger gets 413
  size_t max_header_bytes = 16u << 10;  // request line and headers: larger gets 431
  // Until the first byte of a request arrives (after a response: the keep-alive idle time).
  std::chrono::milliseconds keep_alive_timeout{5000};
  std::chrono::milliseconds header_timeout{10000};  // first byte to end of head: else 408
  std::chrono::milliseconds body_timeout{30000};    // end of head to end of body: else 408
  // A write that makes no progress for this long: the client is gone or not reading.
  std::chrono::milliseconds write_timeout{30000};
  // Output queued for a client that reads slower than the engine writes: beyond, it is cut off.
  size_t max_pending_output = 4u << 20;
};

// What every connection borrows from the server (outlives them all).
struct ConnectionShared {
  const HttpRoutes* routes = nullptr;
  GenerationEnv generation;
  boost::asio::thread_pool* workers = nullptr;  // blocking handlers and generation starts
  ConnectionLimits limits;
  std::function<void()> on_closed;  // called once by each connection's destructor
};

class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  virtual ~HttpConnection() = default;
  // Begins serving (the TLS handshake first, if any). Call once, right after creation.
  virtual void Start() = 0;
  // Closes from any thread: an unfinished generation is aborted and logged as 503.
  virtual void Close() = 0;
};

std::shared_ptr<HttpConnection> MakeConnection(boost::asio::ip::tcp::socket socket,
                                               ConnectionShared* shared);
std::shared_ptr<HttpConnection> MakeTlsConnection(boost::asio::ip::tcp::socket socket,
                                                  boost::asio::ssl::context* tls,
                                                  ConnectionShared* shared);

}  // namespace sy::http
