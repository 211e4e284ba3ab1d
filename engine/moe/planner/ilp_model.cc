#include "engine/moe/planner/ilp_model.h"

#include <algorithm>
#include <numeric>

namespace sy {

namespace {

// Column layout of one range model.
struct RangeModel {
  MipModel mip;
  double offset = 0;           // constant part of the range objective
  std::vector<int32_t> x_col;  // [(li - first) * E * R + e * R + r]
  std::vector<int32_t> z_col;  // [li - first]; -1 for a layer without tokens
  struct PairBlock {           // y columns of one inside pair: R per (i, j) with T > 0
    int32_t p = 0;
    std::vector<std::pair<int32_t, int32_t>> experts;
    int32_t first_col = 0;
  };
  std::vector<PairBlock> pairs;
};

bool PairWeighted(const PlanProblem& problem, int32_t p) {
  return p >= 0 && p < problem.num_pairs() && problem.pair_mass(p) > 0 &&
         problem.weights().traffic > 0;
}

// Coefficient scale of a pair's crossing share in the objective.
double PairScale(const PlanProblem& problem, int32_t p) {
  return problem.weights().traffic / problem.num_weighted_pairs() / problem.pair_mass(p);
}

// Ranks are interchangeable in the range model when nothing outside it (fixed neighbour layers,
// the current placement) tells them apart.
bool RanksSymmetric(const PlanProblem& problem, int32_t first, int32_t count) {
  const bool migration = problem.current(0) != nullptr && problem.weights().migration > 0;
  return !migration && !PairWeighted(problem, first - 1) &&
         !PairWeighted(problem, first + count - 1);
}

// Experts of layer li by replica cost, heaviest first.
std::vector<int32_t> HeaviestFirst(const PlanProblem& problem, int32_t li) {
  std::vector<int32_t> order(problem.num_experts());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return problem.ReplicaCost(li, a, problem.replicas(li, a)) >
           problem.ReplicaCost(li, b, problem.replicas(li, b));
  });
  return order;
}

// Renames ranks in every layer of the range so that the heaviest expert of the first layer is on
// ranks 0..n-1 and, within {holds it} and {does not}, the second heaviest on the lowest ranks.
void CanonicalRankOrder(const PlanProblem& problem, int32_t first, int32_t count,
                        const std::vector<int32_t>& heavy, std::vector<LayerHosts>& hosts) {
  const int32_t R = problem.num_ranks(), E = problem.num_experts();
  const LayerHosts& h = hosts[first];
  auto holds = [&](int32_t e, int32_t r) { return h[static_cast<size_t>(e) * R + r] != 0; };
  std::vector<int32_t> order(R);  // order[new rank] = old rank
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    if (holds(heavy[0], a) != holds(heavy[0], b)) return holds(heavy[0], a);
    return heavy.size() > 1 && holds(heavy[1], a) && !holds(heavy[1], b);
  });
  for (int32_t li = first; li < first + count; ++li) {
    LayerHosts renamed(hosts[li].size());
    for (int32_t e = 0; e < E; ++e) {
      for (int32_t r = 0; r < R; ++r) {
        renamed[static_cast<size_t>(e) * R + r] = hosts[li][static_cast<size_t>(e) * R + order[r]];
      }
    }
    hosts[li] = std::move(renamed);
  }
}

void AddSymmetryBreaking(const PlanProblem& problem, int32_t first,
                         const std::vector<int32_t>& heavy, RangeModel& m) {
  const int32_t R = problem.num_ranks();
  const int32_t n0 = problem.replicas(first, heavy[0]);
  for (int32_t r = 0; r < n0; ++r)
    m.mip.col_lower[m.x_col[static_cast<size_t>(heavy[0]) * R + r]] = 1;
  if (heavy.size() < 2) return;
  for (int32_t r = 0; r + 1 < R; ++r) {
    if (r + 1 == n0) continue;  // the boundary between the two groups of ranks
    const size_t base = static_cast<size_t>(heavy[1]) * R;
    m.mip.AddRow(0, 1e30, {{m.x_col[base + r], 1.0}, {m.x_col[base + r + 1], -1.0}});
  }
}

