// RoutingTrace: measured (or synthetic) routing statistics of an MoE model, the planner's input.
// A trace is a sequence of windows (consecutive stretches of traffic); each window holds, per
// MoE layer, token-expert assignment counts and, per consecutive pair of MoE layers, the
// expert-to-expert transition counts (tokens routed to i at one layer and to j at the next).
// The server writes it (--record-routing FILE), the synthetic generator writes it, and the real
// OLMoE and Mixtral statistics in tests/data/traces load into it. A value type; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace sy {

struct RoutingWindow {
  int64_t tokens = 0;  // tokens routed in this window (each makes top_k assignments per layer)
  // counts[li][e]: assignments of layer li to expert e. Sum over e = tokens * top_k.
  std::vector<std::vector<int64_t>> counts;
  // transitions[li][i * E + j], li in [0, num_layers - 1): tokens with expert i among their
  // choices at layer li and expert j among their choices at layer li + 1. Empty when unknown.
  std::vector<std::vector<int64_t>> transitions;
};

struct RoutingTrace {
  std::vector<int32_t> layers;  // model layer index of each MoE layer in the trace, ascending
  int32_t num_experts = 0;
  int32_t top_k = 0;
  std::string source;  // where it came from (free text)
  std::vector<RoutingWindow> windows;

  int32_t num_layers() const { return static_cast<int32_t>(layers.size()); }
  bool has_transitions() const;
  // The sum of all windows (or of windows [first, first + n)).
  RoutingWindow Total() const;
  RoutingWindow Sum(size_t first, size_t n) const;
  // Shapes agree, counts non-negative. InvalidArgument saying what is wrong otherwise.
  Status Validate() const;

  // JSON file, format "switchyard-routing-v1" (docs/routing-stats.md).
  static StatusOr<RoutingTrace> FromJson(const std::string& text);
  std::string ToJson() const;
  // Loads our format, or the tests/data/traces/olmoe-mixtral-routing.json layout when `dataset`
  // names one of its entries (olmoe_c4, olmoe_github, mixtral_c4).
  static StatusOr<RoutingTrace> Load(const std::string& path, const std::string& dataset = "");
  Status Save(const std::string& path) const;
};

}  // namespace sy
