// ExpertLoad: how many tokens each expert of each MoE layer received, for the last step and
// since start. Written by the forward pass, read by metrics and the placement planner.
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

  int64_t num_layers() const { return num_layers_; }
  int64_t num_experts() const { return num_experts_; }
  std::span<const int64_t> last_step(int64_t layer) const;
  std::span<const int64_t> cumulative(int64_t layer) const;

 private:
  int64_t num_layers_;
  int64_t num_experts_;
  std::vector<int64_t> last_step_;   // [layer][expert]
  std::vector<int64_t> cumulative_;  // [layer][expert]
};

}  // namespace sy
