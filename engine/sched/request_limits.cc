#include "engine/sched/request_limits.h"

namespace sy {

Status CheckSequenceCount(int64_t num_prompts, int64_t n) {
  if (n < 1 || n > kMaxChoices) {
    return Status::InvalidArgument("n must be in [1, " + std::to_string(kMaxChoices) + "], got " +
                                   std::to_string(n));
  }
  // n <= kMaxChoices, so the product cannot overflow for any count of prompts a body can hold.
  if (num_prompts * n > kMaxSequencesPerRequest) {
    return Status::InvalidArgument("prompts x n must be at most " +
                                   std::to_string(kMaxSequencesPerRequest) + ", got " +
                                   std::to_string(num_prompts) + " x " + std::to_string(n) + " = " +
                                   std::to_string(num_prompts * n) + " sequences");
  }
  return Status::Ok();
}

Status CheckStopStrings(const std::vector<std::string>& stop_strings) {
  if (stop_strings.size() > kMaxStopStrings) {
    return Status::InvalidArgument("stop may hold at most " + std::to_string(kMaxStopStrings) +
                                   " strings, got " + std::to_string(stop_strings.size()));
  }
  size_t bytes = 0;
  for (const std::string& s : stop_strings) {
    if (s.empty()) return Status::InvalidArgument("stop strings must not be empty");
    bytes += s.size();
  }
  if (bytes > kMaxStopStringBytes) {
    return Status::InvalidArgument("stop strings may hold at most " +
                                   std::to_string(kMaxStopStringBytes) + " bytes in all, got " +
                                   std::to_string(bytes));
  }
  return Status::Ok();
}

Status CheckTokenIds(std::span<const int32_t> ids, int64_t vocab_size, std::string_view field) {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size) {
      return Status::InvalidArgument(std::string(field) + ": id " + std::to_string(id) +
                                     " is outside the vocabulary [0, " +
                                     std::to_string(vocab_size) + ")");
    }
  }
  return Status::Ok();
}

Status CheckStopTokenIds(const std::vector<int32_t>& ids, int64_t vocab_size) {
  if (ids.size() > kMaxStopTokenIds) {
    return Status::InvalidArgument("stop_token_ids may hold at most " +
                                   std::to_string(kMaxStopTokenIds) + " ids, got " +
                                   std::to_string(ids.size()));
  }
  return CheckTokenIds(ids, vocab_size, "stop_token_ids");
}

Status CheckRequestLimits(const RequestSpec& spec, int64_t vocab_size) {
  SY_RETURN_IF_ERROR(CheckSequenceCount(1, spec.n));
  SY_RETURN_IF_ERROR(CheckStopStrings(spec.stop.stop_strings));
  return CheckStopTokenIds(spec.stop.stop_token_ids, vocab_size);
}

}  // namespace sy
