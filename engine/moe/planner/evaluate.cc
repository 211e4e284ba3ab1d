#include "engine/moe/planner/evaluate.h"

#include <algorithm>
#include <cstdio>

namespace sy {

namespace {

StatusOr<PlacementEvaluation> EvaluateOne(const RoutingTrace& trace, const RoutingWindow& window,
                                          const NamedPlacement& named, const CostModel& cost_model,
                                          const PlanWeights& weights,
                                          const ExpertPlacement* reference) {
  const ExpertPlacement& placement = named.placement;
  Status fits = placement.CheckCompatible(trace.layers, trace.num_experts, placement.num_ranks());
  if (!fits.ok()) return Status::InvalidArgument(named.name + ": " + fits.message());
  SY_ASSIGN_OR_RETURN(
      PlanProblem problem,
      PlanProblem::Create(trace.layers, trace.num_experts, window, placement.num_ranks(),
                          placement.slots_per_rank(), cost_model, weights, reference));
  PlacementEvaluation out;
  out.placement = named.name;
  std::vector<LayerHosts> hosts;
  for (int32_t li = 0; li < problem.num_layers(); ++li)
    hosts.push_back(problem.HostsOf(placement, li));
  const double R = problem.num_ranks();
  for (int32_t li = 0; li < problem.num_layers(); ++li) {
    LayerEvaluation layer;
    layer.layer = trace.layers[li];
    for (const RankLoad& load : problem.RankLoads(li, hosts[li])) {
      layer.max_pairs = std::max(layer.max_pairs, load.pairs);
      layer.max_cost = std::max(layer.max_cost, load.cost);
      layer.max_active = std::max(layer.max_active, load.active_experts);
      layer.mean_pairs += load.pairs / R;
      layer.mean_cost += load.cost / R;
      layer.mean_active += load.active_experts / R;
    }
    layer.max_bytes = layer.max_active * cost_model.expert_bytes();
    layer.mean_bytes = layer.mean_active * cost_model.expert_bytes();
    if (li + 1 < problem.num_layers() && problem.pair_mass(li) > 0) {
      layer.crossing = problem.CrossingShare(li, hosts[li], hosts[li + 1]);
    }
    layer.moved = problem.Moves(li, hosts[li]);
    out.layers.push_back(layer);
  }
  out.objective = problem.Evaluate(hosts);
  return out;
}

}  // namespace

StatusOr<std::vector<PlacementEvaluation>> EvaluatePlacements(
    const RoutingTrace& trace, const std::vector<NamedPlacement>& placements,
    const CostModel& cost_model, const PlanWeights& weights, const ExpertPlacement* reference,
    bool per_window) {
  std::vector<PlacementEvaluation> out;
  std::vector<std::pair<std::string, RoutingWindow>> windows = {{"total", trace.Total()}};
  if (per_window && trace.windows.size() > 1) {
    for (size_t w = 0; w < trace.windows.size(); ++w) {
      windows.push_back({"window " + std::to_string(w), trace.windows[w]});
    }
  }
  for (const auto& [label, window] : windows) {
    for (const NamedPlacement& named : placements) {
      SY_ASSIGN_OR_RETURN(PlacementEvaluation one,
                          EvaluateOne(trace, window, named, cost_model, weights, reference));
      one.window = label;
      out.push_back(std::move(one));
    }
  }
  return out;
}

std::string EvaluationTable(const std::vector<PlacementEvaluation>& evaluations) {
  std::string text;
  char line[256];
  std::snprintf(line, sizeof(line), "%-24s %-10s %5s %9s %9s %9s %8s %10s %10s %6s\n", "placement",
                "window", "layer", "max_pairs", "max/mean", "cost_max", "cross", "max_active",
                "max_MB", "moved");
  text += line;
  for (const PlacementEvaluation& ev : evaluations) {
    for (const LayerEvaluation& l : ev.layers) {
      char crossing[16] = "-";
      if (l.crossing >= 0) std::snprintf(crossing, sizeof(crossing), "%.3f", l.crossing);
      std::snprintf(line, sizeof(line),
                    "%-24.24s %-10s %5d %9.2f %9.3f %9.3g %8s %10.2f %10.1f %6lld\n",
                    ev.placement.c_str(), ev.window.c_str(), l.layer, l.max_pairs,
                    l.mean_cost > 0 ? l.max_cost / l.mean_cost : 1.0, l.max_cost, crossing,
                    l.max_active, l.max_bytes / 1e6, static_cast<long long>(l.moved));
      text += line;
    }
    std::snprintf(line, sizeof(line),
                  "%-24.24s %-10s   all objective %.4f (balance %.4f, crossing %.4f, moved %lld)\n",
                  ev.placement.c_str(), ev.window.c_str(), ev.objective.total, ev.objective.balance,
                  ev.objective.crossing, static_cast<long long>(ev.objective.moved));
    text += line;
  }
  return text;
}

nlohmann::json EvaluationJson(const std::vector<PlacementEvaluation>& evaluations) {
  nlohmann::json out = nlohmann::json::array();
  for (const PlacementEvaluation& ev : evaluations) {
    nlohmann::json layers = nlohmann::json::array();
    for (const LayerEvaluation& l : ev.layers) {
      layers.push_back({{"layer", l.layer},
                        {"max_pairs", l.max_pairs},
                        {"mean_pairs", l.mean_pairs},
                        {"max_cost", l.max_cost},
                        {"mean_cost", l.mean_cost},
                        {"max_active_experts", l.max_active},
                        {"mean_active_experts", l.mean_active},
                        {"max_bytes", l.max_bytes},
                        {"mean_bytes", l.mean_bytes},
                        {"crossing_share", l.crossing >= 0 ? nlohmann::json(l.crossing) : nullptr},
                        {"moved", l.moved}});
    }
    out.push_back({{"placement", ev.placement},
                   {"window", ev.window},
                   {"layers", layers},
                   {"objective",
                    {{"total", ev.objective.total},
                     {"balance", ev.objective.balance},
                     {"crossing", ev.objective.crossing},
                     {"moved", ev.objective.moved}}}});
  }
  return out;
}

}  // namespace sy
