// The prompts a load test sends: random token-id prompts of controlled length, or ShareGPT
// conversations sampled the way `vllm bench serve` does. Pure functions over values; the token
// counter callback is the only I/O hook.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace sy::bench {

struct BenchRequest {
  nlohmann::json prompt;   // a string, or an array of token ids
  int64_t prompt_len = 0;  // tokens in the prompt (exact for token ids, else counted/estimated)
  int64_t output_len = 0;  // sent as max_tokens
};

struct RandomDatasetOptions {
  int64_t num_prompts = 1000;
  int64_t input_len = 1024;
  int64_t output_len = 128;
  // Lengths are drawn uniformly from [len * (1 - r), len * (1 + r)], as vLLM's random dataset.
  double range_ratio = 0;
  int64_t vocab_size = 1000;  // token ids are drawn from [0, vocab_size)
  uint64_t seed = 0;
};

// Prompts made of random token ids, sent as `prompt: [ids]` so the server sees exactly the
// drawn input length whatever its tokenizer.
StatusOr<std::vector<BenchRequest>> MakeRandomRequests(const RandomDatasetOptions& opts);

// One usable conversation: its first human turn and the model turn that answers it.
struct ShareGptPair {
  std::string prompt;
  std::string completion;
};

// Reads the ShareGPT_V3 layout (a list of {"conversations": [{"from", "value"}, ...]}) with a
// streaming parser that keeps only the first human/gpt pair of each conversation, so the
// 600 MB public file does not become a multi-gigabyte DOM. Conversations without such a pair
// are skipped.
StatusOr<std::vector<ShareGptPair>> ParseShareGpt(std::istream& in);
StatusOr<std::vector<ShareGptPair>> LoadShareGpt(const std::string& path);

// Counts the tokens of a text (e.g. through the server's POST /tokenize).
using TokenCounter = std::function<StatusOr<int64_t>(const std::string& text)>;

// The tokenizer-free estimate: about four characters per token, at least one.
int64_t EstimateTokens(const std::string& text);

struct ShareGptOptions {
  int64_t num_prompts = 1000;
  std::optional<int64_t> output_len;  // fixed max_tokens; else the model turn's token count
  uint64_t seed = 0;
};

// Shuffles the pairs with the seed and keeps those vLLM would keep (prompt at least 4 and at most
// 1024 tokens, output at least 4 unless output_len is fixed, prompt + output at most 2048).
// Cycles through the kept ones when there are fewer than num_prompts.
StatusOr<std::vector<BenchRequest>> MakeShareGptRequests(const std::vector<ShareGptPair>& pairs,
                                                         const ShareGptOptions& opts,
                                                         const TokenCounter& count_tokens);

}  // namespace sy::bench
