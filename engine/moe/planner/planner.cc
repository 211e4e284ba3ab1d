#include "engine/moe/planner/planner.h"

#include <algorithm>
#include <cstdio>

#include "engine/moe/planner/greedy.h"
#include "engine/moe/planner/ilp_model.h"
#include "engine/moe/planner/local_search.h"

namespace sy {

namespace {

// CBC can overrun a deadline by one LP solve or heuristic pass: aim a little early.
Clock::duration Margin(double limit_seconds) {
  return std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(std::min(0.01, 0.05 * limit_seconds)));
}

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Layer-by-layer sweeps (forward, backward, ...) until `deadline`, or until a pass changes
// nothing while CBC proved every solve optimal (then another pass would repeat it).
void Sweep(const PlanProblem& problem, int32_t passes, Clock::time_point deadline,
           std::vector<LayerHosts>& hosts, PlanReport& report) {
  const int32_t L = problem.num_layers();
  int32_t remaining = passes * L;
  for (int32_t pass = 0; pass < passes; ++pass) {
    bool improved = false, all_proven = true;
    for (int32_t k = 0; k < L; ++k, --remaining) {
      const Clock::time_point now = Clock::now();
      if (now >= deadline) {
        report.time_limit_hit = true;
        return;
      }
      const int32_t li = pass % 2 == 0 ? k : L - 1 - k;
      const RangeSolve solve =
          OptimiseRange(problem, li, 1, hosts, now + (deadline - now) / remaining);
      ++report.subproblems;
      report.proven_optimal += solve.proven_optimal ? 1 : 0;
      report.time_limit_hit |= !solve.proven_optimal;
      report.layer_gap[li] = solve.gap;
      improved |= solve.improved;
      all_proven &= solve.proven_optimal;
    }
    ++report.passes;
    if (!improved && all_proven) return;
  }
}

std::vector<LayerHosts> PlanIlp(const PlanProblem& problem, const PlanOptions& options,
                                Clock::time_point t0, Clock::time_point deadline,
                                PlanReport& report) {
  std::vector<LayerHosts> hosts = GreedyHosts(problem);
  if (problem.current(0) != nullptr) {
    std::vector<LayerHosts> around_current = GreedyHosts(problem, /*keep_current=*/true);
    if (problem.Evaluate(around_current).total < problem.Evaluate(hosts).total) {
      hosts = std::move(around_current);
    }
  }
  report.start_objective = problem.Evaluate(hosts);
  const int32_t L = problem.num_layers();
  for (int32_t li = 0; li < L && Clock::now() < deadline; ++li) {  // solver-free balance polish
    std::vector<LayerHosts> polished = hosts;
    if (ImproveBalance(problem, li, polished[li]) &&
        RangeObjective(problem, li, 1, polished) < RangeObjective(problem, li, 1, hosts)) {
      hosts[li] = std::move(polished[li]);
    }
  }
  report.layer_gap.assign(L, 0.0);
  const bool coupled = L > 1 && problem.weights().traffic > 0 && problem.num_weighted_pairs() > 0;
  const bool joint = coupled && options.joint_max_columns > 0 &&
                     RangeModelColumns(problem, 0, L) <= options.joint_max_columns;
  const int32_t passes = coupled ? std::max(1, options.sweeps) : 1;
  Sweep(problem, passes, joint ? t0 + (deadline - t0) / 2 : deadline, hosts, report);
  report.worst_gap = *std::max_element(report.layer_gap.begin(), report.layer_gap.end());
  if (joint && Clock::now() < deadline) {
    const RangeSolve solve = OptimiseRange(problem, 0, L, hosts, deadline);
    ++report.subproblems;
    report.proven_optimal += solve.proven_optimal ? 1 : 0;
    report.time_limit_hit |= !solve.proven_optimal;
    report.joint = true;
    report.joint_gap = solve.gap;
    report.worst_gap = std::max(report.worst_gap, solve.gap);
  }
  char status[256];
  std::snprintf(status, sizeof(status),
                "%d CBC solves (%d proven optimal) in %d passes; worst single-layer gap %.2f%%%s",
                report.subproblems, report.proven_optimal, report.passes,
                100 * *std::max_element(report.layer_gap.begin(), report.layer_gap.end()),
                report.joint ? "; joint model over all layers ran" : "");
  report.solver_status = status;
  if (report.joint) {
    char joint_status[64];
    std::snprintf(joint_status, sizeof(joint_status), " (gap %.2f%%)", 100 * report.joint_gap);
    report.solver_status += joint_status;
  }
  return hosts;
}

void Describe(const PlanProblem& problem, const std::vector<LayerHosts>& hosts,
              PlanReport& report) {
  report.objective = problem.Evaluate(hosts);
  if (report.strategy != PlanStrategy::kIlp) report.start_objective = report.objective;
  for (int32_t li = 0; li < problem.num_layers(); ++li) {
    report.layer_balance.push_back(problem.Balance(li, hosts[li]));
    double max_cost = 0, total = 0;
    for (const RankLoad& load : problem.RankLoads(li, hosts[li])) {
      max_cost = std::max(max_cost, load.cost);
      total += load.cost;
    }
    report.layer_max_over_mean.push_back(total > 0 ? max_cost * problem.num_ranks() / total : 1);
  }
  for (int32_t p = 0; p < problem.num_pairs(); ++p) {
    report.pair_crossing.push_back(problem.CrossingShare(p, hosts[p], hosts[p + 1]));
  }
}

}  // namespace

