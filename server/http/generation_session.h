// GenerationSession: one HTTP generation request in flight in the engine: the engine requests
// of its prompts, their merged output as choice deltas with OpenAI's choice indices, and usage.
// Destroying a session aborts whatever has not finished. Used by one thread at a time.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include "engine/sched/engine.h"
#include "server/http/openai_protocol.h"

namespace sy::http {

class GenerationSession {
 public:
  // Submits every prompt of `request`; on the first rejection aborts those already queued and
  // returns null with the error.
  static std::unique_ptr<GenerationSession> Start(Engine* engine, GenerationRequest request,
                                                  ApiError* error);
  ~GenerationSession();
  GenerationSession(const GenerationSession&) = delete;
  GenerationSession& operator=(const GenerationSession&) = delete;

  // Calls `ready` whenever one of the engine requests has new output (see
  // RequestStream::SetReadyCallback: it may run on the engine thread and must not block).
  void SetReadyCallback(const std::function<void()>& ready);
  // Appends the output of every engine request since the last call, one ChoiceOutput per
  // choice delta. Does not wait.
  void TakeOutput(std::vector<ChoiceOutput>* deltas);
  // Every engine request has finished.
  bool done() const { return unfinished_ == 0; }
  // The first fault a finished request reported (OK when none).
  const Status& status() const { return status_; }
  Usage usage() const;
  // Aborts every unfinished engine request (idempotent).
  void Abort();
  const GenerationRequest& request() const { return request_; }

 private:
  struct Part {
    std::shared_ptr<RequestStream> stream;
    bool finished = false;
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
  };
  GenerationSession(Engine* engine, GenerationRequest request);
  // Pops the update waiting for part `i`, if any.
  void TakePart(size_t i, std::vector<ChoiceOutput>* deltas);

  Engine* engine_;
  GenerationRequest request_;
  std::vector<Part> parts_;
  size_t unfinished_ = 0;
  Status status_;
};

// Collects a non-streaming response's choices from their deltas.
class ChoiceCollector {
 public:
  explicit ChoiceCollector(int32_t num_choices);
  void Add(ChoiceOutput delta);
  const std::vector<ChoiceOutput>& choices() const { return choices_; }

 private:
  std::vector<ChoiceOutput> choices_;
};

}  // namespace sy::http
