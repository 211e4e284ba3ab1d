// The placement ILP over a range of consecutive layers with the other layers fixed (MoETuner /
// ExFlow formulation, docs/planner.md): binary x[l][e][r] (rank r holds a replica of e), one
// continuous max-load variable per layer, and for layer pairs inside the range continuous
// y[i][j][r] <= x[l][i][r], x[l+1][j][r] that linearise "i and j share rank r"; a pair with one
// fixed side is linear in x. One layer at a time gives the sweeps; all layers the joint model.
// Stateless functions; they only read the problem.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/moe/planner/cbc_mip.h"
#include "engine/moe/planner/plan_problem.h"

namespace sy {

struct RangeSolve {
  double before = 0;  // the range's part of the objective, before and after
  double after = 0;
  double bound = 0;  // proven lower bound on that part (given the fixed layers)
  double gap = 0;    // (after - bound) / after, >= 0
  bool improved = false;
  bool proven_optimal = false;
  bool symmetry_broken = false;
};

// The part of the total objective that depends on layers [first, first + count).
double RangeObjective(const PlanProblem& problem, int32_t first, int32_t count,
                      const std::vector<LayerHosts>& hosts);

// Number of columns the range model would have (to decide whether the joint model is small).
int64_t RangeModelColumns(const PlanProblem& problem, int32_t first, int32_t count);

// Re-optimises layers [first, first + count) of `hosts` (which must follow the problem's replica
// counts) with CBC until `deadline`, warm-started from `hosts`; replaces them only when strictly
// better, so the objective never gets worse.
RangeSolve OptimiseRange(const PlanProblem& problem, int32_t first, int32_t count,
                         std::vector<LayerHosts>& hosts, Clock::time_point deadline);

}  // namespace sy