StatusOr<PlanStrategy> ParsePlanStrategy(const std::string& name) {
  if (name == "contiguous") return PlanStrategy::kContiguous;
  if (name == "greedy") return PlanStrategy::kGreedy;
  if (name == "ilp") return PlanStrategy::kIlp;
  return Status::InvalidArgument("unknown strategy '" + name + "' (contiguous, greedy or ilp)");
}

const char* PlanStrategyName(PlanStrategy strategy) {
  switch (strategy) {
    case PlanStrategy::kContiguous:
      return "contiguous";
    case PlanStrategy::kGreedy:
      return "greedy";
    case PlanStrategy::kIlp:
      return "ilp";
  }
  return "?";
}

StatusOr<ExpertPlacement> Plan(const std::vector<int32_t>& layers, int32_t num_experts,
                               const RoutingWindow& window, const PlanOptions& options,
                               PlanReport* report) {
  const Clock::time_point t0 = Clock::now();
  if (!(options.time_limit_seconds > 0)) {
    return Status::InvalidArgument("the time limit must be positive");
  }
  SY_ASSIGN_OR_RETURN(
      PlanProblem problem,
      PlanProblem::Create(layers, num_experts, window, options.num_ranks, options.slots_per_rank,
                          options.cost_model, options.weights, options.current));
  PlanReport local;
  PlanReport& r = report != nullptr ? *report : local;
  r = PlanReport();
  r.strategy = options.strategy;
  std::vector<LayerHosts> hosts;
  ExpertPlacement placement;
  if (options.strategy == PlanStrategy::kContiguous) {
    const int32_t needed = (num_experts + options.num_ranks - 1) / options.num_ranks;
    if (options.slots_per_rank < needed) {
      return Status::InvalidArgument("a contiguous placement of " + std::to_string(num_experts) +
                                     " experts on " + std::to_string(options.num_ranks) +
                                     " ranks needs " + std::to_string(needed) + " slots per rank");
    }
    placement =
        ExpertPlacement::Contiguous(layers, num_experts, options.num_ranks, options.slots_per_rank);
    for (int32_t li = 0; li < problem.num_layers(); ++li) {
      hosts.push_back(problem.HostsOf(placement, li));
    }
  } else {
    const Clock::time_point deadline =
        t0 +
        std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(options.time_limit_seconds)) -
        Margin(options.time_limit_seconds);
    hosts = options.strategy == PlanStrategy::kGreedy ? GreedyHosts(problem)
                                                      : PlanIlp(problem, options, t0, deadline, r);
    placement = problem.ToPlacement(hosts);
  }
  Describe(problem, hosts, r);
  r.seconds = SecondsSince(t0);
  return placement;
}

StatusOr<ExpertPlacement> Plan(const RoutingTrace& trace, const PlanOptions& options,
                               PlanReport* report) {
  return Plan(trace.layers, trace.num_experts, trace.Total(), options, report);
}

}  // namespace sy
