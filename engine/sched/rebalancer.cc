#include "engine/sched/rebalancer.h"

#include <spdlog/spdlog.h>

#include "engine/moe/planner/evaluate.h"

namespace sy {

Rebalancer::Rebalancer(const RebalanceOptions& options, const RoutingStats* stats,
                       ExpertPlacement current)
    : options_(options),
      stats_(stats),
      current_(std::move(current)),
      next_plan_(Clock::now() + options.interval) {}

Rebalancer::~Rebalancer() {
  if (planning_.valid()) planning_.wait();
}

Rebalancer::PlanResult Rebalancer::PlanFrom(const RoutingWindow& window, int32_t top_k,
                                            const ExpertPlacement& current,
                                            const RebalanceOptions& options) {
  PlanResult result;
  PlanOptions po;
  po.strategy = options.strategy;
  po.num_ranks = current.num_ranks();
  po.slots_per_rank = current.slots_per_rank();
  po.current = &current;
  po.time_limit_seconds = options.time_limit_s;
  PlanReport report;
  auto planned = Plan(current.layers(), current.num_experts(), window, po, &report);
  if (!planned.ok()) {
    spdlog::warn("rebalance: planning failed: {}", planned.status().ToString());
    result.failed = true;
    return result;
  }
  RoutingTrace trace;
  trace.layers = current.layers();
  trace.num_experts = current.num_experts();
  trace.top_k = top_k;
  trace.windows = {window};
  auto evaluated = EvaluatePlacements(trace, {{"current", current}, {"planned", *planned}},
                                      po.cost_model, po.weights, &current, /*per_window=*/false);
  if (!evaluated.ok()) {
    spdlog::warn("rebalance: evaluation failed: {}", evaluated.status().ToString());
    result.failed = true;
    return result;
  }
  const double now = (*evaluated)[0].objective.total;
  const double next = (*evaluated)[1].objective.total;
  result.moves = planned->MovesFrom(current);
  spdlog::info("rebalance: plan objective {:.4f} vs current {:.4f}, {} experts to move", next, now,
               result.moves);
  if (result.moves > 0 && next < now * (1 - options.min_gain)) {
    result.placement = std::move(*planned);
  }
  return result;
}

bool Rebalancer::SetTarget(ExpertPlacement target) {
  if (target_) return false;
  drop_plan_ = planning_.valid();
  const int64_t moves = target.MovesFrom(current_);
  if (moves == 0) return true;
  target_ = std::move(target);
  target_moves_ = moves;
  next_layer_ = 0;
  return true;
}

MigrationAction Rebalancer::NextAction(Clock::time_point now) {
  MigrationAction action;
  if (target_) {
    if (next_layer_ == 0) action.stage_placement_json = target_->ToJson();
    action.migrate_layer = next_layer_;
    action.commit = next_layer_ + 1 == current_.num_layers();
    return action;
  }
  if (planning_.valid()) {
    if (planning_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return action;
    PlanResult result = planning_.get();
    next_plan_ = now + options_.interval;
    if (result.failed) ++failures_;
    if (drop_plan_ || !result.placement) {
      drop_plan_ = false;
      return action;
    }
    target_ = std::move(result.placement);
    target_moves_ = result.moves;
    next_layer_ = 0;
    return NextAction(now);
  }
  if (options_.interval.count() > 0 && now >= next_plan_) {
    const RoutingWindow window = stats_->Window();
    if (window.tokens == 0) {
      next_plan_ = now + options_.interval;
      return action;
    }
    planning_ =
        std::async(std::launch::async, PlanFrom, window, stats_->top_k(), current_, options_);
  }
  return action;
}

void Rebalancer::OnStepDone(const MigrationAction& action, Clock::time_point now) {
  if (action.empty() || !target_) return;
  ++next_layer_;
  if (!action.commit) return;
  current_ = std::move(*target_);
  target_.reset();
  ++rebalances_;
  experts_moved_ += target_moves_;
  next_plan_ = now + options_.interval;
  spdlog::info("rebalance: switched to the new placement ({} experts moved)", target_moves_);
}

}  // namespace sy
