#include "engine/moe/planner/plan_problem.h"

#include <algorithm>
#include <string>
#include <utility>

namespace sy {

namespace {

Status CheckWindow(const std::vector<int32_t>& layers, int32_t num_experts,
                   const RoutingWindow& window) {
  const size_t num_layers = layers.size();
  if (num_layers == 0 || num_experts <= 0) {
    return Status::InvalidArgument("the routing window has no layers or no experts");
  }
  if (window.counts.size() != num_layers) {
    return Status::InvalidArgument("the routing window has " +
                                   std::to_string(window.counts.size()) + " layers of counts, " +
                                   std::to_string(num_layers) + " expected");
  }
  for (const std::vector<int64_t>& row : window.counts) {
    if (row.size() != static_cast<size_t>(num_experts)) {
      return Status::InvalidArgument("a counts row has " + std::to_string(row.size()) +
                                     " experts, " + std::to_string(num_experts) + " expected");
    }
  }
  if (!window.transitions.empty()) {
    if (window.transitions.size() != num_layers - 1) {
      return Status::InvalidArgument(
          "the routing window has " + std::to_string(window.transitions.size()) +
          " transition matrices, " + std::to_string(num_layers - 1) + " expected");
    }
    for (const std::vector<int64_t>& m : window.transitions) {
      if (m.size() != static_cast<size_t>(num_experts) * num_experts) {
        return Status::InvalidArgument("a transition matrix is not experts x experts");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<PlanProblem> PlanProblem::Create(std::vector<int32_t> layers, int32_t num_experts,
                                          const RoutingWindow& window, int32_t num_ranks,
                                          int32_t slots_per_rank, const CostModel& cost_model,
                                          const PlanWeights& weights,
                                          const ExpertPlacement* current) {
  SY_RETURN_IF_ERROR(CheckWindow(layers, num_experts, window));
  if (num_ranks <= 0 || slots_per_rank <= 0) {
    return Status::InvalidArgument("ranks and slots per rank must be positive");
  }
  if (static_cast<int64_t>(num_ranks) * slots_per_rank < num_experts) {
    return Status::InvalidArgument(std::to_string(num_ranks) + " ranks x " +
                                   std::to_string(slots_per_rank) + " slots cannot hold " +
                                   std::to_string(num_experts) + " experts");
  }
  if (!(weights.traffic >= 0) || !(weights.migration >= 0)) {
    return Status::InvalidArgument("objective weights must be >= 0");
  }
  if (current != nullptr)
    SY_RETURN_IF_ERROR(current->CheckCompatible(layers, num_experts, num_ranks));

  PlanProblem pp;
  pp.layers_ = std::move(layers);
  pp.num_experts_ = num_experts;
  pp.num_ranks_ = num_ranks;
  pp.slots_per_rank_ = slots_per_rank;
  pp.cost_model_ = cost_model;
  pp.weights_ = weights;
  const int32_t num_layers = pp.num_layers();
  const double tokens = static_cast<double>(std::max<int64_t>(window.tokens, 1));
  for (int32_t li = 0; li < num_layers; ++li) {
    std::vector<double> freq(num_experts);
    for (int32_t e = 0; e < num_experts; ++e) {
      freq[e] = std::min(1.0, static_cast<double>(window.counts[li][e]) / tokens);
    }
    pp.freq_.push_back(std::move(freq));
    pp.replicas_.push_back(
        EplbReplicaCounts(num_experts, num_ranks, slots_per_rank,
                          [&](int32_t e, int32_t n) { return pp.ReplicaCost(li, e, n); }));
    double ideal = 0;
    for (int32_t e = 0; e < num_experts; ++e) ideal += pp.ReplicaCost(li, e, 1);
    pp.ideal_.push_back(ideal / num_ranks);
  }
  if (!window.transitions.empty()) {
    for (const std::vector<int64_t>& m : window.transitions) {
      std::vector<double> t(m.begin(), m.end());
      double mass = 0;
      for (double v : t) mass += v;
      pp.transitions_.push_back(std::move(t));
      pp.pair_mass_.push_back(mass);
      if (mass > 0) ++pp.weighted_pairs_;
    }
  }
  if (current != nullptr) {
    for (int32_t li = 0; li < num_layers; ++li) pp.current_.push_back(pp.HostsOf(*current, li));
  }
  return pp;
}

int32_t PlanProblem::CountReplicas(const LayerHosts& hosts, int32_t e) const {
  int32_t n = 0;
  for (int32_t r = 0; r < num_ranks_; ++r) n += hosts[static_cast<size_t>(e) * num_ranks_ + r];
  return n;
}

double PlanProblem::ReplicaCost(int32_t li, int32_t e, int32_t replicas) const {
  return cost_model_.ReplicaCost(freq_[li][e], replicas);
}

std::vector<RankLoad> PlanProblem::RankLoads(int32_t li, const LayerHosts& hosts) const {
  std::vector<RankLoad> loads(num_ranks_);
  for (int32_t e = 0; e < num_experts_; ++e) {
    const int32_t n = CountReplicas(hosts, e);
    if (n == 0) continue;
    const double pairs = cost_model_.ReplicaPairs(freq_[li][e], n);
    const double active = cost_model_.ReplicaActiveProbability(freq_[li][e], n);
    const double cost = ReplicaCost(li, e, n);
    for (int32_t r = 0; r < num_ranks_; ++r) {
      if (!hosts[static_cast<size_t>(e) * num_ranks_ + r]) continue;
      loads[r].pairs += pairs;
      loads[r].active_experts += active;
      loads[r].cost += cost;
    }
  }
  return loads;
}

double PlanProblem::Balance(int32_t li, const LayerHosts& hosts) const {
  if (!(ideal_[li] > 0)) return 1.0;
  double max_cost = 0;
  for (const RankLoad& load : RankLoads(li, hosts)) max_cost = std::max(max_cost, load.cost);
  return max_cost / ideal_[li];
}

double PlanProblem::CrossingShare(int32_t p, const LayerHosts& first,
                                  const LayerHosts& second) const {
  if (pair_mass(p) <= 0) return 0;
  const int32_t E = num_experts_, R = num_ranks_;
  std::vector<int32_t> n_first(E), n_second(E);
  for (int32_t e = 0; e < E; ++e) {
    n_first[e] = CountReplicas(first, e);
    n_second[e] = CountReplicas(second, e);
  }
  double same = 0;
  for (int32_t i = 0; i < E; ++i) {
    if (n_first[i] == 0) continue;
    for (int32_t j = 0; j < E; ++j) {
      const double t = transition(p, i, j);
      if (t == 0 || n_second[j] == 0) continue;
      int32_t shared = 0;
      for (int32_t r = 0; r < R; ++r) {
        shared += first[static_cast<size_t>(i) * R + r] & second[static_cast<size_t>(j) * R + r];
      }
      same += t * shared / (static_cast<double>(n_first[i]) * n_second[j]);
    }
  }
  return 1.0 - same / pair_mass(p);
}

int64_t PlanProblem::Moves(int32_t li, const LayerHosts& hosts) const {
  if (current_.empty()) return 0;
  int64_t moves = 0;
  for (size_t k = 0; k < hosts.size(); ++k) moves += hosts[k] && !current_[li][k];
  return moves;
}

ObjectiveTerms PlanProblem::Evaluate(const std::vector<LayerHosts>& hosts) const {
  ObjectiveTerms terms;
  for (int32_t li = 0; li < num_layers(); ++li) {
    terms.balance += Balance(li, hosts[li]) / num_layers();
    terms.moved += Moves(li, hosts[li]);
  }
  for (int32_t p = 0; p < num_pairs(); ++p) {
    if (pair_mass(p) > 0) {
      terms.crossing += CrossingShare(p, hosts[p], hosts[p + 1]) / weighted_pairs_;
    }
  }
  terms.total = terms.balance + weights_.traffic * terms.crossing +
                weights_.migration * static_cast<double>(terms.moved) / total_slots();
  return terms;
}

LayerHosts PlanProblem::HostsOf(const ExpertPlacement& placement, int32_t li) const {
  LayerHosts hosts(static_cast<size_t>(num_experts_) * num_ranks_, 0);
  for (int32_t r = 0; r < placement.num_ranks(); ++r) {
    for (int32_t s = 0; s < placement.slots_per_rank(); ++s) {
      const int32_t e = placement.expert_at(li, r, s);
      if (e >= 0) hosts[static_cast<size_t>(e) * num_ranks_ + r] = 1;
    }
  }
  return hosts;
}

ExpertPlacement PlanProblem::ToPlacement(const std::vector<LayerHosts>& hosts) const {
  ExpertPlacement placement(layers_, num_experts_, num_ranks_, slots_per_rank_);
  for (int32_t li = 0; li < num_layers(); ++li) {
    for (int32_t r = 0; r < num_ranks_; ++r) {
      int32_t slot = 0;
      for (int32_t e = 0; e < num_experts_; ++e) {
        if (hosts[li][static_cast<size_t>(e) * num_ranks_ + r]) {
          placement.set_expert(li, r, slot++, e);
        }
      }
    }
  }
  return placement;
}

}  // namespace sy
