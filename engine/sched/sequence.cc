#include "engine/sched/sequence.h"

namespace sy {

Sequence::Sequence(uint64_t request_id, int32_t index, std::vector<int32_t> prompt)
    : request_id(request_id),
      index(index),
      tokens(std::move(prompt)),
      num_prompt_tokens(static_cast<int32_t>(tokens.size())) {}

}  // namespace sy
