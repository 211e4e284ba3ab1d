// Balance local search for one layer: repeatedly moves or swaps a replica between the most
// loaded rank and another rank while that lowers the larger of the two ranks' loads (replica
// counts and slot limits stay). Fast (no solver), used to improve the ILP's greedy start, where
// min-max packing is what CBC finds slowest. Stateless function.
#pragma once

#include <cstdint>

#include "engine/moe/planner/plan_problem.h"

namespace sy {

// Improves `hosts` (layer li, following the problem's replica counts) in place; returns true if
// the max rank cost dropped.
bool ImproveBalance(const PlanProblem& problem, int32_t li, LayerHosts& hosts);

}  // namespace sy
