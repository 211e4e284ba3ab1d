// Serves POST /v1/completions and /v1/chat/completions without blocking a thread: StartGeneration
// validates the body and submits to the engine; the GenerationResponder it returns turns the
// engine's output into the response (server-sent events, or one JSON body at the end) whenever
// the connection pumps it. A responder is used by one thread at a time.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "server/http/access_log.h"
#include "server/http/generation_session.h"
#include "server/http/http_message.h"
#include "server/http/openai_protocol.h"
#include "server/serving_context.h"

namespace sy::http {

// What generation borrows from the HttpServer (all outlive every request).
struct GenerationEnv {
  ServingContext* ctx = nullptr;
  const std::atomic<bool>* stopping = nullptr;  // the server is shutting down
  std::atomic<size_t>* active = nullptr;        // generation requests being answered
  bool access_log = true;  // one info line per finished request (server/http/access_log.h)
};

ProtocolContext MakeProtocolContext(const ServingContext& ctx);

class GenerationResponder {
 public:
  GenerationResponder(const GenerationEnv& env, std::unique_ptr<GenerationSession> session,
                      ResponseHeader header, AccessRecord record);
  ~GenerationResponder();  // aborts unfinished engine work; logs the request if not yet logged
  GenerationResponder(const GenerationResponder&) = delete;
  GenerationResponder& operator=(const GenerationResponder&) = delete;

  bool streaming() const { return session_->request().stream; }
  const std::string& request_id() const { return record_.request_id; }
  // See GenerationSession::SetReadyCallback.
  void SetReadyCallback(const std::function<void()>& ready) { session_->SetReadyCallback(ready); }

  // Takes the engine's new output without waiting. Streaming: returns the SSE events to send
  // now (the last call, once done(), ends with [DONE]); otherwise returns nothing.
  std::string Pump();
  // Every engine request finished and Pump returned all of it.
  bool done() const { return done_; }
  // Non-streaming, once done(): the response (logged as sent).
  HttpResponse FinalResponse();
  // Streaming, once the last event was written: logs the request as answered with 200.
  void StreamSent();
  // The response cannot be delivered (the client left: 499; shutdown: 503; a client too slow
  // to read: 499): aborts the engine work and logs the request with `status`.
  void Abort(int status);

 private:
  void Log(int status);

  GenerationEnv env_;
  std::unique_ptr<GenerationSession> session_;
  ResponseHeader header_;
  AccessRecord record_;
  ChoiceCollector collector_;
  TextOffsets offsets_;
  bool started_ = false;
  bool done_ = false;
  bool logged_ = false;
};

// Validates `req` and submits it. On success returns the responder (counted in env.active
// until destroyed); otherwise null, with the error response in `*refusal` (already logged).
// `request_id` is echoed in X-Request-Id and the access log.
std::unique_ptr<GenerationResponder> StartGeneration(const GenerationEnv& env, Endpoint endpoint,
                                                     const HttpRequest& req, std::string request_id,
                                                     HttpResponse* refusal);

}  // namespace sy::http
