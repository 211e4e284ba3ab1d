// Replays a routing trace against placements: per layer the max and mean rank load (token-expert
// pairs and cost-model units), the share of layer-to-layer traffic that crosses ranks, the
// expected expert-weight bytes each rank reads per decode step, and experts moved against a
// reference placement; for each window separately and for the whole trace. Stateless functions.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/status.h"
#include "engine/moe/placement.h"
#include "engine/moe/planner/cost_model.h"
#include "engine/moe/planner/plan_problem.h"
#include "engine/moe/routing_trace.h"

namespace sy {

struct LayerEvaluation {
  int32_t layer = 0;                       // model layer index
  double max_pairs = 0, mean_pairs = 0;    // token-expert pairs per rank per step
  double max_cost = 0, mean_cost = 0;      // cost-model units per rank per step
  double max_active = 0, mean_active = 0;  // expected distinct experts activated per rank
  double max_bytes = 0, mean_bytes = 0;    // expected expert bytes read per rank (0: no model)
  double crossing = -1;  // share of traffic to the next layer that crosses ranks; -1: no data
  int64_t moved = 0;     // (rank, expert) additions vs the reference
};

struct PlacementEvaluation {
  std::string placement;  // its name (e.g. the file)
  std::string window;     // "total" or "window N"
  std::vector<LayerEvaluation> layers;
  ObjectiveTerms objective;  // the planner's objective (weights as given)
};

struct NamedPlacement {
  std::string name;
  ExpertPlacement placement;
};

// One entry per placement for the total, then (when per_window and the trace has more than one
// window) per placement per window. InvalidArgument when a placement does not fit the trace.
StatusOr<std::vector<PlacementEvaluation>> EvaluatePlacements(
    const RoutingTrace& trace, const std::vector<NamedPlacement>& placements,
    const CostModel& cost_model, const PlanWeights& weights, const ExpertPlacement* reference,
    bool per_window);

// A fixed-width text table, one row per (placement, window, layer).
std::string EvaluationTable(const std::vector<PlacementEvaluation>& evaluations);
nlohmann::json EvaluationJson(const std::vector<PlacementEvaluation>& evaluations);

}  // namespace sy
