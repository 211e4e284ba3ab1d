// ExpertLoad: how many tokens each expert of each MoE layer received, for the last step and
// since start, and the last step's routing choices (for routing statistics). Written by the
// forward pass, read by metrics and the routing statistics.
// Not thread-safe: the engine thread writes; readers take a snapshot on that thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace sy {

class ExpertLoad {
 public:
  ExpertLoad(int64_t num_layers, int64_t num_experts);

  // Starts a new step: last-step counts go to zero.
  void BeginStep();
  void Record(int64_t layer, std::span<const int64_t> tokens_per_expert);
  // The step's choices at `layer`: expert ids [tokens * top_k] (token-major) and, with expert
  // parallelism, the rank that computed each (same length; empty on a single rank).
  void RecordChoices(int64_t layer, std::span<const int32_t> expert_ids,
                     std::span<const int32_t> ranks);

  int64_t num_layers() const { return num_layers_; }
  int64_t num_experts() const { return num_experts_; }
  std::span<const int64_t> last_step(int64_t layer) const;
  std::span<const int64_t> cumulative(int64_t layer) const;
  const std::vector<int32_t>& step_choices(int64_t layer) const { return choices_[layer]; }
  const std::vector<int32_t>& step_ranks(int64_t layer) const { return ranks_[layer]; }

 private:
  int64_t num_layers_;
  int64_t num_experts_;
  std::vector<int64_t> last_step_;             // [layer][expert]
  std::vector<int64_t> cumulative_;            // [layer][expert]
  std::vector<std::vector<int32_t>> choices_;  // [layer][token * top_k]
  std::vector<std::vector<int32_t>> ranks_;    // [layer][token * top_k]
};

}  // namespace sy
