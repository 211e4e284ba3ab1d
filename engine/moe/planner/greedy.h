// Greedy balanced packing (DeepSeek EPLB-like): every expert gets the problem's replica count,
// then replicas go heaviest first onto the least-loaded rank that has a free slot and does not
// hold that expert yet. Also the ILP's starting point. Stateless functions.
#pragma once

#include <vector>

#include "engine/moe/planner/plan_problem.h"

namespace sy {

// Hosts of layer li. With `keep` (e.g. the current placement's hosts), up to the planned replica
// count of each expert stays where `keep` has it before the rest is packed.
LayerHosts GreedyLayerHosts(const PlanProblem& problem, int32_t li,
                            const LayerHosts* keep = nullptr);

// Every layer: GreedyLayerHosts(problem, li, keep ? current : nullptr).
std::vector<LayerHosts> GreedyHosts(const PlanProblem& problem, bool keep_current = false);

}  // namespace sy
