// What a frontend (HTTP, gRPC, tests) submits to the Engine and what it reads back: a request
// spec, and the per-step updates of its output stream. Plain data; no engine state.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/status.h"
#include "engine/runner/sampler.h"

namespace sy {

using Clock = std::chrono::steady_clock;

enum class FinishReason { kStop, kLength, kAbort, kError };
// "stop", "length", "abort", "error" (the OpenAI finish_reason for the first two).
const char* FinishReasonName(FinishReason reason);

// When a choice stops. Checked after every new token, in this order: stop token ids and EOS
// (unless ignore_eos), stop strings, max_tokens, the model's context length. Stop strings are
// matched on the consumer's side (OutputProcessor, when the stream is read), the rest on the
// engine thread; the result is the same as one check in this order.
struct StopConditions {
  int32_t max_tokens = 16;                // new tokens per choice; >= 1
  int32_t min_tokens = 0;                 // EOS and stop token ids are ignored before this many
  std::vector<int32_t> stop_token_ids;    // in addition to the model's EOS ids
  std::vector<std::string> stop_strings;  // matched across token boundaries
  bool ignore_eos = false;
  bool include_stop_str_in_output = false;
};

struct RequestSpec {
  std::vector<int32_t> prompt;  // token ids, non-empty
  SamplingParams sampling;      // with n > 1 and a seed, choice i uses seed + i
  StopConditions stop;
  int32_t n = 1;           // independent choices sharing the prompt's KV blocks
  bool detokenize = true;  // fill CompletionDelta::text
  bool skip_special_tokens = true;
  Clock::time_point arrival = Clock::now();
  // When set, the request ends once this passes, whether queued or running: its choices finish
  // with kAbort and the stream's status is DeadlineExceeded (checked at Submit and at every
  // engine step boundary).
  std::optional<Clock::time_point> deadline;
};

// New output of one choice since the previous update.
struct CompletionDelta {
  int32_t index = 0;                          // choice index, 0..n-1
  std::vector<int32_t> token_ids;             // tokens generated since the last update
  std::vector<SampledToken> samples;          // one per token; logprobs set when asked
  std::string text;                           // text those tokens completed (stop strings cut out)
  std::optional<FinishReason> finish_reason;  // set once, on the choice's last delta
  // What stopped the choice with kStop: the stop string, or the token id, as vLLM's stop_reason.
  std::optional<std::string> stop_string;
  std::optional<int32_t> stop_token;
};

// One update popped from a RequestStream. `finished` is set on the last update of the request;
// then `status` says whether it ended normally (OK, also for aborts), by its deadline
// (DeadlineExceeded) or by an internal fault.
struct RequestUpdate {
  std::vector<CompletionDelta> deltas;
  bool finished = false;
  Status status;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;     // so far, summed over choices
  int32_t cached_prompt_tokens = 0;  // prompt tokens served from the prefix cache
};

}  // namespace sy
