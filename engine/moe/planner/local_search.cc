#include "engine/moe/planner/local_search.h"

#include <algorithm>
#include <vector>

namespace sy {

namespace {

// The best single move or swap off the most loaded rank `top`: the new max(load[top],
// load[other]) and what to do.
struct Step {
  double new_pair_max = 0;
  int32_t expert = -1;  // leaves `top`
  int32_t other = -1;   // the rank it goes to
  int32_t back = -1;    // expert that comes back to `top` (swap), -1 for a move
};

// on_rank[r]: the experts rank r holds.
Step BestStep(const PlanProblem& problem, const LayerHosts& hosts,
              const std::vector<double>& replica_cost, const std::vector<double>& load,
              const std::vector<std::vector<int32_t>>& on_rank, int32_t top) {
  const int32_t R = problem.num_ranks();
  auto holds = [&](int32_t e, int32_t r) { return hosts[static_cast<size_t>(e) * R + r] != 0; };
  Step best;
  best.new_pair_max = load[top];
  for (int32_t e : on_rank[top]) {
    for (int32_t r = 0; r < R; ++r) {
      if (r == top || holds(e, r)) continue;
      if (static_cast<int32_t>(on_rank[r].size()) < problem.slots_per_rank()) {  // move e to r
        const double m = std::max(load[top] - replica_cost[e], load[r] + replica_cost[e]);
        if (m < best.new_pair_max) best = {m, e, r, -1};
      }
      for (int32_t f : on_rank[r]) {  // swap e with f
        if (holds(f, top) || replica_cost[f] >= replica_cost[e]) continue;
        const double d = replica_cost[e] - replica_cost[f];
        const double m = std::max(load[top] - d, load[r] + d);
        if (m < best.new_pair_max) best = {m, e, r, f};
      }
    }
  }
  return best;
}

}  // namespace

bool ImproveBalance(const PlanProblem& problem, int32_t li, LayerHosts& hosts) {
  const int32_t E = problem.num_experts(), R = problem.num_ranks();
  std::vector<double> replica_cost(E);
  for (int32_t e = 0; e < E; ++e) {
    replica_cost[e] = problem.ReplicaCost(li, e, problem.replicas(li, e));
  }
  std::vector<double> load(R, 0.0);
  std::vector<std::vector<int32_t>> on_rank(R);
  auto set = [&](int32_t e, int32_t r, uint8_t v) {
    hosts[static_cast<size_t>(e) * R + r] = v;
    std::vector<int32_t>& list = on_rank[r];
    if (v) {
      list.push_back(e);
      load[r] += replica_cost[e];
    } else {
      list.erase(std::find(list.begin(), list.end(), e));
      load[r] -= replica_cost[e];
    }
  };
  for (int32_t e = 0; e < E; ++e) {
    for (int32_t r = 0; r < R; ++r) {
      if (hosts[static_cast<size_t>(e) * R + r]) set(e, r, 1);
    }
  }
  const double start_max = *std::max_element(load.begin(), load.end());
  const double epsilon = 1e-12 * std::max(1.0, start_max);
  // Each step lowers the top rank strictly; the bound only guards against float cycling.
  for (int32_t steps = 0; steps < 16 * E; ++steps) {
    const int32_t top =
        static_cast<int32_t>(std::max_element(load.begin(), load.end()) - load.begin());
    const Step s = BestStep(problem, hosts, replica_cost, load, on_rank, top);
    if (s.expert < 0 || s.new_pair_max > load[top] - epsilon) break;
    set(s.expert, top, 0);
    set(s.expert, s.other, 1);
    if (s.back >= 0) {
      set(s.back, s.other, 0);
      set(s.back, top, 1);
    }
  }
  return *std::max_element(load.begin(), load.end()) < start_max - epsilon;
}

}  // namespace sy
