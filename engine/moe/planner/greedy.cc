#include "engine/moe/planner/greedy.h"

#include <algorithm>
#include <numeric>

namespace sy {

namespace {

// The state of one layer while it is packed.
struct Packing {
  int32_t num_ranks;
  int32_t slots_per_rank;
  LayerHosts hosts;
  std::vector<int32_t> used;  // slots used per rank
  std::vector<double> load;   // cost per rank

  bool Holds(int32_t e, int32_t r) const {
    return hosts[static_cast<size_t>(e) * num_ranks + r] != 0;
  }
  void Put(int32_t e, int32_t r, double cost) {
    hosts[static_cast<size_t>(e) * num_ranks + r] = 1;
    ++used[r];
    load[r] += cost;
  }
  void Take(int32_t e, int32_t r, double cost) {
    hosts[static_cast<size_t>(e) * num_ranks + r] = 0;
    --used[r];
    load[r] -= cost;
  }
};

// Every rank with a free slot already holds e. Some full rank `full` lacks e and holds an expert
// f that the rank `open` (free slot, holds e) lacks: it has S experts, `open` at most S - 2
// besides e. Moving f to `open` frees a slot for e on `full`.
int32_t MakeRoom(Packing& pack, int32_t e, const std::vector<double>& replica_cost,
                 int32_t num_experts) {
  int32_t open = -1;
  for (int32_t r = 0; r < pack.num_ranks && open < 0; ++r) {
    if (pack.used[r] < pack.slots_per_rank) open = r;
  }
  for (int32_t full = 0; full < pack.num_ranks; ++full) {
    if (open < 0 || pack.Holds(e, full)) continue;
    for (int32_t f = 0; f < num_experts; ++f) {
      if (!pack.Holds(f, full) || pack.Holds(f, open)) continue;
      pack.Take(f, full, replica_cost[f]);
      pack.Put(f, open, replica_cost[f]);
      return full;
    }
  }
  return -1;  // unreachable while replicas <= ranks and slots suffice
}

}  // namespace

LayerHosts GreedyLayerHosts(const PlanProblem& problem, int32_t li, const LayerHosts* keep) {
  const int32_t E = problem.num_experts(), R = problem.num_ranks();
  Packing pack{R, problem.slots_per_rank(), LayerHosts(static_cast<size_t>(E) * R, 0),
               std::vector<int32_t>(R, 0), std::vector<double>(R, 0.0)};
  std::vector<double> replica_cost(E);
  std::vector<int32_t> missing(E);
  for (int32_t e = 0; e < E; ++e) {
    replica_cost[e] = problem.ReplicaCost(li, e, problem.replicas(li, e));
    missing[e] = problem.replicas(li, e);
  }
  if (keep != nullptr) {
    for (int32_t e = 0; e < E; ++e) {
      for (int32_t r = 0; r < R && missing[e] > 0; ++r) {
        if ((*keep)[static_cast<size_t>(e) * R + r] && pack.used[r] < pack.slots_per_rank) {
          pack.Put(e, r, replica_cost[e]);
          --missing[e];
        }
      }
    }
  }
  // Heaviest replica first (lowest expert id on ties): the classic LPT order.
  std::vector<int32_t> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return replica_cost[a] > replica_cost[b]; });
  for (int32_t e : order) {
    for (; missing[e] > 0; --missing[e]) {
      int32_t best = -1;
      for (int32_t r = 0; r < R; ++r) {
        if (pack.used[r] >= pack.slots_per_rank || pack.Holds(e, r)) continue;
        if (best < 0 || pack.load[r] < pack.load[best]) best = r;
      }
      if (best < 0) best = MakeRoom(pack, e, replica_cost, E);
      if (best < 0) break;
      pack.Put(e, best, replica_cost[e]);
    }
  }
  return pack.hosts;
}

std::vector<LayerHosts> GreedyHosts(const PlanProblem& problem, bool keep_current) {
  std::vector<LayerHosts> hosts;
  for (int32_t li = 0; li < problem.num_layers(); ++li) {
    hosts.push_back(GreedyLayerHosts(problem, li, keep_current ? problem.current(li) : nullptr));
  }
  return hosts;
}

}  // namespace sy
