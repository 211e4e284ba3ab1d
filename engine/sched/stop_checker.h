// StopChecker: decides when one choice stops and which of its text may be streamed. Stop
// strings are matched on the detokenized text across token boundaries; text that could still
// become the start of a stop string is held back, so the stream never emits text that a later
// match would cut. The engine thread uses only the token checks (CheckToken); the text side runs
// in the consumer's OutputProcessor. One per choice; not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/sched/request.h"
#include "engine/tokenizer/tokenizer.h"

namespace sy {

// The outcome of one new token.
struct StopUpdate {
  std::string text;  // text that may be streamed now
  std::optional<FinishReason> finish;
  std::optional<std::string> stop_string;  // what stopped the choice, as vLLM's stop_reason
  std::optional<int32_t> stop_token;       // a stop_token_ids entry (not EOS)
};

class StopChecker {
 public:
  // `eos_ids` end the choice unless stop.ignore_eos; `max_model_len` caps the sequence length.
  StopChecker(const StopConditions& stop, std::vector<int32_t> eos_ids, int64_t max_model_len);

  // Whether `token` would end the choice as EOS or a stop token id when it is output token
  // number `num_output` (1-based). Before min_tokens, such tokens are ignored.
  bool IsStopToken(int32_t token, int32_t num_output) const;

  // The checks that need no text, in the order of StopConditions: stop tokens and EOS,
  // max_tokens, then the context length. Sets finish and stop_token only.
  StopUpdate CheckToken(int32_t token, int32_t num_output, int64_t seq_len) const;

  // Checks the choice after its new output token `token`, the `num_output`-th, which made the
  // sequence `seq_len` tokens long. `detok` turns tokens into text (null: no text, and stop
  // strings are not checked). In the order of StopConditions: stop tokens and EOS, stop
  // strings, max_tokens, then the context length.
  StopUpdate Append(int32_t token, int32_t num_output, int64_t seq_len,
                    IncrementalDetokenizer* detok);

 private:
  // Looks for a stop string in pending_; on a match moves the text before it (and the stop
  // string when included) to `out` and finishes.
  bool MatchStopString(StopUpdate* out);
  // Length of the longest suffix of pending_ that is a proper prefix of a stop string.
  size_t HeldBackLength() const;

  StopConditions stop_;
  std::vector<int32_t> eos_ids_;
  int64_t max_model_len_;
  std::string pending_;  // detokenized text not streamed yet
};

}  // namespace sy
