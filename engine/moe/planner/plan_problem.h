// PlanProblem: one routing window prepared for placement planning: expert frequencies, the
// replica count of every expert (the EPLB rule), the cost model, the transition matrices and the
// optional current placement, plus the documented objective (docs/planner.md) evaluated on any
// set of per-layer host matrices. Immutable after Create; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "engine/core/status.h"
#include "engine/moe/placement.h"
#include "engine/moe/planner/cost_model.h"
#include "engine/moe/routing_trace.h"

namespace sy {

// hosts[e * num_ranks + r] is 1 when rank r holds a replica of expert e in one layer.
using LayerHosts = std::vector<uint8_t>;

struct PlanWeights {
  double traffic = 0.5;    // per unit of crossing share (0..1)
  double migration = 0.1;  // per unit of moved share (moved slots / all slots)
};

// What one rank carries in one layer in one decode step of batch_tokens tokens (expected).
struct RankLoad {
  double pairs = 0;           // token-expert pairs
  double cost = 0;            // cost-model units (pairs in tokens mode, else seconds)
  double active_experts = 0;  // distinct replicas it activates
};

struct ObjectiveTerms {
  double balance = 0;   // mean over layers of max rank cost / ideal rank cost
  double crossing = 0;  // mean over layer pairs with transitions of the crossing share
  int64_t moved = 0;    // (layer, rank, expert) additions vs the current placement
  double total = 0;     // balance + w_traffic * crossing + w_migration * moved / all slots
};

class PlanProblem {
 public:
  // InvalidArgument when shapes disagree, ranks * slots < experts, or `current` does not fit.
  static StatusOr<PlanProblem> Create(std::vector<int32_t> layers, int32_t num_experts,
                                      const RoutingWindow& window, int32_t num_ranks,
                                      int32_t slots_per_rank, const CostModel& cost_model,
                                      const PlanWeights& weights, const ExpertPlacement* current);

  const std::vector<int32_t>& layers() const { return layers_; }
  int32_t num_layers() const { return static_cast<int32_t>(layers_.size()); }
  int32_t num_experts() const { return num_experts_; }
  int32_t num_ranks() const { return num_ranks_; }
  int32_t slots_per_rank() const { return slots_per_rank_; }
  const CostModel& cost_model() const { return cost_model_; }
  const PlanWeights& weights() const { return weights_; }

  // Assignments per token of expert e in layer li (0..1).
  double frequency(int32_t li, int32_t e) const { return freq_[li][e]; }
  // Replicas the planner gives expert e in layer li (EPLB rule; >= 1, <= num_ranks).
  int32_t replicas(int32_t li, int32_t e) const { return replicas_[li][e]; }
  // Mean rank cost of layer li with one replica per expert: the balance term's yardstick.
  double ideal_cost(int32_t li) const { return ideal_[li]; }

  // Layer pair p = (li, li + 1). Transition mass and count T[p][i][j]; 0 without transitions.
  int32_t num_pairs() const { return num_layers() > 0 ? num_layers() - 1 : 0; }
  double pair_mass(int32_t p) const { return pair_mass_.empty() ? 0 : pair_mass_[p]; }
  double transition(int32_t p, int32_t i, int32_t j) const {
    return transitions_[p][static_cast<size_t>(i) * num_experts_ + j];
  }
  // Pairs with transition mass > 0 (those the crossing term averages over).
  int32_t num_weighted_pairs() const { return weighted_pairs_; }

  const LayerHosts* current(int32_t li) const { return current_.empty() ? nullptr : &current_[li]; }
  int64_t total_slots() const {
    return static_cast<int64_t>(num_layers()) * num_ranks_ * slots_per_rank_;
  }

  // Replica count of e in `hosts`.
  int32_t CountReplicas(const LayerHosts& hosts, int32_t e) const;
  // Cost of one replica of e in layer li when e has `replicas` replicas.
  double ReplicaCost(int32_t li, int32_t e, int32_t replicas) const;
  std::vector<RankLoad> RankLoads(int32_t li, const LayerHosts& hosts) const;
  // max rank cost / ideal cost (1 when the layer saw no tokens).
  double Balance(int32_t li, const LayerHosts& hosts) const;
  // Share of pair p's transition mass served on different ranks (tokens split evenly among
  // replicas); 0 when the pair has no transitions.
  double CrossingShare(int32_t p, const LayerHosts& first, const LayerHosts& second) const;
  int64_t Moves(int32_t li, const LayerHosts& hosts) const;
  ObjectiveTerms Evaluate(const std::vector<LayerHosts>& hosts) const;

  // Hosts of layer li of a placement shaped like this problem, and back.
  LayerHosts HostsOf(const ExpertPlacement& placement, int32_t li) const;
  ExpertPlacement ToPlacement(const std::vector<LayerHosts>& hosts) const;

 private:
  PlanProblem() = default;

  std::vector<int32_t> layers_;
  int32_t num_experts_ = 0;
  int32_t num_ranks_ = 0;
  int32_t slots_per_rank_ = 0;
  CostModel cost_model_;
  PlanWeights weights_;
  std::vector<std::vector<double>> freq_;         // [li][e]
  std::vector<std::vector<int32_t>> replicas_;    // [li][e]
  std::vector<double> ideal_;                     // [li]
  std::vector<std::vector<double>> transitions_;  // [p][i * E + j]; empty without transitions
  std::vector<double> pair_mass_;                 // [p]
  int32_t weighted_pairs_ = 0;
  std::vector<LayerHosts> current_;  // empty without a current placement
};

// EPLB rule: every expert starts with one replica; each spare slot (ranks * slots - experts)
// goes to the expert with the largest per-replica cost that has fewer than num_ranks replicas
// (lowest id on ties). `cost(e, n)` is the cost of one of n replicas of e.
template <typename CostFn>
std::vector<int32_t> EplbReplicaCounts(int32_t num_experts, int32_t num_ranks,
                                       int32_t slots_per_rank, CostFn cost) {
  std::vector<int32_t> counts(num_experts, 1);
  int64_t spare = static_cast<int64_t>(num_ranks) * slots_per_rank - num_experts;
  for (; spare > 0; --spare) {
    int32_t best = -1;
    double best_cost = -1;
    for (int32_t e = 0; e < num_experts; ++e) {
      if (counts[e] >= num_ranks) continue;
      const double c = cost(e, counts[e]);
      if (c > best_cost) {
        best = e;
        best_cost = c;
      }
    }
    if (best < 0) break;
    ++counts[best];
  }
  return counts;
}

}  // namespace sy
