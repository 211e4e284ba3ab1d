#include "server/http/generation_handler.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "server/http/access_log.h"
#include "server/http/connection_probe.h"
#include "server/http/generation_session.h"
#include "server/http/http_reply.h"

namespace sy::http {
namespace {

// Counts a generation request as active for as long as it lives.
class ActiveGuard {
 public:
  explicit ActiveGuard(std::atomic<size_t>* active) : active_(active) { ++*active_; }
  ~ActiveGuard() { --*active_; }
  ActiveGuard(const ActiveGuard&) = delete;
  ActiveGuard& operator=(const ActiveGuard&) = delete;

 private:
  std::atomic<size_t>* active_;
};

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ApiError ClientGone() {
  ApiError e;
  e.http_status = 499;  // nginx's "client closed request": nobody reads it, logs do
  e.message = "The client closed the connection.";
  return e;
}

ApiError ShuttingDown() {
  return ErrorFromStatus(Status::Unavailable("The server is shutting down."));
}

// Notes the first token and the finish reasons of `deltas` for the access log.
void NoteDeltas(const std::vector<ChoiceOutput>& deltas, AccessRecord* record) {
  for (const ChoiceOutput& d : deltas) {
    if (d.num_tokens > 0) record->NoteToken();
    if (d.finish_reason) record->finish_reason = d.finish_reason;
  }
}

// The outcome of a finished (or cut-off) session, for the access log.
void NoteEnd(const GenerationSession& session, AccessRecord* record) {
  const Usage usage = session.usage();
  record->prompt_tokens = usage.prompt_tokens;
  record->completion_tokens = usage.completion_tokens;
  if (!session.done()) record->finish_reason = FinishReason::kAbort;
  if (!session.status().ok()) record->finish_reason = FinishReason::kError;
}

void RespondOnce(const GenerationEnv& env, std::unique_ptr<GenerationSession> session,
                 const ResponseHeader& header, const httplib::Request& req, httplib::Response& res,
                 AccessRecord* record) {
  const ConnectionProbe probe(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
  const GenerationRequest& request = session->request();
  ChoiceCollector collector(request.n * static_cast<int32_t>(request.specs.size()));
  std::vector<ChoiceOutput> deltas;
  while (!session->done()) {
    if (probe.Closed() || env.stopping->load()) {
      NoteEnd(*session, record);
      return SendError(res, probe.Closed() ? ClientGone() : ShuttingDown());
    }
    deltas.clear();
    session->Poll(env.poll_interval, &deltas);
    NoteDeltas(deltas, record);
    for (ChoiceOutput& d : deltas) collector.Add(std::move(d));
  }
  NoteEnd(*session, record);
  if (!session->status().ok()) return SendError(res, ErrorFromStatus(session->status()));
  const Usage usage = session->usage();
  SendJson(res, 200,
           request.endpoint == Endpoint::kChat
               ? ChatResponse(header, request, collector.choices(), usage)
               : CompletionResponse(header, request, collector.choices(), usage));
}

// The state of one SSE response, shared by httplib's content-provider callbacks.
struct StreamState {
  StreamState(const GenerationEnv& e, std::unique_ptr<GenerationSession> s, ResponseHeader h,
              const httplib::Request& req, AccessRecord r)
      : env(e),
        session(std::move(s)),
        header(std::move(h)),
        probe(req.local_addr, req.local_port, req.remote_addr, req.remote_port),
        guard(e.active),
        record(std::move(r)) {}

  GenerationEnv env;
  std::unique_ptr<GenerationSession> session;
  ResponseHeader header;
  ConnectionProbe probe;
  ActiveGuard guard;
  AccessRecord record;
  TextOffsets offsets;
  bool started = false;
};

// A delta worth a chunk: any new token (even one whose text is still held back, as vLLM sends
// it, so clients can time every token), text, or a finish.
bool Worth(const ChoiceOutput& d) {
  return d.num_tokens > 0 || !d.text.empty() || d.finish_reason || !d.logprobs.empty();
}

// One call of the content provider: sends what the engine produced since the last call.
// Returns false to make httplib drop the connection.
bool StreamStep(StreamState& s, httplib::DataSink& sink) {
  const GenerationRequest& request = s.session->request();
  std::string out;
  if (!s.started) {
    s.started = true;
    if (request.endpoint == Endpoint::kChat) {
      for (int32_t i = 0; i < request.n; ++i) out += SseEvent(ChatRoleChunk(s.header, request, i));
    }
  }
  std::vector<ChoiceOutput> deltas;
  s.session->Poll(s.env.poll_interval, &deltas);
  NoteDeltas(deltas, &s.record);
  for (const ChoiceOutput& d : deltas) {
    if (!Worth(d)) continue;
    out += SseEvent(request.endpoint == Endpoint::kChat
                        ? ChatChunk(s.header, request, d)
                        : CompletionChunk(s.header, request, d, &s.offsets));
  }
  const bool done = s.session->done();
  if (done) {
    if (!s.session->status().ok()) {
      out += SseEvent(ErrorBody(ErrorFromStatus(s.session->status())));
    } else if (request.include_usage) {
      out += SseEvent(UsageChunk(s.header, request, s.session->usage()));
    }
    out += kSseDone;
  }
  // An empty write would end httplib's chunked stream, so only write when there is data.
  if (!out.empty() && !sink.write(out.data(), out.size())) {
    s.session->Abort();
    return false;
  }
  if (done) {
    sink.done();
    return true;
  }
  if (s.probe.Closed() || s.env.stopping->load()) {
    s.session->Abort();
    return false;
  }
  return true;
}

// Streams are logged when httplib releases them: after the last chunk, or once a client that
// went away (logged as 499) or a shutdown (503) cut them off; either way the engine work is
// aborted and finish=abort.
void RespondStreaming(const GenerationEnv& env, std::unique_ptr<GenerationSession> session,
                      ResponseHeader header, const httplib::Request& req, httplib::Response& res,
                      AccessRecord record) {
  auto state = std::make_shared<StreamState>(env, std::move(session), std::move(header), req,
                                             std::move(record));
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [state](size_t /*offset*/, httplib::DataSink& sink) { return StreamStep(*state, sink); },
      [state](bool success) {
        if (!success) state->session->Abort();
        if (!state->env.access_log) return;
        AccessRecord& r = state->record;
        NoteEnd(*state->session, &r);
        r.status = success ? 200 : state->env.stopping->load() ? 503 : 499;
        LogAccess(r);
      });
}

}  // namespace

ProtocolContext MakeProtocolContext(const ServingContext& ctx) {
  ProtocolContext p;
  p.tokenizer = &ctx.engine->tokenizer();
  p.chat_template = ctx.chat_template.get();
  p.model_name = ctx.model_name;
  p.max_model_len = ctx.engine->max_model_len();
  p.request_timeout_s = ctx.request_timeout_s;
  return p;
}

namespace {

// Answers the request; returns whether it became a stream (which logs itself when it ends).
bool Answer(const GenerationEnv& env, Endpoint endpoint, const httplib::Request& req,
            httplib::Response& res, AccessRecord* record) {
  if (!env.ctx->ready.load() || env.stopping->load()) {
    SendError(res, ErrorFromStatus(Status::Unavailable(
                       "The server is not ready (starting up or shutting down).")));
    return false;
  }
  ApiError error;
  std::optional<nlohmann::json> body = ParseJsonObject(req.body, &error);
  if (!body) {
    SendError(res, error);
    return false;
  }
  const ProtocolContext pctx = MakeProtocolContext(*env.ctx);
  std::optional<GenerationRequest> request = endpoint == Endpoint::kChat
                                                 ? ParseChatRequest(*body, pctx, &error)
                                                 : ParseCompletionRequest(*body, pctx, &error);
  if (!request) {
    SendError(res, error);
    return false;
  }
  const bool stream = request->stream;
  ResponseHeader header{NewResponseId(endpoint), NowSeconds(), request->model};
  // Counted from before Submit so a graceful shutdown never misses a request being admitted.
  auto guard = std::make_unique<ActiveGuard>(env.active);
  std::unique_ptr<GenerationSession> session =
      GenerationSession::Start(env.ctx->engine, std::move(*request), &error);
  if (!session) {
    SendError(res, error);
    return false;
  }
  if (stream) {
    RespondStreaming(env, std::move(session), std::move(header), req, res, std::move(*record));
    return true;
  }
  RespondOnce(env, std::move(session), header, req, res, record);
  return false;
}

}  // namespace

void HandleGeneration(const GenerationEnv& env, Endpoint endpoint, const httplib::Request& req,
                      httplib::Response& res, std::string request_id) {
  res.set_header("X-Request-Id", request_id);
  AccessRecord record;
  record.request_id = std::move(request_id);
  record.method = req.method;
  record.route = req.path;
  if (Answer(env, endpoint, req, res, &record) || !env.access_log) return;
  record.status = res.status;
  LogAccess(record);
}

}  // namespace sy::http
