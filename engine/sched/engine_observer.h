// EngineObserver: how the engine reports what it does, so the server can render metrics without
// the engine knowing Prometheus. Callbacks run on the engine thread and must be cheap and
// thread-safe with respect to the observer's own readers.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/sched/request.h"

namespace sy {

// One engine step.
struct StepStats {
  double step_seconds = 0;         // wall time of the model step plus sampling
  int32_t num_prefill_tokens = 0;  // prompt (or recomputed) tokens fed this step
  int32_t num_decode_tokens = 0;
  int32_t num_running = 0;  // sequences scheduled this step
  // Tokens routed to each expert this step, [layer][expert]; empty for dense layers.
  std::vector<std::vector<int64_t>> expert_tokens;
};

// One finished request (all its choices), as the engine ran it. Stop strings are matched on the
// consumer's side, which then stops the choice in the engine a step or more later: a choice
// stopped so counts kStop here (unless the engine had already ended it, e.g. at max_tokens,
// before the match was seen), and generation_tokens includes the tokens computed after the match
// that the stream dropped (the usage a client sees ends at the match).
struct RequestStats {
  FinishReason finish_reason = FinishReason::kStop;  // of the last choice to finish
  std::vector<FinishReason> choice_finish_reasons;
  int32_t prompt_tokens = 0;
  int32_t generation_tokens = 0;  // summed over choices; tokens the engine computed
  int32_t cached_prompt_tokens = 0;
  double queue_seconds = 0;                 // arrival -> first scheduled
  double prefill_seconds = 0;               // first scheduled -> first token
  double ttft_seconds = -1;                 // arrival -> first token; < 0 when none was produced
  double e2e_seconds = 0;                   // arrival -> finished
  std::vector<double> inter_token_seconds;  // gaps between a choice's consecutive tokens
};

class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  virtual void OnStep(const StepStats& step) = 0;
  virtual void OnRequestFinished(const RequestStats& request) = 0;
  virtual void OnPreemption(int32_t num_sequences) = 0;
  // A request turned away at Submit (queue full, invalid, shutting down).
  virtual void OnRejected(StatusCode code) = 0;
};

}  // namespace sy
