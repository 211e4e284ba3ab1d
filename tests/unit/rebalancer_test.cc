// Rebalancer: a plan that cannot be made is counted as a failure and leaves the placement as it
// is; a plan that can be made is not.
#include "engine/sched/rebalancer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

namespace sy {
namespace {

// One MoE layer (model layer 0) of 4 experts, top 1, over 2 ranks (AddSkewedStep: every token on
// expert 0, so the contiguous placement is as unbalanced as it can be).
void AddSkewedStep(RoutingStats& stats) {
  const std::vector<std::vector<int32_t>> ids = {{0, 0, 0, 0}};
  const std::vector<std::vector<int32_t>> ranks = {{0, 0, 0, 0}};
  stats.AddStep(4, ids, ranks);
  stats.EndStep();
}

// Drives the rebalancer until the plan it started has been taken up.
void RunPlan(Rebalancer& rebalancer) {
  const auto start = Rebalancer::Clock::now() + std::chrono::seconds(1);
  rebalancer.NextAction(start);  // starts planning
  for (int i = 0; i < 1000; ++i) {
    rebalancer.NextAction(start);
    if (rebalancer.failures() > 0 || rebalancer.migrating()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

TEST(RebalancerTest, PlanningErrorCountsAFailureAndKeepsThePlacement) {
  RoutingStats stats({0}, 4, 1, 2, 8);
  AddSkewedStep(stats);
  const ExpertPlacement start = ExpertPlacement::Contiguous({0}, 4, 2, 3);
  RebalanceOptions options;
  options.interval = std::chrono::milliseconds(1);
  options.time_limit_s = 0;  // the planner refuses a non-positive time limit
  Rebalancer rebalancer(options, &stats, start);
  RunPlan(rebalancer);
  EXPECT_EQ(rebalancer.failures(), 1);
  EXPECT_FALSE(rebalancer.migrating());
  EXPECT_EQ(rebalancer.rebalances(), 0);
  EXPECT_TRUE(rebalancer.placement() == start);
}

TEST(RebalancerTest, SuccessfulPlanIsNoFailure) {
  RoutingStats stats({0}, 4, 1, 2, 8);
  AddSkewedStep(stats);
  RebalanceOptions options;
  options.interval = std::chrono::milliseconds(1);
  options.min_gain = -1;  // migrate to any plan that moves something
  Rebalancer rebalancer(options, &stats, ExpertPlacement::Contiguous({0}, 4, 2, 3));
  RunPlan(rebalancer);
  EXPECT_TRUE(rebalancer.migrating());
  EXPECT_EQ(rebalancer.failures(), 0);
}

}  // namespace
}  // namespace sy
