// Bounds on what one generation request may ask for, checked by every frontend (HTTP, gRPC) and
// again by Engine::Submit, so both front doors refuse the same request with the same message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "engine/sched/request.h"

namespace sy {

inline constexpr int32_t kMaxChoices = 128;  // n
// Prompts x n of one request: what one client may add to the queue at once.
inline constexpr int64_t kMaxSequencesPerRequest = 256;
// Stop strings are matched on the engine thread after every token of every sequence.
inline constexpr size_t kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 4096;  // all stop strings of a request together
inline constexpr size_t kMaxStopTokenIds = 64;

// Each InvalidArgument below names the parameter it refuses; the caller knows which field it is.
// n in [1, kMaxChoices] and num_prompts * n at most kMaxSequencesPerRequest.
Status CheckSequenceCount(int64_t num_prompts, int64_t n);
// At most kMaxStopStrings, none empty, kMaxStopStringBytes in all.
Status CheckStopStrings(const std::vector<std::string>& stop_strings);
// InvalidArgument "<field>: id N is outside the vocabulary [0, vocab_size)" for the first such id
// of `ids` (prompts, stop ids, ids to detokenize), else Ok.
Status CheckTokenIds(std::span<const int32_t> ids, int64_t vocab_size, std::string_view field);
// At most kMaxStopTokenIds, each in [0, vocab_size).
Status CheckStopTokenIds(const std::vector<int32_t>& ids, int64_t vocab_size);
// The three above for one single-prompt spec.
Status CheckRequestLimits(const RequestSpec& spec, int64_t vocab_size);

}  // namespace sy
