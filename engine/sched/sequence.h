// Sequence: one choice of a request. The scheduler and block manager see its tokens (prompt,
// then output), how many of them have K/V in the cache, and its KV blocks; the engine adds the
// per-choice output state (sampler, token stop checks, timing; the text is made off the engine
// thread, by the stream's OutputProcessor). Owned by the engine
// thread's request state; not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/runner/sampler.h"
#include "engine/sched/block_manager.h"
#include "engine/sched/request.h"
#include "engine/sched/stop_checker.h"

namespace sy {

enum class SequenceStatus { kWaiting, kRunning, kFinished };

struct Sequence {
  Sequence(uint64_t request_id, int32_t index, std::vector<int32_t> prompt);

  int64_t num_tokens() const { return static_cast<int64_t>(tokens.size()); }
  int32_t num_output_tokens() const {
    return static_cast<int32_t>(tokens.size()) - num_prompt_tokens;
  }
  // Tokens known but not yet in the KV cache: the prompt (or, after preemption, everything)
  // before the first step, then the token sampled last.
  int64_t num_pending_tokens() const { return num_tokens() - num_computed_tokens; }

  // --- scheduling state ---
  uint64_t request_id;
  int32_t index;                // choice index within the request
  std::vector<int32_t> tokens;  // prompt, then output
  int32_t num_prompt_tokens;
  int64_t num_computed_tokens = 0;  // leading tokens whose K/V are in the cache
  SeqBlocks blocks;
  SequenceStatus status = SequenceStatus::kWaiting;
  // With n > 1, a choice is admitted only once its leader's prompt was computed, so that it
  // finds the prompt's blocks in the prefix cache. Null for the leader itself.
  const Sequence* prefix_leader = nullptr;
  bool prompt_computed = false;    // the whole prompt reached the cache once
  int64_t prefill_end = 0;         // tokens known when last admitted; fed below it is prefill
  int64_t num_cached_tokens = -1;  // prefix-cache hit at first admission; -1 before
  int32_t num_preemptions = 0;

  // --- output state (set by the engine; unused by the scheduler) ---
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<StopChecker> stop_checker;
  std::optional<FinishReason> finish_reason;
  Clock::time_point last_token_time{};
  std::vector<double> inter_token_seconds;
};

}  // namespace sy
