#include "server/http/generation_session.h"

namespace sy::http {

GenerationSession::GenerationSession(Engine* engine, GenerationRequest request)
    : engine_(engine), request_(std::move(request)) {}

std::unique_ptr<GenerationSession> GenerationSession::Start(Engine* engine,
                                                            GenerationRequest request,
                                                            ApiError* error) {
  std::unique_ptr<GenerationSession> session(new GenerationSession(engine, std::move(request)));
  for (const RequestSpec& spec : session->request_.specs) {
    StatusOr<std::shared_ptr<RequestStream>> stream = engine->Submit(spec);
    if (!stream.ok()) {
      *error = ErrorFromStatus(stream.status());
      return nullptr;  // the destructor aborts what was queued
    }
    Part part;
    part.stream = std::move(stream).value();
    part.prompt_tokens = static_cast<int64_t>(spec.prompt.size());
    session->parts_.push_back(std::move(part));
    ++session->unfinished_;
  }
  return session;
}

GenerationSession::~GenerationSession() { Abort(); }

void GenerationSession::Abort() {
  for (Part& part : parts_) {
    if (!part.finished) engine_->Abort(part.stream->id());
  }
}

void GenerationSession::SetReadyCallback(const std::function<void()>& ready) {
  for (Part& part : parts_) part.stream->SetReadyCallback(ready);
}

Usage GenerationSession::usage() const {
  Usage usage;
  for (const Part& part : parts_) {
    usage.prompt_tokens += part.prompt_tokens;
    usage.completion_tokens += part.completion_tokens;
  }
  return usage;
}

void GenerationSession::TakePart(size_t i, std::vector<ChoiceOutput>* deltas) {
  Part& part = parts_[i];
  RequestUpdate update;
  if (part.finished || !part.stream->Next(&update, std::chrono::milliseconds(0))) return;
  const Engine& engine = *engine_;
  for (CompletionDelta& d : update.deltas) {
    ChoiceOutput out;
    out.index = static_cast<int32_t>(i) * request_.n + d.index;
    out.num_tokens = static_cast<int32_t>(d.token_ids.size());
    out.text = std::move(d.text);
    if (request_.logprobs >= 0) out.logprobs = DecodeLogprobs(engine.tokenizer(), d.samples);
    out.finish_reason = d.finish_reason;
    out.stop_string = std::move(d.stop_string);
    out.stop_token = d.stop_token;
    deltas->push_back(std::move(out));
  }
  if (update.prompt_tokens > 0) part.prompt_tokens = update.prompt_tokens;
  part.completion_tokens = update.completion_tokens;
  if (update.finished) {
    part.finished = true;
    --unfinished_;
    if (!update.status.ok() && status_.ok()) status_ = update.status;
  }
}

void GenerationSession::TakeOutput(std::vector<ChoiceOutput>* deltas) {
  for (size_t i = 0; i < parts_.size(); ++i) TakePart(i, deltas);
}

ChoiceCollector::ChoiceCollector(int32_t num_choices) : choices_(num_choices) {
  for (int32_t i = 0; i < num_choices; ++i) choices_[i].index = i;
}

void ChoiceCollector::Add(ChoiceOutput delta) {
  if (delta.index < 0 || delta.index >= static_cast<int32_t>(choices_.size())) return;
  ChoiceOutput& c = choices_[delta.index];
  c.text += delta.text;
  for (LogprobEntry& e : delta.logprobs) c.logprobs.push_back(std::move(e));
  if (delta.finish_reason) c.finish_reason = delta.finish_reason;
  if (delta.stop_string) c.stop_string = std::move(delta.stop_string);
  if (delta.stop_token) c.stop_token = delta.stop_token;
}

}  // namespace sy::http
