#include "engine/moe/planner/cost_model.h"

#include <cmath>
#include <cstdio>

namespace sy {

CostModel::CostModel(int64_t batch_tokens) : batch_tokens_(batch_tokens) {}

StatusOr<CostModel> CostModel::FromModel(const ExpertShape& shape, const std::string& dtype,
                                         const MachineNumbers& machine, int64_t batch_tokens) {
  double bytes_per_weight = 0;
  if (dtype == "bf16" || dtype == "f16") {
    bytes_per_weight = 2;
  } else if (dtype == "f32") {
    bytes_per_weight = 4;
  } else if (dtype == "fp8") {
    bytes_per_weight = 1;
  } else {
    return Status::InvalidArgument("unknown dtype '" + dtype + "' (bf16, f16, f32 or fp8)");
  }
  if (shape.num_experts <= 0 || shape.moe_intermediate_size <= 0 || shape.hidden_size <= 0) {
    return Status::InvalidArgument("the model has no routed experts (num_experts " +
                                   std::to_string(shape.num_experts) + ", moe_intermediate_size " +
                                   std::to_string(shape.moe_intermediate_size) + ")");
  }
  if (!(machine.bandwidth_gbs > 0) || !(machine.tflops > 0)) {
    return Status::InvalidArgument("--bandwidth-gbs and --tflops must be positive");
  }
  if (batch_tokens <= 0) return Status::InvalidArgument("--batch-tokens must be positive");
  // gate, up and down projections: three hidden x moe_inter matrices, 2 flops per weight.
  const double weights = 3.0 * static_cast<double>(shape.hidden_size) *
                         static_cast<double>(shape.moe_intermediate_size);
  CostModel model(batch_tokens);
  model.tokens_mode_ = false;
  model.seconds_per_pair_ = 2.0 * weights / (machine.tflops * 1e12);
  model.expert_bytes_ = weights * bytes_per_weight;
  model.seconds_per_read_ = model.expert_bytes_ / (machine.bandwidth_gbs * 1e9);
  return model;
}

double CostModel::ReplicaPairs(double freq, int32_t replicas) const {
  return static_cast<double>(batch_tokens_) * freq / replicas;
}

double CostModel::ReplicaActiveProbability(double freq, int32_t replicas) const {
  const double p = std::fmin(1.0, freq / replicas);
  return 1.0 - std::pow(1.0 - p, static_cast<double>(batch_tokens_));
}

double CostModel::ReplicaCost(double freq, int32_t replicas) const {
  double cost = ReplicaPairs(freq, replicas) * seconds_per_pair_;
  if (seconds_per_read_ > 0) cost += ReplicaActiveProbability(freq, replicas) * seconds_per_read_;
  return cost;
}

std::string CostModel::Describe() const {
  if (tokens_mode_) return "tokens (token-expert pairs per rank)";
  char text[160];
  std::snprintf(text, sizeof(text),
                "seconds (B=%lld, t_token=%.3g s, t_read=%.3g s, %.3g MB/expert)",
                static_cast<long long>(batch_tokens_), seconds_per_pair_, seconds_per_read_,
                expert_bytes_ / 1e6);
  return text;
}

}  // namespace sy