void AddLayer(const PlanProblem& problem, int32_t li, RangeModel& m) {
  const int32_t E = problem.num_experts(), R = problem.num_ranks();
  const LayerHosts* current = problem.current(li);
  const double slot_weight =
      current != nullptr ? problem.weights().migration / problem.total_slots() : 0.0;
  const size_t base = m.x_col.size();
  for (int32_t e = 0; e < E; ++e) {
    for (int32_t r = 0; r < R; ++r) {
      const bool held = current != nullptr && (*current)[static_cast<size_t>(e) * R + r];
      m.x_col.push_back(m.mip.AddColumn(0, 1, held ? 0.0 : slot_weight, true));  // a move
    }
  }
  auto x = [&](int32_t e, int32_t r) { return m.x_col[base + static_cast<size_t>(e) * R + r]; };
  for (int32_t e = 0; e < E; ++e) {  // every replica on exactly one rank, one per rank
    std::vector<std::pair<int32_t, double>> row;
    for (int32_t r = 0; r < R; ++r) row.push_back({x(e, r), 1.0});
    m.mip.AddRow(problem.replicas(li, e), problem.replicas(li, e), row);
  }
  for (int32_t r = 0; r < R; ++r) {  // slots per rank
    std::vector<std::pair<int32_t, double>> row;
    for (int32_t e = 0; e < E; ++e) row.push_back({x(e, r), 1.0});
    m.mip.AddRow(0, problem.slots_per_rank(), row);
  }
  const double ideal = problem.ideal_cost(li);
  if (!(ideal > 0)) {
    m.z_col.push_back(-1);
    m.offset += 1.0 / problem.num_layers();
    return;
  }
  std::vector<double> load(E);
  double heaviest = 0;
  for (int32_t e = 0; e < E; ++e) {
    load[e] = problem.ReplicaCost(li, e, problem.replicas(li, e)) / ideal;
    heaviest = std::max(heaviest, load[e]);
  }
  const int32_t z = m.mip.AddColumn(heaviest, 1e30, 1.0 / problem.num_layers(), false);
  m.z_col.push_back(z);
  for (int32_t r = 0; r < R; ++r) {  // z >= normalised load of every rank
    std::vector<std::pair<int32_t, double>> row;
    for (int32_t e = 0; e < E; ++e) row.push_back({x(e, r), load[e]});
    row.push_back({z, -1.0});
    m.mip.AddRow(-1e30, 0, row);
  }
}

// Pair p with one side fixed: -scale * T_ij / (n_i n_j) on x of the free side per shared rank.
void AddFixedPair(const PlanProblem& problem, int32_t p, bool free_is_second, int32_t first,
                  const std::vector<LayerHosts>& hosts, RangeModel& m) {
  const int32_t E = problem.num_experts(), R = problem.num_ranks();
  const LayerHosts& fixed = hosts[free_is_second ? p : p + 1];
  const int32_t free_li = free_is_second ? p + 1 : p;
  const double scale = PairScale(problem, p);
  m.offset += problem.weights().traffic / problem.num_weighted_pairs();
  std::vector<int32_t> n_fixed(E);
  for (int32_t e = 0; e < E; ++e) n_fixed[e] = problem.CountReplicas(fixed, e);
  const size_t base = static_cast<size_t>(free_li - first) * E * R;
  for (int32_t a = 0; a < E; ++a) {    // a: expert of the free layer
    for (int32_t b = 0; b < E; ++b) {  // b: expert of the fixed layer
      const double t = free_is_second ? problem.transition(p, b, a) : problem.transition(p, a, b);
      if (t == 0 || n_fixed[b] == 0) continue;
      const double w = scale * t / (static_cast<double>(n_fixed[b]) * problem.replicas(free_li, a));
      for (int32_t r = 0; r < R; ++r) {
        if (fixed[static_cast<size_t>(b) * R + r]) {
          m.mip.objective[m.x_col[base + static_cast<size_t>(a) * R + r]] -= w;
        }
      }
    }
  }
}

