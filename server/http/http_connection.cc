#include "server/http/http_connection.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <exception>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "server/http/access_log.h"
#include "server/http/http_reply.h"

namespace sy::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using TlsStream = asio::ssl::stream<tcp::socket>;

// How long a refused request's unread body is drained before closing, so that the client reads
// the refusal instead of a connection reset.
constexpr std::chrono::seconds kLingerTime{2};

// Tells a connection that the engine has output for it, from the engine's thread. Posting is
// coalesced, and once disarmed (the generation ended) nothing is posted any more, though the
// engine's stream may keep this object alive a while.
class OutputSignal : public std::enable_shared_from_this<OutputSignal> {
 public:
  OutputSignal(asio::any_io_executor executor, std::function<void()> on_output)
      : executor_(std::move(executor)), on_output_(std::move(on_output)) {}

  void Fire() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!armed_ || posted_) return;
    posted_ = true;
    asio::post(executor_, [self = shared_from_this()] {
      std::function<void()> run;
      {
        std::lock_guard<std::mutex> lock(self->mu_);
        self->posted_ = false;
        if (self->armed_) run = self->on_output_;
      }
      if (run) run();
    });
  }
  // Also drops the executor: the engine's stream may outlive the server's io_context, and a
  // strand must not be released after its io_context is gone.
  void Disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
    on_output_ = nullptr;
    executor_ = asio::any_io_executor();
  }

 private:
  std::mutex mu_;
  asio::any_io_executor executor_;
  std::function<void()> on_output_;
  bool armed_ = true;
  bool posted_ = false;
};

bool IsDisconnect(const error_code& ec) {
  return ec == asio::error::eof || ec == asio::error::connection_reset ||
         ec == asio::error::broken_pipe || ec == bhttp::error::end_of_stream ||
         ec == asio::ssl::error::stream_truncated;
}

HttpResponse SafeCall(const RouteHandler& handler, const HttpRequest& req) {
  try {
    return handler(req);
  } catch (const std::exception& e) {
    // What was thrown goes to the log only: its text may describe server internals.
    spdlog::error("http: {} {} threw: {}", req.method, req.path, e.what());
  } catch (...) {
    spdlog::error("http: {} {} threw", req.method, req.path);
  }
  return ErrorResponse(ErrorFromStatus(Status::Internal("Internal server error.")));
}

