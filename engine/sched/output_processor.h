// OutputProcessor: the per-request output work that runs on the consumer's thread, not the
// engine's: turns the engine's token deltas into text (holding back partial UTF-8) and matches
// stop strings across token boundaries (holding back possible prefixes), as vLLM's output
// processor does. One per request; used by RequestStreamQueue::Next; not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "engine/sched/request.h"
#include "engine/sched/stop_checker.h"
#include "engine/tokenizer/tokenizer.h"

namespace sy {

class OutputProcessor {
 public:
  // Asks the engine to stop generating for choice `index` (a stop string matched there).
  using StopChoice = std::function<void(int32_t index)>;

  // `spec` is the request as submitted; `eos_ids` and `max_model_len` are the engine's, so that
  // this side reaches the same token-based finish as the engine. The tokenizer is shared so that
  // a stream read after the engine is gone still decodes.
  OutputProcessor(const RequestSpec& spec, std::shared_ptr<const Tokenizer> tokenizer,
                  std::vector<int32_t> eos_ids, int64_t max_model_len, StopChoice stop_choice);

  // Whether a request needs one: it wants text, or has stop strings to match.
  static bool Needed(const RequestSpec& spec) {
    return spec.detokenize || !spec.stop.stop_strings.empty();
  }

  // Rewrites an update as the engine pushed it (tokens only) into what the frontend sees: text
  // filled in, each choice cut after the token that completed a stop string (finish kStop and
  // stop_string set; the engine is asked to stop it), and what the engine produced for such a
  // choice afterwards dropped, from the deltas and completion_tokens alike. Sets `finished`
  // once every choice has finished here, which may be before the engine's last update.
  void Process(RequestUpdate* update);

 private:
  struct Choice {
    std::unique_ptr<IncrementalDetokenizer> detokenizer;
    std::unique_ptr<StopChecker> checker;
    int32_t num_output = 0;  // tokens passed on to the frontend
    bool finished = false;
  };

  // Runs one engine delta through its choice; returns false when nothing of it is passed on.
  bool ProcessDelta(CompletionDelta& delta);

  std::shared_ptr<const Tokenizer> tokenizer_;
  const bool emit_text_;
  const int64_t num_prompt_tokens_;
  StopChoice stop_choice_;
  std::vector<Choice> choices_;
  int32_t num_finished_ = 0;
};

}  // namespace sy