void AddInsidePair(const PlanProblem& problem, int32_t p, int32_t first, RangeModel& m) {
  const int32_t E = problem.num_experts(), R = problem.num_ranks();
  const double scale = PairScale(problem, p);
  m.offset += problem.weights().traffic / problem.num_weighted_pairs();
  RangeModel::PairBlock block;
  block.p = p;
  block.first_col = m.mip.num_cols();
  const size_t base_i = static_cast<size_t>(p - first) * E * R;
  const size_t base_j = base_i + static_cast<size_t>(E) * R;
  for (int32_t i = 0; i < E; ++i) {
    for (int32_t j = 0; j < E; ++j) {
      const double t = problem.transition(p, i, j);
      if (t == 0) continue;
      block.experts.push_back({i, j});
      const double w =
          scale * t / (static_cast<double>(problem.replicas(p, i)) * problem.replicas(p + 1, j));
      for (int32_t r = 0; r < R; ++r) {
        const int32_t y = m.mip.AddColumn(0, 1, -w, false);
        m.mip.AddRow(-1e30, 0,
                     {{y, 1.0}, {m.x_col[base_i + static_cast<size_t>(i) * R + r], -1.0}});
        m.mip.AddRow(-1e30, 0,
                     {{y, 1.0}, {m.x_col[base_j + static_cast<size_t>(j) * R + r], -1.0}});
      }
    }
  }
  m.pairs.push_back(std::move(block));
}

RangeModel BuildModel(const PlanProblem& problem, int32_t first, int32_t count,
                      const std::vector<LayerHosts>& hosts) {
  RangeModel m;
  for (int32_t li = first; li < first + count; ++li) AddLayer(problem, li, m);
  if (PairWeighted(problem, first - 1)) AddFixedPair(problem, first - 1, true, first, hosts, m);
  if (PairWeighted(problem, first + count - 1)) {
    AddFixedPair(problem, first + count - 1, false, first, hosts, m);
  }
  for (int32_t p = first; p + 1 < first + count; ++p) {
    if (PairWeighted(problem, p)) AddInsidePair(problem, p, first, m);
  }
  return m;
}

// Column values for `hosts` (z and y at their tightest).
std::vector<double> StartValues(const PlanProblem& problem, int32_t first, int32_t count,
                                const std::vector<LayerHosts>& hosts, const RangeModel& m) {
  const int32_t E = problem.num_experts(), R = problem.num_ranks();
  std::vector<double> v(m.mip.num_cols(), 0.0);
  for (int32_t k = 0; k < count; ++k) {
    const LayerHosts& h = hosts[first + k];
    for (size_t c = 0; c < h.size(); ++c) v[m.x_col[static_cast<size_t>(k) * E * R + c]] = h[c];
    if (m.z_col[k] >= 0) {
      v[m.z_col[k]] = std::max(m.mip.col_lower[m.z_col[k]], problem.Balance(first + k, h));
    }
  }
  for (const RangeModel::PairBlock& block : m.pairs) {
    const LayerHosts &a = hosts[block.p], &b = hosts[block.p + 1];
    for (size_t k = 0; k < block.experts.size(); ++k) {
      const auto [i, j] = block.experts[k];
      for (int32_t r = 0; r < R; ++r) {
        v[block.first_col + k * R + r] =
            a[static_cast<size_t>(i) * R + r] & b[static_cast<size_t>(j) * R + r];
      }
    }
  }
  return v;
}

// The solution keeps every replica count and slot limit (guards against solver tolerances).
bool FollowsProblem(const PlanProblem& problem, int32_t li, const LayerHosts& hosts) {
  const int32_t E = problem.num_experts(), R = problem.num_ranks();
  std::vector<int32_t> used(R, 0);
  for (int32_t e = 0; e < E; ++e) {
    if (problem.CountReplicas(hosts, e) != problem.replicas(li, e)) return false;
    for (int32_t r = 0; r < R; ++r) used[r] += hosts[static_cast<size_t>(e) * R + r];
  }
  return *std::max_element(used.begin(), used.end()) <= problem.slots_per_rank();
}

