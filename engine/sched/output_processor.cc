#include "engine/sched/output_processor.h"

namespace sy {

OutputProcessor::OutputProcessor(const RequestSpec& spec,
                                 std::shared_ptr<const Tokenizer> tokenizer,
                                 std::vector<int32_t> eos_ids, int64_t max_model_len,
                                 StopChoice stop_choice)
    : tokenizer_(std::move(tokenizer)),
      emit_text_(spec.detokenize),
      num_prompt_tokens_(static_cast<int64_t>(spec.prompt.size())),
      stop_choice_(std::move(stop_choice)),
      choices_(static_cast<size_t>(spec.n)) {
  for (Choice& c : choices_) {
    c.detokenizer = std::make_unique<IncrementalDetokenizer>(*tokenizer_, spec.skip_special_tokens);
    c.checker = std::make_unique<StopChecker>(spec.stop, eos_ids, max_model_len);
  }
}

void OutputProcessor::Process(RequestUpdate* update) {
  std::vector<CompletionDelta> out;
  for (CompletionDelta& d : update->deltas) {
    if (ProcessDelta(d)) out.push_back(std::move(d));
  }
  update->deltas = std::move(out);
  update->completion_tokens = 0;
  for (const Choice& c : choices_) update->completion_tokens += c.num_output;
  if (num_finished_ == static_cast<int32_t>(choices_.size())) update->finished = true;
}

bool OutputProcessor::ProcessDelta(CompletionDelta& d) {
  if (d.index < 0 || static_cast<size_t>(d.index) >= choices_.size()) return false;
  Choice& c = choices_[d.index];
  if (c.finished) return false;  // stopped here already: the engine's later output is dropped
  std::string text;
  size_t kept = 0;
  std::optional<StopUpdate> stopped;
  while (kept < d.token_ids.size() && !stopped) {
    ++c.num_output;
    StopUpdate u = c.checker->Append(d.token_ids[kept], c.num_output,
                                     num_prompt_tokens_ + c.num_output, c.detokenizer.get());
    ++kept;
    text += u.text;
    if (u.finish) stopped = std::move(u);
  }
  const bool engine_finished_here = d.finish_reason.has_value() && kept == d.token_ids.size();
  d.token_ids.resize(kept);
  if (d.samples.size() > kept) d.samples.erase(d.samples.begin() + kept, d.samples.end());
  d.text = emit_text_ ? std::move(text) : std::string();
  if (stopped) {
    // The same token checks as the engine's, plus stop strings, which come first: a stop
    // string the last token completed wins over the engine's EOS or length finish.
    d.finish_reason = stopped->finish;
    d.stop_string = std::move(stopped->stop_string);
    d.stop_token = stopped->stop_token;
    if (d.stop_string && !engine_finished_here && stop_choice_) stop_choice_(d.index);
  }
  // Otherwise an engine finish the checker did not reach (abort, error) stands as it came;
  // the text still held back is not released, as before the split.
  if (d.finish_reason) {
    c.finished = true;
    ++num_finished_;
  }
  return !d.token_ids.empty() || d.finish_reason.has_value();
}

}  // namespace sy