HttpRequest ToRequest(bhttp::request<bhttp::string_body>&& msg) {
  HttpRequest req;
  req.method = std::string(msg.method_string());
  const std::string_view target(msg.target().data(), msg.target().size());
  const size_t q = target.find('?');
  req.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
  for (const auto& field : msg) {
    req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  req.body = std::move(msg.body());
  return req;
}

template <class Stream>
class Connection final : public HttpConnection {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  template <class... Args>
  explicit Connection(ConnectionShared* shared, Args&&... args)
      : shared_(shared),
        stream_(std::forward<Args>(args)...),
        read_timer_(stream_.get_executor()),
        write_timer_(stream_.get_executor()) {}

  ~Connection() override {
    if (signal_) signal_->Disarm();
    gen_.reset();  // aborts unfinished engine work
    if (shared_->on_closed) shared_->on_closed();
  }

  void Start() override {
    if constexpr (kTls) {
      ArmRead(shared_->limits.header_timeout);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = Self()](const error_code& ec) {
                                self->read_timer_.cancel();
                                if (self->closed_) return;
                                if (ec) return self->CloseNow();
                                self->AwaitRequest(self->shared_->limits.header_timeout);
                              });
    } else {
      AwaitRequest(shared_->limits.header_timeout);
    }
  }

  void Close() override {
    asio::post(stream_.get_executor(), [self = Self()] {
      if (self->gen_) {
        self->gen_->Abort(503);
        self->gen_.reset();
      }
      self->CloseNow();
    });
  }

 private:
  enum class Phase { kIdle, kHead, kBody, kHandling, kGenerating };
  enum class AfterWrite { kNothing, kNextRequest, kClose };

  std::shared_ptr<Connection> Self() {
    return std::static_pointer_cast<Connection>(shared_from_this());
  }
  tcp::socket& Socket() { return beast::get_lowest_layer(stream_); }

  // --- reading a request ---

  // Waits up to `idle` for the next request's first byte.
  void AwaitRequest(std::chrono::milliseconds idle) {
    phase_ = Phase::kIdle;
    if (reading_) {  // the read that watched the last generation's client goes on as this one
      ArmRead(idle);
      return;
    }
    if (buffer_.size() > 0) return ReadHead();
    ArmRead(idle);
    ReadSome();
  }

  void ReadSome() {
    reading_ = true;
    stream_.async_read_some(buffer_.prepare(4096), [self = Self()](const error_code& ec, size_t n) {
      self->reading_ = false;
      self->buffer_.commit(n);
      self->OnSome(ec);
    });
  }

  void OnSome(const error_code& ec) {
    if (closed_) return;
    if (ec) {
      // The last chunk is already on its way: the client read it all and left. Not an abort.
      if (stream_done_) {
        after_write_ = AfterWrite::kClose;
        return;
      }
      return phase_ == Phase::kGenerating ? ClientGone() : CloseNow();
    }
    if (phase_ == Phase::kIdle) {
      read_timer_.cancel();
      return ReadHead();
    }
    // Generating: the bytes of a pipelined request wait in the buffer for their turn. (Until
    // then a close goes unnoticed; the generation ends or a write fails.)
  }

  void ReadHead() {
    phase_ = Phase::kHead;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(shared_->limits.max_header_bytes));
    parser_->body_limit(shared_->limits.max_body_bytes);
    ArmRead(shared_->limits.header_timeout);
    reading_ = true;
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = Self()](const error_code& ec, size_t) {
                               self->reading_ = false;
                               self->OnHead(ec);
                             });
  }

  void OnHead(const error_code& ec) {
    if (closed_ || timed_out_) return;
    read_timer_.cancel();
    if (ec) return OnReadError(ec);
    const auto& head = parser_->get();
    keep_alive_ = head.keep_alive();
    const auto encoding = head[bhttp::field::content_encoding];
    if (!encoding.empty() && !EqualsIgnoreCase({encoding.data(), encoding.size()}, "identity")) {
      return Reject(415,
                    "Compressed request bodies are not accepted; send the body without "
                    "Content-Encoding.");
    }
    // RFC 9112 6.3: a request whose transfer coding does not end in chunked has no length.
    if (head.count(bhttp::field::transfer_encoding) > 0 && !parser_->chunked()) {
      return Reject(400, "Transfer-Encoding must end with chunked.");
    }
    if (head.method() == bhttp::verb::post && !parser_->content_length() && !parser_->chunked()) {
      return Reject(411, "A POST request needs a Content-Length or a chunked body.");
    }
    if (parser_->is_done()) return OnBody({});
    const auto expect = head[bhttp::field::expect];
    if (!expect.empty()) {
      if (!EqualsIgnoreCase({expect.data(), expect.size()}, "100-continue")) {
        return Reject(417, "Only Expect: 100-continue is supported.");
      }
      out_ += "HTTP/1.1 100 Continue\r\n\r\n";
      Flush();
    }
    phase_ = Phase::kBody;
    ArmRead(shared_->limits.body_timeout);
    reading_ = true;
    bhttp::async_read(stream_, buffer_, *parser_, [self = Self()](const error_code& ec, size_t) {
      self->reading_ = false;
      self->OnBody(ec);
    });
  }

  void OnBody(const error_code& ec) {
    if (closed_ || timed_out_) return;
    read_timer_.cancel();
    if (ec) return OnReadError(ec);
    HttpRequest req = ToRequest(parser_->release());
    parser_.reset();
    Dispatch(std::move(req));
  }

  void OnReadError(const error_code& ec) {
    if (IsDisconnect(ec) || ec == asio::error::operation_aborted) return CloseNow();
    if (ec == bhttp::error::header_limit) return Reject(431, "The request head is too large.");
    if (ec == bhttp::error::body_limit) return Reject(413, "The request body is too large.");
    Reject(400, "Malformed HTTP request.");
  }

  // --- answering ---

  void Dispatch(HttpRequest req) {
    phase_ = Phase::kHandling;
    Route route = shared_->routes->Resolve(req);
    switch (route.kind) {
      case Route::Kind::kRespond:
        return Respond(std::move(route.response));
      case Route::Kind::kInline:
        return Respond(SafeCall(route.handler, req));
      case Route::Kind::kWorker:
        asio::post(*shared_->workers, [self = Self(), handler = std::move(route.handler),
                                       req = std::move(req)] {
          HttpResponse res = SafeCall(handler, req);
          asio::post(self->stream_.get_executor(),
                     [self, res = std::move(res)]() mutable { self->Respond(std::move(res)); });
        });
        return;
      case Route::Kind::kGeneration:
        asio::post(*shared_->workers, [self = Self(), endpoint = route.endpoint,
                                       req = std::move(req)] {
          auto refusal = std::make_shared<HttpResponse>();
          std::shared_ptr<GenerationResponder> gen;
          try {
            gen = StartGeneration(self->shared_->generation, endpoint, req, RequestIdFor(req),
                                  refusal.get());
          } catch (const std::exception& e) {
            spdlog::error("http: {} {} threw: {}", req.method, req.path, e.what());
            *refusal = ErrorResponse(ErrorFromStatus(Status::Internal("Internal server error.")));
          }
          asio::post(self->stream_.get_executor(), [self, gen, refusal] {
            if (gen) return self->BeginGeneration(gen);
            self->Respond(std::move(*refusal));
          });
        });
        return;
    }
  }

  void Respond(HttpResponse res) {
    if (closed_) return;
    out_ += SerializeResponse(res, keep_alive_);
    after_write_ = keep_alive_ ? AfterWrite::kNextRequest : AfterWrite::kClose;
    Flush();
  }

  // Answers with an error and closes: the rest of the request is not read.
  void Reject(int status, const char* message) {
    ApiError error;
    error.http_status = status;
    error.message = message;
    keep_alive_ = false;
    phase_ = Phase::kHandling;
    Respond(ErrorResponse(error));
  }

  // --- generation ---

  void BeginGeneration(std::shared_ptr<GenerationResponder> gen) {
    if (closed_) {
      gen->Abort(499);
      return;
    }
    gen_ = std::move(gen);
    phase_ = Phase::kGenerating;
    if (gen_->streaming()) {
      out_ += SerializeChunkedHead("text/event-stream", {{"X-Request-Id", gen_->request_id()}});
    }
    // The signal keeps the connection alive while no read or write is in flight (a pipelined
    // request waits); every end of the generation disarms it, which breaks the cycle.
    signal_ =
        std::make_shared<OutputSignal>(stream_.get_executor(), [self = Self()] { self->Pump(); });
    gen_->SetReadyCallback([signal = signal_] { signal->Fire(); });
    // A read completes when the client closes, unless a pipelined request already waits.
    if (!reading_ && buffer_.size() == 0) ReadSome();
    Pump();
  }

  void Pump() {
    if (closed_ || !gen_ || stream_done_) return;
    std::string events = gen_->Pump();
    if (!gen_->streaming()) {
      if (!gen_->done()) return;
      signal_->Disarm();
      HttpResponse res = gen_->FinalResponse();
      gen_.reset();
      return Respond(std::move(res));
    }
    if (!events.empty()) out_ += SerializeChunk(events);
    if (gen_->done()) {
      signal_->Disarm();
      out_ += SerializeChunk("");
      stream_done_ = true;
      after_write_ = keep_alive_ ? AfterWrite::kNextRequest : AfterWrite::kClose;
    } else if (out_.size() > shared_->limits.max_pending_output) {
      spdlog::warn("http: client of {} reads too slowly; cut off", gen_->request_id());
      return ClientGone();
    }
    Flush();
  }

  void ClientGone() {
    if (gen_) {
      gen_->Abort(499);
      gen_.reset();
    }
    CloseNow();
  }

  // --- writing ---

  void Flush() {
    if (writing_ || closed_) return;
    if (out_.empty()) return AfterWrites();
    writing_ = true;
    writing_buf_.swap(out_);
    out_.clear();
    write_timer_.expires_after(shared_->limits.write_timeout);
    write_timer_.async_wait([self = Self(), seq = ++write_seq_](const error_code& ec) {
      if (ec || seq != self->write_seq_ || self->closed_ || !self->writing_) return;
      self->ClientGone();  // no progress for write_timeout: not reading, or gone
    });
    asio::async_write(stream_, asio::buffer(writing_buf_),
                      [self = Self()](const error_code& ec, size_t) {
                        self->writing_ = false;
                        ++self->write_seq_;
                        self->write_timer_.cancel();
                        if (self->closed_) return;
                        if (ec) return self->ClientGone();
                        self->Flush();
                      });
  }

  // Everything queued is written.
  void AfterWrites() {
    if (stream_done_) {
      stream_done_ = false;
      gen_->StreamSent();
      gen_.reset();
    }
    const AfterWrite next = std::exchange(after_write_, AfterWrite::kNothing);
    if (next == AfterWrite::kNextRequest) return AwaitRequest(shared_->limits.keep_alive_timeout);
    if (next == AfterWrite::kClose) LingerClose();
  }

  // --- timers and closing ---

  void ArmRead(std::chrono::milliseconds timeout) {
    read_timer_.expires_after(timeout);
    read_timer_.async_wait([self = Self(), seq = ++read_seq_](const error_code& ec) {
      if (ec || seq != self->read_seq_ || self->closed_) return;
      self->OnReadTimeout();
    });
  }

  void OnReadTimeout() {
    if (phase_ == Phase::kIdle) return CloseNow();
    if (phase_ != Phase::kHead && phase_ != Phase::kBody) return;
    timed_out_ = true;
    error_code ignored;
    Socket().cancel(ignored);
    Reject(408, "The request was not received in time.");
  }

  // Closes after the client has had a chance to read the last response: stops sending, then
  // discards what it still sends for a moment.
  void LingerClose() {
    if (closed_) return;
    if (reading_ || kTls) return CloseNow();
    error_code ignored;
    Socket().shutdown(tcp::socket::shutdown_send, ignored);
    phase_ = Phase::kIdle;
    ArmRead(std::chrono::duration_cast<std::chrono::milliseconds>(kLingerTime));
    Discard();
  }

  void Discard() {
    Socket().async_read_some(asio::buffer(discard_), [self = Self()](const error_code& ec, size_t) {
      if (self->closed_) return;
      if (ec) return self->CloseNow();
      self->Discard();
    });
  }

  void CloseNow() {
    if (closed_) return;
    closed_ = true;
    if (signal_) signal_->Disarm();
    read_timer_.cancel();
    write_timer_.cancel();
    error_code ignored;
    Socket().shutdown(tcp::socket::shutdown_both, ignored);
    Socket().close(ignored);
  }

  ConnectionShared* shared_;
  Stream stream_;
  asio::steady_timer read_timer_;
  asio::steady_timer write_timer_;
  uint64_t read_seq_ = 0;  // a timer wait is stale unless its sequence number is current
  uint64_t write_seq_ = 0;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Phase phase_ = Phase::kIdle;
  bool reading_ = false;    // a read of stream_ is in flight
  bool timed_out_ = false;  // the request's head or body missed its deadline
  bool keep_alive_ = false;
  bool closed_ = false;
  std::string out_;          // queued for writing
  std::string writing_buf_;  // being written
  bool writing_ = false;
  AfterWrite after_write_ = AfterWrite::kNothing;
  std::shared_ptr<GenerationResponder> gen_;
  std::shared_ptr<OutputSignal> signal_;
  bool stream_done_ = false;  // the last chunk of a stream is queued
  std::array<char, 4096> discard_;
};

}  // namespace

std::shared_ptr<HttpConnection> MakeConnection(tcp::socket socket, ConnectionShared* shared) {
  return std::make_shared<Connection<tcp::socket>>(shared, std::move(socket));
}

std::shared_ptr<HttpConnection> MakeTlsConnection(tcp::socket socket, asio::ssl::context* tls,
                                                  ConnectionShared* shared) {
  return std::make_shared<Connection<TlsStream>>(shared, std::move(socket), *tls);
}

}  // namespace sy::http
