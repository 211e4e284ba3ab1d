#include "engine/moe/expert_load.h"

#include <algorithm>

#include "engine/core/check.h"

namespace sy {

ExpertLoad::ExpertLoad(int64_t num_layers, int64_t num_experts)
    : num_layers_(num_layers),
      num_experts_(num_experts),
      last_step_(num_layers * num_experts, 0),
      cumulative_(num_layers * num_experts, 0),
      choices_(num_layers),
      ranks_(num_layers) {}

void ExpertLoad::BeginStep() {
  std::fill(last_step_.begin(), last_step_.end(), 0);
  for (auto& c : choices_) c.clear();
  for (auto& r : ranks_) r.clear();
}

void ExpertLoad::RecordChoices(int64_t layer, std::span<const int32_t> expert_ids,
                               std::span<const int32_t> ranks) {
  SY_CHECK(layer >= 0 && layer < num_layers_ &&
           (ranks.empty() || ranks.size() == expert_ids.size()));
  choices_[layer].assign(expert_ids.begin(), expert_ids.end());
  ranks_[layer].assign(ranks.begin(), ranks.end());
}

void ExpertLoad::Record(int64_t layer, std::span<const int64_t> tokens_per_expert) {
  SY_CHECK(layer >= 0 && layer < num_layers_ &&
           static_cast<int64_t>(tokens_per_expert.size()) == num_experts_);
  for (int64_t e = 0; e < num_experts_; ++e) {
    last_step_[layer * num_experts_ + e] += tokens_per_expert[e];
    cumulative_[layer * num_experts_ + e] += tokens_per_expert[e];
  }
}

std::span<const int64_t> ExpertLoad::last_step(int64_t layer) const {
  return {last_step_.data() + layer * num_experts_, static_cast<size_t>(num_experts_)};
}

std::span<const int64_t> ExpertLoad::cumulative(int64_t layer) const {
  return {cumulative_.data() + layer * num_experts_, static_cast<size_t>(num_experts_)};
}

}  // namespace sy
