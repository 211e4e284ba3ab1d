// The expert placement planner: turns routing statistics into an ExpertPlacement for an
// expert-parallel group of num_ranks ranks with slots_per_rank slots each, by one of three
// strategies (contiguous baseline, greedy balanced packing, ILP with COIN-OR CBC), minimising the
// objective documented in docs/planner.md. Plan() is a stateless, reentrant function.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"
#include "engine/moe/placement.h"
#include "engine/moe/planner/cost_model.h"
#include "engine/moe/planner/plan_problem.h"
#include "engine/moe/routing_trace.h"

namespace sy {

enum class PlanStrategy { kContiguous, kGreedy, kIlp };

// "contiguous", "greedy", "ilp"; InvalidArgument for anything else.
StatusOr<PlanStrategy> ParsePlanStrategy(const std::string& name);
const char* PlanStrategyName(PlanStrategy strategy);

struct PlanOptions {
  PlanStrategy strategy = PlanStrategy::kIlp;
  int32_t num_ranks = 0;
  int32_t slots_per_rank = 0;
  const ExpertPlacement* current = nullptr;  // not owned; migration is counted against it
  CostModel cost_model;                      // tokens mode unless set
  PlanWeights weights;
  double time_limit_seconds = 5.0;  // ILP: total wall-clock budget (returns within it + ~10 ms)
  int32_t sweeps = 2;               // ILP: passes over the layers, alternating direction
  // ILP: after the sweeps, solve all layers in one model when it has at most this many columns
  // (the pairwise terms linearised); 0 turns the joint model off. Its LP relaxation is weak and
  // each LP solve long beyond ~1000 columns (an 8-layer, 8-expert, 4-rank model of 2056
  // columns explored 4 nodes in 0.6 s), so it is meant for small instances, where it proves
  // global optimality.
  int64_t joint_max_columns = 1200;
};

struct PlanReport {
  PlanStrategy strategy = PlanStrategy::kIlp;
  double seconds = 0;
  ObjectiveTerms objective;           // of the returned placement
  ObjectiveTerms start_objective;     // ILP: of its starting point (greedy); else == objective
  std::vector<double> layer_balance;  // max rank cost / ideal rank cost, per layer
  std::vector<double> layer_max_over_mean;  // max rank cost / mean rank cost, per layer
  std::vector<double> pair_crossing;        // crossing share per layer pair (0 without data)
  // ILP only.
  int32_t passes = 0;             // sweeps done over the layers
  int32_t subproblems = 0;        // CBC solves
  int32_t proven_optimal = 0;     // of which CBC proved optimal
  std::vector<double> layer_gap;  // relative gap of each layer's last single-layer solve
  double worst_gap = 0;           // max of layer_gap (and of the joint solve)
  bool joint = false;             // the joint model ran
  double joint_gap = -1;          // its relative gap on the whole objective; -1: not run
  bool time_limit_hit = false;
  std::string solver_status;  // a line for people
};

// Plans layers `layers` of `window` (counts[li] / transitions[li] index into layers).
// InvalidArgument for shapes that do not fit (ranks * slots < experts, a contiguous plan with
// too few slots per rank, a current placement of another shape).
StatusOr<ExpertPlacement> Plan(const std::vector<int32_t>& layers, int32_t num_experts,
                               const RoutingWindow& window, const PlanOptions& options,
                               PlanReport* report);
// Plans trace.Total().
StatusOr<ExpertPlacement> Plan(const RoutingTrace& trace, const PlanOptions& options,
                               PlanReport* report);

}  // namespace sy
