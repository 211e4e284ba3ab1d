#include "server/http/generation_handler.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "server/http/http_reply.h"

namespace sy::http {
namespace {

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Notes the first token and the finish reasons of `deltas` for the access log.
void NoteDeltas(const std::vector<ChoiceOutput>& deltas, AccessRecord* record) {
  for (const ChoiceOutput& d : deltas) {
    if (d.num_tokens > 0) record->NoteToken();
    if (d.finish_reason) record->finish_reason = d.finish_reason;
  }
}

// A delta worth a chunk: any new token (even one whose text is still held back, as vLLM sends
// it, so clients can time every token), text, or a finish.
bool Worth(const ChoiceOutput& d) {
  return d.num_tokens > 0 || !d.text.empty() || d.finish_reason || !d.logprobs.empty();
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

GenerationResponder::GenerationResponder(const GenerationEnv& env,
                                         std::unique_ptr<GenerationSession> session,
                                         ResponseHeader header, AccessRecord record)
    : env_(env),
      session_(std::move(session)),
      header_(std::move(header)),
      record_(std::move(record)),
      collector_(session_->request().n * static_cast<int32_t>(session_->request().specs.size())) {}

GenerationResponder::~GenerationResponder() {
  if (!logged_) Log(done_ ? 200 : 499);
  session_.reset();  // aborts what is unfinished
  --*env_.active;
}

std::string GenerationResponder::Pump() {
  const GenerationRequest& request = session_->request();
  std::string out;
  if (request.stream && !started_) {
    started_ = true;
    if (request.endpoint == Endpoint::kChat) {
      for (int32_t i = 0; i < request.n; ++i) out += SseEvent(ChatRoleChunk(header_, request, i));
    }
  }
  if (done_) return out;
  std::vector<ChoiceOutput> deltas;
  session_->TakeOutput(&deltas);
  NoteDeltas(deltas, &record_);
  for (ChoiceOutput& d : deltas) {
    if (!request.stream) {
      collector_.Add(std::move(d));
    } else if (Worth(d)) {
      out += SseEvent(request.endpoint == Endpoint::kChat
                          ? ChatChunk(header_, request, d)
                          : CompletionChunk(header_, request, d, &offsets_));
    }
  }
  if (!session_->done()) return out;
  done_ = true;
  if (request.stream) {
    if (!session_->status().ok()) {
      out += SseEvent(ErrorBody(ErrorFromStatus(session_->status())));
    } else if (request.include_usage) {
      out += SseEvent(UsageChunk(header_, request, session_->usage()));
    }
    out += kSseDone;
  }
  return out;
}

HttpResponse GenerationResponder::FinalResponse() {
  const GenerationRequest& request = session_->request();
  HttpResponse res;
  if (!session_->status().ok()) {
    res = ErrorResponse(ErrorFromStatus(session_->status()));
  } else {
    const Usage usage = session_->usage();
    res =
        JsonResponse(200, request.endpoint == Endpoint::kChat
                              ? ChatResponse(header_, request, collector_.choices(), usage)
                              : CompletionResponse(header_, request, collector_.choices(), usage));
  }
  res.headers.emplace_back("X-Request-Id", record_.request_id);
  Log(res.status);
  return res;
}

void GenerationResponder::StreamSent() { Log(200); }

void GenerationResponder::Abort(int status) {
  session_->Abort();
  if (!logged_) Log(status);
}

void GenerationResponder::Log(int status) {
  logged_ = true;
  if (!env_.access_log) return;
  const Usage usage = session_->usage();
  record_.prompt_tokens = usage.prompt_tokens;
  record_.completion_tokens = usage.completion_tokens;
  if (!session_->done()) record_.finish_reason = FinishReason::kAbort;
  if (!session_->status().ok()) record_.finish_reason = FinishReason::kError;
  record_.status = status;
  LogAccess(record_);
}

std::unique_ptr<GenerationResponder> StartGeneration(const GenerationEnv& env, Endpoint endpoint,
                                                     const HttpRequest& req, std::string request_id,
                                                     HttpResponse* refusal) {
  AccessRecord record;
  record.request_id = std::move(request_id);
  record.method = req.method;
  record.route = req.path;
  auto refuse = [&](const ApiError& error) -> std::unique_ptr<GenerationResponder> {
    *refusal = ErrorResponse(error);
    refusal->headers.emplace_back("X-Request-Id", record.request_id);
    record.status = refusal->status;
    if (env.access_log) LogAccess(record);
    return nullptr;
  };
  if (!env.ctx->ready.load() || env.stopping->load()) {
    return refuse(ErrorFromStatus(
        Status::Unavailable("The server is not ready (starting up or shutting down).")));
  }
  ApiError error;
  std::optional<nlohmann::json> body = ParseJsonObject(req.body, &error);
  if (!body) return refuse(error);
  const ProtocolContext pctx = MakeProtocolContext(*env.ctx);
  std::optional<GenerationRequest> request = endpoint == Endpoint::kChat
                                                 ? ParseChatRequest(*body, pctx, &error)
                                                 : ParseCompletionRequest(*body, pctx, &error);
  if (!request) return refuse(error);
  ResponseHeader header{NewResponseId(endpoint), NowSeconds(), request->model};
  // Counted from before Submit so a graceful shutdown never misses a request being admitted.
  ++*env.active;
  std::unique_ptr<GenerationSession> session =
      GenerationSession::Start(env.ctx->engine, std::move(*request), &error);
  if (!session) {
    --*env.active;
    return refuse(error);
  }
  return std::make_unique<GenerationResponder>(env, std::move(session), std::move(header),
                                               std::move(record));
}

}  // namespace sy::http
