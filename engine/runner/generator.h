// Generator: offline generation for a fixed set of requests over a ModelRunner, with no
// scheduler: prompts are prefilled in chunks under the step's token budget, mixed with the decode
// tokens of sequences already generating, until every request stops. Used by `switchyard
// generate`, benchmarks and tests; serving uses the continuous-batching scheduler instead.
// Not thread-safe.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "engine/kv/block_allocator.h"
#include "engine/runner/model_runner.h"
#include "engine/runner/sampler.h"

namespace sy {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int32_t max_new_tokens = 16;
  std::vector<int32_t> stop_token_ids;  // generation ends after emitting one of these
};

struct GenerationResult {
  std::vector<int32_t> tokens;
  std::vector<SampledToken> samples;  // one per token, with logprobs when asked
  std::string finish_reason;          // "stop" or "length"
};

class Generator {
 public:
  explicit Generator(ModelRunner* runner);

  // Generates for all requests together; on_token(request index, token) sees each new token.
  StatusOr<std::vector<GenerationResult>> Generate(
      std::span<const GenerationRequest> requests,
      const std::function<void(size_t, const SampledToken&)>& on_token = {});

  // Next-token logits after every prompt position, [len, vocab] per prompt, computed in shared
  // steps (the prompts are batched together).
  StatusOr<std::vector<std::vector<float>>> PromptLogits(
      std::span<const std::vector<int32_t>> prompts);

  // Steps the last call ran.
  int64_t last_steps() const { return last_steps_; }

 private:
  struct Sequence;
  // Runs steps until no sequence has tokens left to feed. After each step, `consume` gets the
  // logits of every sequence that has them: its last token's (or, with all_logits, every fed
  // token's), and may append tokens or mark the sequence done.
  Status Run(std::vector<Sequence>& seqs, bool all_logits,
             const std::function<void(Sequence&, std::span<float>, int64_t first_pos)>& consume);

  ModelRunner* runner_;
  BlockAllocator allocator_;
  int64_t last_steps_ = 0;
};

}  // namespace sy
