// Sampler: turns one sequence's next-token logits into a token, as vLLM does: penalties, then
// temperature, then min-p, top-k and top-p filters, then a draw from the request's own seeded
// generator (same seed, same tokens). One Sampler per sequence; not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/core/status.h"

namespace sy {

// Temperatures below this are greedy, as vLLM's _SAMPLING_EPS: the distribution is then a point
// mass on the argmax to within float precision.
inline constexpr float kGreedyTemperature = 1e-5f;

struct SamplingParams {
  float temperature = 1.0f;         // < kGreedyTemperature (0 included): greedy
  int32_t top_k = 0;                // 0 or -1: all tokens
  float top_p = 1.0f;               // (0, 1]
  float min_p = 0.0f;               // [0, 1]
  float repetition_penalty = 1.0f;  // > 0; applies to prompt and output tokens
  float presence_penalty = 0.0f;    // [-2, 2]; output tokens only
  float frequency_penalty = 0.0f;   // [-2, 2]; output tokens only
  std::optional<uint64_t> seed;
  int32_t logprobs = -1;  // < 0: none; n >= 0: the chosen token's logprob and the top n

  // InvalidArgument naming the first out-of-range field.
  Status Validate() const;
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct SampledToken {
  int32_t token = 0;
  // Of the model's raw distribution; set when logprobs >= 0. Finite, or -inf for a token whose
  // probability is zero in double precision (masked, or underflowed).
  float logprob = 0.0f;
  std::vector<TokenLogprob> top;  // the top `logprobs` tokens of the raw distribution
};

class Sampler {
 public:
  Sampler(const SamplingParams& params, std::span<const int32_t> prompt);

  // Picks the next token from `logits` (vocab floats; overwritten as scratch) and records it
  // as generated output for the penalties. NaN logits are treated as masked (-inf) and +inf
  // as FLT_MAX; if every logit is masked the result is token 0.
  SampledToken Sample(std::span<float> logits);

 private:
  void ApplyPenalties(std::span<float> logits) const;
  int32_t Draw(std::span<const float> logits);

  SamplingParams params_;
  std::unordered_map<int32_t, int32_t> output_counts_;
  std::unordered_set<int32_t> seen_;  // prompt and output tokens (repetition penalty)
  std::mt19937_64 rng_;
  std::vector<int32_t> order_;  // scratch: candidate token ids
  std::vector<double> probs_;   // scratch
};

}  // namespace sy
