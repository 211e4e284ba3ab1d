// Synthetic routing traces with a known shape, for planner tests and benchmarks: Zipf-skewed
// expert popularity per layer (a random expert order per layer), tunable inter-layer affinity
// (a token tends to follow its expert's preferred successor at the next layer) and drift
// (popularity changes from window to window). Deterministic from the seed.
#pragma once

#include <cstdint>

#include "engine/moe/routing_trace.h"

namespace sy {

struct SyntheticTraceOptions {
  int32_t num_layers = 16;  // MoE layers 0..num_layers-1
  int32_t num_experts = 64;
  int32_t top_k = 8;
  double zipf_exponent = 1.0;  // popularity of the r-th most popular expert ~ 1 / r^s; 0: uniform
  double affinity = 0.5;       // chance a choice at layer l+1 follows a choice at layer l
  double drift = 0.0;          // share of each layer's popularity order reshuffled per window
  int32_t num_windows = 1;
  int64_t tokens_per_window = 4096;
  uint64_t seed = 1;
};

// InvalidArgument for impossible options (top_k > num_experts, negative sizes, ...).
StatusOr<RoutingTrace> GenerateSyntheticTrace(const SyntheticTraceOptions& options);

}  // namespace sy
