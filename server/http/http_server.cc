#include "server/http/http_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "server/http/http_message.h"
#include "server/http/http_reply.h"

namespace sy::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

// Declared so that the io_context goes first: destroying it destroys the handlers it still
// holds, and with them the last connections, whose destructors use `shared`.
struct HttpServer::Net {
  explicit Net(int io_threads, int worker_threads)
      : workers(static_cast<size_t>(worker_threads)), ioc(io_threads), retry(ioc) {}
  ConnectionShared shared;
  std::optional<asio::ssl::context> tls;
  asio::thread_pool workers;
  std::mutex mu;  // guards connections
  std::map<uint64_t, std::weak_ptr<HttpConnection>> connections;
  uint64_t next_id = 0;
  asio::io_context ioc;
  std::optional<tcp::acceptor> acceptor;
  asio::steady_timer retry;  // re-accept after running out of file descriptors
  std::vector<std::thread> threads;
};

namespace {

// The answer to a connection over the cap, written without waiting: the client learns why.
std::string OverloadedResponse() {
  ApiError error;
  error.http_status = 503;
  error.message = "The server has too many open connections; retry later.";
  error.retry_after_s = 1;
  return SerializeResponse(ErrorResponse(error), /*keep_alive=*/false);
}

Status LoadTls(const TlsFiles& files, asio::ssl::context* tls) {
  error_code ec;
  tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                       asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                       asio::ssl::context::no_tlsv1_1,
                   ec);
  tls->use_certificate_chain(asio::buffer(files.cert_chain), ec);
  if (ec) return Status::InvalidArgument("TLS certificate chain: " + ec.message());
  tls->use_private_key(asio::buffer(files.private_key), asio::ssl::context::pem, ec);
  if (ec) return Status::InvalidArgument("TLS private key: " + ec.message());
  if (!files.ca_certs.empty()) {
    tls->add_certificate_authority(asio::buffer(files.ca_certs), ec);
    if (ec) return Status::InvalidArgument("TLS CA certificates: " + ec.message());
    tls->set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
  }
  return Status::Ok();
}

}  // namespace

HttpServer::HttpServer(ServingContext* ctx, HttpServerOptions options)
    : ctx_(ctx), options_(std::move(options)), routes_(ctx, options_.access) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start() {
  if (net_) return Status::Internal("the HTTP server is already running");
  auto net =
      std::make_unique<Net>(std::max(options_.io_threads, 1), std::max(options_.worker_threads, 1));
  if (options_.tls.enabled()) {
    net->tls.emplace(asio::ssl::context::tls_server);
    if (Status st = LoadTls(options_.tls, &*net->tls); !st.ok()) return st;
  }
  error_code ec;
  const asio::ip::address address = asio::ip::make_address(options_.host, ec);
  if (ec) return Status::InvalidArgument("--host " + options_.host + ": not an IP address");
  const tcp::endpoint endpoint(address, static_cast<uint16_t>(options_.port));
  net->acceptor.emplace(net->ioc);
  // SO_REUSEADDR (not SO_REUSEPORT): a quick restart works, a second server on the port fails.
  if (net->acceptor->open(endpoint.protocol(), ec) ||
      net->acceptor->set_option(tcp::acceptor::reuse_address(true), ec) ||
      net->acceptor->bind(endpoint, ec) ||
      net->acceptor->listen(asio::socket_base::max_listen_connections, ec)) {
    return Status::Unavailable("cannot listen on " + options_.host + ":" +
                               std::to_string(options_.port) + " (" + ec.message() + ")");
  }
  bound_port_ = net->acceptor->local_endpoint().port();
  ConnectionShared& shared = net->shared;
  shared.routes = &routes_;
  shared.generation = GenerationEnv{ctx_, &stopping_, &active_, options_.access_log};
  shared.workers = &net->workers;
  shared.limits = options_.limits;
  shared.on_closed = [this] { --open_; };
  net_ = std::move(net);
  stopping_ = false;
  Accept();
  for (int i = 0; i < std::max(options_.io_threads, 1); ++i) {
    net_->threads.emplace_back([this] { net_->ioc.run(); });
  }
  return Status::Ok();
}

void HttpServer::Accept() {
  net_->acceptor->async_accept(
      asio::make_strand(net_->ioc), [this](const error_code& ec, tcp::socket socket) {
        if (stopping_ || !net_->acceptor->is_open()) return;
        if (ec) {
          // Out of file descriptors (or a transient failure): pause instead of spinning.
          spdlog::warn("http: accept failed: {}", ec.message());
          net_->retry.expires_after(std::chrono::milliseconds(50));
          net_->retry.async_wait([this](const error_code&) {
            if (!stopping_) Accept();
          });
          return;
        }
        if (open_.load() >= options_.max_connections) {
          error_code ignored;
          if (!net_->tls) {
            socket.non_blocking(true, ignored);
            socket.write_some(asio::buffer(OverloadedResponse()), ignored);
          }
          socket.close(ignored);
        } else {
          // Events are small writes: without TCP_NODELAY, Nagle's algorithm holds each one
          // until the client acknowledges the last (up to its delayed-ACK time, 40 ms on Linux).
          error_code ignored;
          socket.set_option(tcp::no_delay(true), ignored);
          ++open_;
          std::shared_ptr<HttpConnection> conn =
              net_->tls ? MakeTlsConnection(std::move(socket), &*net_->tls, &net_->shared)
                        : MakeConnection(std::move(socket), &net_->shared);
          {
            std::lock_guard<std::mutex> lock(net_->mu);
            // Now and then forget connections that have closed, so the map stays near what is open.
            if (net_->connections.size() > 2 * open_.load() + 64) {
              for (auto it = net_->connections.begin(); it != net_->connections.end();) {
                it = it->second.expired() ? net_->connections.erase(it) : std::next(it);
              }
            }
            net_->connections.emplace(net_->next_id++, conn);
          }
          conn->Start();
        }
        Accept();
      });
}

void HttpServer::Stop() {
  if (!net_) return;
  stopping_ = true;
  asio::post(net_->ioc, [this] {
    error_code ignored;
    net_->acceptor->close(ignored);
    net_->retry.cancel();
  });
  std::vector<std::shared_ptr<HttpConnection>> open;
  {
    std::lock_guard<std::mutex> lock(net_->mu);
    for (auto& [id, weak] : net_->connections) {
      if (auto conn = weak.lock()) open.push_back(std::move(conn));
    }
    net_->connections.clear();
  }
  for (auto& conn : open) conn->Close();
  open.clear();
  // Closed connections finish their handlers; then nothing is left to run.
  for (int i = 0; i < 500 && open_.load() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  net_->workers.join();
  net_->ioc.stop();
  for (std::thread& t : net_->threads) t.join();
  net_.reset();
}

}  // namespace sy::http
