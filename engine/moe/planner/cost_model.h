// CostModel: what one replica of an expert costs a rank in one decode step of the whole group,
// from the expert's routing frequency: token-expert pairs times the compute per pair, plus the
// chance the replica is active at all times the time to read its weights (in small batches a
// rank pays per distinct expert it activates, not per token). With no model ("tokens" mode) the
// cost is the token-expert pairs alone. A small value type; thread-compatible.
#pragma once

#include <cstdint>
#include <string>

#include "engine/core/status.h"

namespace sy {

// The shapes of a model's routed experts that the cost model needs (from its ModelConfig).
struct ExpertShape {
  int64_t num_experts = 0;
  int64_t hidden_size = 0;
  int64_t moe_intermediate_size = 0;
};

struct MachineNumbers {
  double bandwidth_gbs = 3350;  // memory bandwidth, GB/s (H100 SXM)
  double tflops = 990;          // dense bf16 TFLOP/s (H100 SXM)
};

class CostModel {
 public:
  // Tokens mode: cost = token-expert pairs per rank.
  explicit CostModel(int64_t batch_tokens = 64);
  // Seconds mode from a model's expert shapes: t_token = 6 * hidden * moe_inter / flops,
  // t_read = expert bytes / bandwidth. `dtype`: bf16, f16, f32 or fp8. InvalidArgument for an
  // unknown dtype, a model without routed experts, or non-positive machine numbers / batch.
  static StatusOr<CostModel> FromModel(const ExpertShape& shape, const std::string& dtype,
                                       const MachineNumbers& machine, int64_t batch_tokens);

  bool tokens_mode() const { return tokens_mode_; }
  int64_t batch_tokens() const { return batch_tokens_; }
  double seconds_per_pair() const { return seconds_per_pair_; }
  double seconds_per_read() const { return seconds_per_read_; }
  double expert_bytes() const { return expert_bytes_; }

  // One replica of an expert chosen by `freq` assignments per token (0..1), split `replicas`
  // ways: expected token-expert pairs per step, chance it is active, and cost (see above).
  double ReplicaPairs(double freq, int32_t replicas) const;
  double ReplicaActiveProbability(double freq, int32_t replicas) const;
  double ReplicaCost(double freq, int32_t replicas) const;
  // "tokens" or "seconds (B=64, ...)" for reports.
  std::string Describe() const;

 private:
  bool tokens_mode_ = true;
  int64_t batch_tokens_ = 64;
  double seconds_per_pair_ = 1;  // tokens mode: one unit per pair
  double seconds_per_read_ = 0;
  double expert_bytes_ = 0;
};

}  // namespace sy