// A bound that needs no solver: each layer's max load is at least its heaviest replica and its
// mean rank load; crossing and moves are at least 0.
double TrivialBound(const PlanProblem& problem, int32_t first, int32_t count) {
  double bound = 0;
  for (int32_t li = first; li < first + count; ++li) {
    if (!(problem.ideal_cost(li) > 0)) {
      bound += 1.0 / problem.num_layers();
      continue;
    }
    double heaviest = 0, total = 0;
    for (int32_t e = 0; e < problem.num_experts(); ++e) {
      const double c = problem.ReplicaCost(li, e, problem.replicas(li, e));
      heaviest = std::max(heaviest, c);
      total += c * problem.replicas(li, e);
    }
    bound += std::max(heaviest, total / problem.num_ranks()) / problem.ideal_cost(li) /
             problem.num_layers();
  }
  return bound;
}

}  // namespace

double RangeObjective(const PlanProblem& problem, int32_t first, int32_t count,
                      const std::vector<LayerHosts>& hosts) {
  const PlanWeights& w = problem.weights();
  double total = 0;
  for (int32_t li = first; li < first + count; ++li) {
    total += problem.Balance(li, hosts[li]) / problem.num_layers();
    total +=
        w.migration * static_cast<double>(problem.Moves(li, hosts[li])) / problem.total_slots();
  }
  for (int32_t p = std::max(0, first - 1); p < std::min(problem.num_pairs(), first + count); ++p) {
    if (problem.pair_mass(p) > 0) {
      total += w.traffic * problem.CrossingShare(p, hosts[p], hosts[p + 1]) /
               problem.num_weighted_pairs();
    }
  }
  return total;
}

int64_t RangeModelColumns(const PlanProblem& problem, int32_t first, int32_t count) {
  const int64_t E = problem.num_experts(), R = problem.num_ranks();
  int64_t columns = count * (E * R + 1);
  for (int32_t p = first; p + 1 < first + count; ++p) {
    if (!PairWeighted(problem, p)) continue;
    for (int32_t i = 0; i < E; ++i) {
      for (int32_t j = 0; j < E; ++j) columns += problem.transition(p, i, j) != 0 ? R : 0;
    }
  }
  return columns;
}

RangeSolve OptimiseRange(const PlanProblem& problem, int32_t first, int32_t count,
                         std::vector<LayerHosts>& hosts, Clock::time_point deadline) {
  RangeSolve solve;
  solve.before = RangeObjective(problem, first, count, hosts);
  std::vector<LayerHosts> start = hosts;
  std::vector<int32_t> heavy;
  if (RanksSymmetric(problem, first, count) && problem.num_ranks() > 1) {
    heavy = HeaviestFirst(problem, first);
    heavy.resize(std::min<size_t>(heavy.size(), 2));
    CanonicalRankOrder(problem, first, count, heavy, start);
    solve.symmetry_broken = true;
  }
  RangeModel m = BuildModel(problem, first, count, start);
  if (!heavy.empty()) AddSymmetryBreaking(problem, first, heavy, m);
  const MipResult mip = SolveMip(m.mip, StartValues(problem, first, count, start, m), deadline);
  const int32_t E = problem.num_experts(), R = problem.num_ranks();
  for (int32_t k = 0; k < count; ++k) {
    LayerHosts& h = start[first + k];
    for (size_t c = 0; c < h.size(); ++c) {
      h[c] = mip.solution[m.x_col[static_cast<size_t>(k) * E * R + c]] > 0.5 ? 1 : 0;
    }
  }
  bool valid = true;
  for (int32_t k = 0; k < count; ++k)
    valid = valid && FollowsProblem(problem, first + k, start[first + k]);
  const double after = valid ? RangeObjective(problem, first, count, start) : solve.before;
  solve.improved = valid && after < solve.before - 1e-12 * std::max(1.0, solve.before);
  if (solve.improved) {
    for (int32_t k = 0; k < count; ++k) hosts[first + k] = std::move(start[first + k]);
  }
  solve.after = solve.improved ? after : solve.before;
  solve.bound =
      std::min(solve.after, std::max(TrivialBound(problem, first, count), mip.bound + m.offset));
  solve.gap = solve.after > 0 ? (solve.after - solve.bound) / solve.after : 0;
  solve.proven_optimal = mip.proven_optimal;
  return solve;
}

}  // namespace sy
