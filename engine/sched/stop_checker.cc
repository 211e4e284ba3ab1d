#include "engine/sched/stop_checker.h"

#include <algorithm>

namespace sy {
namespace {

bool Contains(std::span<const int32_t> ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

StopChecker::StopChecker(const StopConditions& stop, std::vector<int32_t> eos_ids,
                         int64_t max_model_len)
    : stop_(stop), eos_ids_(std::move(eos_ids)), max_model_len_(max_model_len) {}

bool StopChecker::IsStopToken(int32_t token, int32_t num_output) const {
  if (num_output <= stop_.min_tokens) return false;
  return (!stop_.ignore_eos && Contains(eos_ids_, token)) || Contains(stop_.stop_token_ids, token);
}

StopUpdate StopChecker::CheckToken(int32_t token, int32_t num_output, int64_t seq_len) const {
  StopUpdate out;
  if (IsStopToken(token, num_output)) {
    out.finish = FinishReason::kStop;
    if (Contains(stop_.stop_token_ids, token)) out.stop_token = token;
  } else if (num_output >= stop_.max_tokens || seq_len >= max_model_len_) {
    out.finish = FinishReason::kLength;
  }
  return out;
}

StopUpdate StopChecker::Append(int32_t token, int32_t num_output, int64_t seq_len,
                               IncrementalDetokenizer* detok) {
  StopUpdate out;
  if (IsStopToken(token, num_output)) {
    // As vLLM: the stop token's own text is left out unless asked for.
    if (detok != nullptr) {
      if (stop_.include_stop_str_in_output) pending_ += detok->Push(token);
      pending_ += detok->Flush();
    }
    if (!MatchStopString(&out)) {
      out.text = std::move(pending_);
      out.finish = FinishReason::kStop;
      if (Contains(stop_.stop_token_ids, token)) out.stop_token = token;
    }
    pending_.clear();
    return out;
  }
  if (detok != nullptr) pending_ += detok->Push(token);
  if (MatchStopString(&out)) return out;
  if (num_output >= stop_.max_tokens || seq_len >= max_model_len_) {
    if (detok != nullptr) pending_ += detok->Flush();
    if (MatchStopString(&out)) return out;
    out.text = std::move(pending_);
    pending_.clear();
    out.finish = FinishReason::kLength;
    return out;
  }
  const size_t keep = pending_.size() - HeldBackLength();
  out.text = pending_.substr(0, keep);
  pending_.erase(0, keep);
  return out;
}

bool StopChecker::MatchStopString(StopUpdate* out) {
  size_t best = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const std::string& s : stop_.stop_strings) {
    if (s.empty()) continue;
    const size_t pos = pending_.find(s);
    if (pos < best) {
      best = pos;
      best_stop = &s;
    }
  }
  if (best_stop == nullptr) return false;
  const size_t end = best + (stop_.include_stop_str_in_output ? best_stop->size() : 0);
  out->text = pending_.substr(0, end);
  out->finish = FinishReason::kStop;
  out->stop_string = *best_stop;
  pending_.clear();
  return true;
}

size_t StopChecker::HeldBackLength() const {
  size_t held = 0;
  for (const std::string& s : stop_.stop_strings) {
    if (s.empty()) continue;
    // Proper prefixes only: a whole stop string would have matched already.
    const size_t longest = std::min(s.size() - 1, pending_.size());
    for (size_t len = longest; len > held; --len) {
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        held = len;
        break;
      }
    }
  }
  return held;
}

}  // namespace sy
