// The evaluator and the cost model against numbers worked out by hand (see the comments), and
// greedy packing against simple invariants.
#include <gtest/gtest.h>

#include "engine/moe/planner/evaluate.h"
#include "engine/moe/planner/greedy.h"
#include "engine/moe/planner/local_search.h"
#include "engine/moe/planner/planner.h"

namespace sy {
namespace {

// 4 experts, layers 0 and 1, 10 tokens with 2 choices each.
// Layer 0 counts 8 6 4 2 (frequencies .8 .6 .4 .2); layer 1 5 5 5 5.
// Transitions 0->1: (0,0) 3, (1,1) 2, (0,1) 1, (2,3) 4: mass 10.
RoutingTrace TinyTrace(int windows) {
  RoutingTrace trace;
  trace.layers = {0, 1};
  trace.num_experts = 4;
  trace.top_k = 2;
  RoutingWindow w;
  w.tokens = 10;
  w.counts = {{8, 6, 4, 2}, {5, 5, 5, 5}};
  w.transitions = {std::vector<int64_t>(16, 0)};
  w.transitions[0][0 * 4 + 0] = 3;
  w.transitions[0][1 * 4 + 1] = 2;
  w.transitions[0][0 * 4 + 1] = 1;
  w.transitions[0][2 * 4 + 3] = 4;
  for (int i = 0; i < windows; ++i) trace.windows.push_back(w);
  return trace;
}

// A: layer 0 rank 0 {0,1}, rank 1 {2,3}; layer 1 rank 0 {0,2}, rank 1 {1,3}.
ExpertPlacement PlacementA() {
  ExpertPlacement p({0, 1}, 4, 2, 3);
  p.set_expert(0, 0, 0, 0);
  p.set_expert(0, 0, 1, 1);
  p.set_expert(0, 1, 0, 2);
  p.set_expert(0, 1, 1, 3);
  p.set_expert(1, 0, 0, 0);
  p.set_expert(1, 0, 1, 2);
  p.set_expert(1, 1, 0, 1);
  p.set_expert(1, 1, 1, 3);
  return p;
}

// B: as A, plus a replica of expert 0 on rank 1 in layer 0.
ExpertPlacement PlacementB() {
  ExpertPlacement p = PlacementA();
  p.set_expert(0, 1, 2, 0);
  return p;
}

// hidden 4, moe_intermediate 8: 3 * 32 = 96 weights, 192 bytes in bf16. Machine numbers chosen
// so that a pair costs 1 s (2 * 96 flops at 192 flop/s) and a read 1 s (192 B at 192 B/s).
CostModel UnitCostModel(int64_t batch_tokens) {
  ExpertShape shape;
  shape.hidden_size = 4;
  shape.moe_intermediate_size = 8;
  shape.num_experts = 4;
  MachineNumbers machine;
  machine.tflops = 192e-12;
  machine.bandwidth_gbs = 192e-9;
  StatusOr<CostModel> model = CostModel::FromModel(shape, "bf16", machine, batch_tokens);
  EXPECT_TRUE(model.ok());
  return *model;
}

TEST(CostModel, FromModelShapes) {
  const CostModel m = UnitCostModel(2);
  EXPECT_FALSE(m.tokens_mode());
  EXPECT_DOUBLE_EQ(m.expert_bytes(), 192);
  EXPECT_NEAR(m.seconds_per_pair(), 1, 1e-12);
  EXPECT_NEAR(m.seconds_per_read(), 1, 1e-12);
  // f = .8 over 2 replicas, B = 2: pairs 2 * .4 = .8, P(active) 1 - .6^2 = .64.
  EXPECT_NEAR(m.ReplicaPairs(0.8, 2), 0.8, 1e-12);
  EXPECT_NEAR(m.ReplicaActiveProbability(0.8, 2), 0.64, 1e-12);
  EXPECT_NEAR(m.ReplicaCost(0.8, 2), 1.44, 1e-12);
  ExpertShape shape;
  shape.hidden_size = 4;
  shape.moe_intermediate_size = 8;
  shape.num_experts = 4;
  EXPECT_FALSE(CostModel::FromModel(shape, "int3", MachineNumbers(), 64).ok());
  shape.num_experts = 0;
  EXPECT_FALSE(CostModel::FromModel(shape, "bf16", MachineNumbers(), 64).ok());
}

TEST(Evaluate, HandComputedTokensAndCost) {
  const RoutingTrace trace = TinyTrace(1);
  StatusOr<std::vector<PlacementEvaluation>> ev =
      EvaluatePlacements(trace, {{"A", PlacementA()}, {"B", PlacementB()}}, UnitCostModel(2),
                         PlanWeights{1.0, 0.0}, /*reference=*/nullptr, true);
  ASSERT_TRUE(ev.ok()) << ev.status().ToString();
  ASSERT_EQ(ev->size(), 2u);  // one window: only the total
  const LayerEvaluation& a0 = (*ev)[0].layers[0];
  // Rank 0: pairs 2 * (.8 + .6) = 2.8, active (1 - .2^2) + (1 - .4^2) = .96 + .84 = 1.8.
  // Rank 1: pairs 2 * (.4 + .2) = 1.2, active .64 + .36 = 1.0.
  EXPECT_NEAR(a0.max_pairs, 2.8, 1e-12);
  EXPECT_NEAR(a0.mean_pairs, 2.0, 1e-12);
  EXPECT_NEAR(a0.max_active, 1.8, 1e-12);
  EXPECT_NEAR(a0.mean_active, 1.4, 1e-12);
  EXPECT_NEAR(a0.max_cost, 4.6, 1e-12);
  EXPECT_NEAR(a0.mean_cost, 3.4, 1e-12);
  EXPECT_NEAR(a0.max_bytes, 1.8 * 192, 1e-9);
  // Same rank: (0,0) 3 and (2,3) 4 of 10.
  EXPECT_NEAR(a0.crossing, 0.3, 1e-12);
  EXPECT_EQ((*ev)[0].layers[1].crossing, -1);  // the last layer has no successor
  const LayerEvaluation& b0 = (*ev)[1].layers[0];
  // Expert 0 split: .8 pairs and P(active) .64 per replica. Rank 0: pairs .8 + 1.2 = 2.0,
  // active .64 + .84 = 1.48; rank 1: pairs .8 + .8 + .4 = 2.0, active .64 + .64 + .36 = 1.64.
  EXPECT_NEAR(b0.max_pairs, 2.0, 1e-12);
  EXPECT_NEAR(b0.max_active, 1.64, 1e-12);
  EXPECT_NEAR(b0.max_cost, 3.64, 1e-12);
  // (0,0): half of expert 0 on rank 0 meets layer-1 expert 0: 1.5; (0,1): half on rank 1: .5;
  // (2,3): 4; (1,1): 0. Same 6 of 10.
  EXPECT_NEAR(b0.crossing, 0.4, 1e-12);
  // Layer 1 of both (every f = .5): each rank pairs 2, active 2 * .75, cost 3.5.
  EXPECT_NEAR((*ev)[1].layers[1].max_cost, 3.5, 1e-12);
  // The objective: balance = mean over layers of max cost / (sum of one-replica costs / R).
  // Layer 0 one-replica costs: 1.6+.96, 1.2+.84, .8+.64, .4+.36 = 6.8, / 2 = 3.4.
  EXPECT_NEAR((*ev)[0].objective.balance, (4.6 / 3.4 + 1.0) / 2, 1e-12);
  EXPECT_NEAR((*ev)[1].objective.balance, (3.64 / 3.4 + 1.0) / 2, 1e-12);
  EXPECT_NEAR((*ev)[1].objective.total, (3.64 / 3.4 + 1.0) / 2 + 0.4, 1e-12);
}

TEST(Evaluate, WindowsAndMovesAgainstAReference) {
  const RoutingTrace trace = TinyTrace(2);
  const ExpertPlacement reference = PlacementA();
  StatusOr<std::vector<PlacementEvaluation>> ev = EvaluatePlacements(
      trace, {{"B", PlacementB()}}, CostModel(64), PlanWeights{0.5, 1.0}, &reference, true);
  ASSERT_TRUE(ev.ok()) << ev.status().ToString();
  ASSERT_EQ(ev->size(), 3u);  // total, window 0, window 1
  EXPECT_EQ((*ev)[0].window, "total");
  EXPECT_EQ((*ev)[2].window, "window 1");
  for (const PlacementEvaluation& e : *ev) {
    EXPECT_EQ(e.layers[0].moved, 1);  // expert 0 added on rank 1 in layer 0
    EXPECT_EQ(e.layers[1].moved, 0);
    EXPECT_EQ(e.objective.moved, 1);
    // Tokens mode: layer 0 pairs per rank 64 * (.4 + .6) = 64 both: balance 1; same layer 1.
    EXPECT_NEAR(e.layers[0].max_pairs, 64, 1e-9);
    EXPECT_NEAR(e.objective.balance, 1.0, 1e-12);
    // 1 + .5 * .4 + 1.0 * 1 moved / (2 layers * 2 ranks * 3 slots).
    EXPECT_NEAR(e.objective.total, 1.0 + 0.2 + 1.0 / 12, 1e-12);
  }
  EXPECT_EQ(PlacementB().MovesFrom(reference), 1);
  const nlohmann::json json = EvaluationJson(*ev);
  EXPECT_EQ(json.size(), 3u);
  EXPECT_EQ(json[0]["layers"][0]["moved"], 1);
  EXPECT_NE(EvaluationTable(*ev).find("window 1"), std::string::npos);
}

TEST(Evaluate, RejectsAPlacementOfAnotherShape) {
  const RoutingTrace trace = TinyTrace(1);
  StatusOr<std::vector<PlacementEvaluation>> ev =
      EvaluatePlacements(trace, {{"wrong", ExpertPlacement::Contiguous({0, 1, 2}, 4, 2, 2)}},
                         CostModel(64), PlanWeights(), nullptr, true);
  EXPECT_EQ(ev.status().code(), StatusCode::kInvalidArgument);
}

TEST(Greedy, PacksHeaviestFirstOntoLeastLoaded) {
  // One layer, counts 8 6 4 2 on 2 ranks x 3 slots: 2 spare slots go to expert 0 (8 -> 4 per
  // replica) then expert 1 (6 -> 3). Replicas by load: e0 4, e0 4, e2 4, e1 3, e1 3, e3 2.
  // LPT: e0->r0, e0->r1, e2->r0 (tie, lowest), e1->r1, e1->r0, e3->r1: loads 11 and 9.
  RoutingTrace trace = TinyTrace(1);
  const RoutingWindow w = trace.Total();
  StatusOr<PlanProblem> problem =
      PlanProblem::Create({0, 1}, 4, w, 2, 3, CostModel(10), PlanWeights(), nullptr);
  ASSERT_TRUE(problem.ok());
  EXPECT_EQ(problem->replicas(0, 0), 2);
  EXPECT_EQ(problem->replicas(0, 1), 2);
  EXPECT_EQ(problem->replicas(0, 2), 1);
  const LayerHosts hosts = GreedyLayerHosts(*problem, 0);
  const std::vector<RankLoad> loads = problem->RankLoads(0, hosts);
  EXPECT_NEAR(loads[0].pairs, 11, 1e-9);
  EXPECT_NEAR(loads[1].pairs, 9, 1e-9);
  EXPECT_EQ(hosts[2 * 2 + 0], 1);  // expert 2 on rank 0
  EXPECT_EQ(hosts[3 * 2 + 1], 1);  // expert 3 on rank 1
}

TEST(LocalSearch, OneSwapFixesTheClassicLptMiss) {
  // Counts 3 3 2 2 2 0 on 2 ranks x 3 slots (no spare slot). LPT: r0 {3, 2, 2} = 7,
  // r1 {3, 2, 0} = 5. Swapping a 3 on r0 with a 2 on r1 gives 6 and 6, the optimum.
  RoutingWindow w;
  w.tokens = 12;
  w.counts = {{3, 3, 2, 2, 2, 0}};
  StatusOr<PlanProblem> problem =
      PlanProblem::Create({0}, 6, w, 2, 3, CostModel(12), PlanWeights(), nullptr);
  ASSERT_TRUE(problem.ok());
  LayerHosts hosts = GreedyLayerHosts(*problem, 0);
  EXPECT_NEAR(problem->RankLoads(0, hosts)[0].pairs, 7, 1e-9);
  ASSERT_TRUE(ImproveBalance(*problem, 0, hosts));
  for (const RankLoad& load : problem->RankLoads(0, hosts)) EXPECT_NEAR(load.pairs, 6, 1e-9);
  for (int32_t e = 0; e < 6; ++e) EXPECT_EQ(problem->CountReplicas(hosts, e), 1);
  EXPECT_FALSE(ImproveBalance(*problem, 0, hosts));  // already optimal
}

TEST(LocalSearch, KeepsCountsAndSlotsAndNeverRaisesTheMax) {
  // Uneven counts with replicas: 10 experts on 4 ranks x 3 slots (2 spare).
  RoutingWindow w;
  w.counts = {{50, 41, 33, 29, 17, 12, 9, 5, 3, 1}};
  w.tokens = 200;
  StatusOr<PlanProblem> problem =
      PlanProblem::Create({0}, 10, w, 4, 3, CostModel(64), PlanWeights(), nullptr);
  ASSERT_TRUE(problem.ok());
  LayerHosts hosts = GreedyLayerHosts(*problem, 0);
  auto max_pairs = [&](const LayerHosts& h) {
    double m = 0;
    for (const RankLoad& load : problem->RankLoads(0, h)) m = std::max(m, load.pairs);
    return m;
  };
  const double before = max_pairs(hosts);
  ImproveBalance(*problem, 0, hosts);
  EXPECT_LE(max_pairs(hosts), before + 1e-12);
  std::vector<int32_t> used(4, 0);
  for (int32_t e = 0; e < 10; ++e) {
    EXPECT_EQ(problem->CountReplicas(hosts, e), problem->replicas(0, e));
    for (int32_t r = 0; r < 4; ++r) used[r] += hosts[e * 4 + r];
  }
  for (int32_t u : used) EXPECT_LE(u, 3);
}

}  // namespace
}  // namespace sy
