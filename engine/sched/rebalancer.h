// Rebalancer: live expert rebalancing for an expert-parallel engine. Every interval it plans a
// placement from the routing statistics' sliding window on a thread of its own (steps go on
// meanwhile); when the plan beats the current placement's objective by min_gain it walks the
// ranks through a migration, one MoE layer per step (new weights are copied while the old
// placement keeps serving), and switches every rank at the same step boundary. Driven by the
// engine thread; the planning thread touches only its own copy of the inputs.
#pragma once

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>

#include "engine/moe/placement.h"
#include "engine/moe/planner/planner.h"
#include "engine/moe/routing_stats.h"
#include "engine/runner/step_executor.h"

namespace sy {

struct RebalanceOptions {
  std::chrono::milliseconds interval{0};
  PlanStrategy strategy = PlanStrategy::kGreedy;
  double time_limit_s = 1.0;
  // Migrate only when the planned objective is below (1 - min_gain) times the current one.
  double min_gain = 0.02;
};

class Rebalancer {
 public:
  using Clock = std::chrono::steady_clock;

  // `stats` is not owned and must outlive this object.
  Rebalancer(const RebalanceOptions& options, const RoutingStats* stats, ExpertPlacement current);
  ~Rebalancer();  // waits for a plan in progress

  // Migrates to `target` (an operator's request) unless a migration is under way; a plan still
  // being computed is then dropped. False when busy. A target equal to the current placement
  // is accepted and does nothing.
  bool SetTarget(ExpertPlacement target);
  // A migration is under way: steps must run (empty ones if need be) to carry it.
  bool migrating() const { return target_.has_value(); }
  // The migration action for the step about to run (empty when there is none).
  MigrationAction NextAction(Clock::time_point now);
  // Reports that the step carrying `action` ran on every rank.
  void OnStepDone(const MigrationAction& action, Clock::time_point now);

  const ExpertPlacement& placement() const { return current_; }
  int64_t rebalances() const { return rebalances_; }  // committed migrations
  int64_t experts_moved() const { return experts_moved_; }
  // Plans that could not be made (planner or evaluation error); the placement stays as it is.
  int64_t failures() const { return failures_; }

 private:
  // A finished plan: the placement and whether it is worth migrating to.
  struct PlanResult {
    std::optional<ExpertPlacement> placement;
    int64_t moves = 0;
    bool failed = false;  // planning or evaluation returned an error
  };
  static PlanResult PlanFrom(const RoutingWindow& window, int32_t top_k,
                             const ExpertPlacement& current, const RebalanceOptions& options);

  const RebalanceOptions options_;
  const RoutingStats* stats_;
  ExpertPlacement current_;
  Clock::time_point next_plan_;
  std::future<PlanResult> planning_;
  std::optional<ExpertPlacement> target_;  // migrating to this
  int64_t target_moves_ = 0;
  int32_t next_layer_ = 0;  // layer index to migrate next
  int64_t rebalances_ = 0;
  int64_t experts_moved_ = 0;
  int64_t failures_ = 0;
  bool drop_plan_ = false;  // the plan being computed lost to an operator's target
};

}  // namespace sy
