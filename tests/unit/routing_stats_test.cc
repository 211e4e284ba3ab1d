// RoutingStats: a hand-computed case (MoE layers 1 and 3 of a 4-layer model, 4 experts, top-2,
// 2 ranks, a 2-step window), recording, JSON, and random steps against a brute-force recount.
#include "engine/moe/routing_stats.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

namespace sy {
namespace {

using Matrix = std::vector<std::vector<int64_t>>;

// Per model layer (0..3); only 1 and 3 are MoE layers.
struct Batch {
  int64_t tokens;
  std::vector<std::vector<int32_t>> experts;
  std::vector<std::vector<int32_t>> ranks;
};

Batch Make(int64_t tokens, std::vector<int32_t> l1, std::vector<int32_t> l3,
           std::vector<int32_t> r1, std::vector<int32_t> r3) {
  return {tokens, {{}, std::move(l1), {}, std::move(l3)}, {{}, std::move(r1), {}, std::move(r3)}};
}

void Add(RoutingStats* stats, const Batch& b) { stats->AddStep(b.tokens, b.experts, b.ranks); }

// Step 1: two batches (source ranks 0 and 1). Step 2 and 3: one batch each.
const Batch kStep1RankA = Make(2, {0, 1, 1, 2}, {2, 3, 0, 2}, {0, 0, 0, 1}, {1, 1, 0, 1});
const Batch kStep1RankB = Make(1, {3, 0}, {3, 1}, {1, 0}, {1, 0});
const Batch kStep2 = Make(1, {2, 3}, {0, 1}, {0, 1}, {0, 0});
const Batch kStep3 = Make(1, {0, 3}, {3, 2}, {0, 1}, {1, 1});

RoutingStats NewStats() { return RoutingStats({1, 3}, 4, 2, 2, /*window_steps=*/2); }

TEST(RoutingStatsTest, OneStepByHand) {
  RoutingStats stats = NewStats();
  Add(&stats, kStep1RankA);
  Add(&stats, kStep1RankB);
  stats.EndStep();
  const RoutingWindow w = stats.Window();
  EXPECT_EQ(w.tokens, 3);
  EXPECT_EQ(w.counts, (Matrix{{2, 2, 1, 1}, {1, 1, 2, 2}}));
  // Pairs (layer 1 -> layer 3) of the three tokens: {0,1}x{2,3}, {1,2}x{0,2}, {3,0}x{3,1}.
  EXPECT_EQ(w.transitions, (Matrix{{0, 1, 1, 2,  //
                                    1, 0, 2, 1,  //
                                    1, 0, 1, 0,  //
                                    0, 1, 0, 1}}));
  EXPECT_EQ(stats.WindowRankPairs(), (Matrix{{4, 2}, {2, 4}}));
  const std::vector<double> expert = stats.WindowExpertImbalance();
  EXPECT_DOUBLE_EQ(expert[0], 2.0 / 1.5);
  EXPECT_DOUBLE_EQ(expert[1], 2.0 / 1.5);
  const std::vector<double> rank = stats.WindowRankImbalance();
  EXPECT_DOUBLE_EQ(rank[0], 4.0 / 3);
  EXPECT_DOUBLE_EQ(rank[1], 4.0 / 3);
  EXPECT_EQ(stats.closed_steps(), 1);
  EXPECT_EQ(stats.window_fill(), 1);
}

TEST(RoutingStatsTest, WindowExpiresOldestStep) {
  RoutingStats stats = NewStats();
  Add(&stats, kStep1RankA);
  Add(&stats, kStep1RankB);
  stats.EndStep();
  Add(&stats, kStep2);
  stats.EndStep();
  Add(&stats, kStep3);
  // The open step counts before EndStep: steps 1-3 all in.
  EXPECT_EQ(stats.Window().tokens, 5);
  stats.EndStep();  // step 1 leaves the 2-step window
  const RoutingWindow w = stats.Window();
  EXPECT_EQ(w.tokens, 2);
  EXPECT_EQ(w.counts, (Matrix{{1, 0, 1, 2}, {1, 1, 1, 1}}));
  EXPECT_EQ(w.transitions, (Matrix{{0, 0, 1, 1,  //
                                    0, 0, 0, 0,  //
                                    1, 1, 0, 0,  //
                                    1, 1, 1, 1}}));
  EXPECT_EQ(stats.WindowRankPairs(), (Matrix{{2, 2}, {2, 2}}));
  EXPECT_DOUBLE_EQ(stats.WindowExpertImbalance()[0], 2.0);
  EXPECT_DOUBLE_EQ(stats.WindowExpertImbalance()[1], 1.0);
  EXPECT_DOUBLE_EQ(stats.WindowRankImbalance()[0], 1.0);
  EXPECT_EQ(stats.window_fill(), 2);
  EXPECT_EQ(stats.closed_steps(), 3);

  const RoutingWindow c = stats.Cumulative();
  EXPECT_EQ(c.tokens, 5);
  EXPECT_EQ(c.counts, (Matrix{{3, 2, 2, 3}, {2, 2, 3, 3}}));
  EXPECT_EQ(stats.CumulativeRankPairs(), (Matrix{{6, 4}, {4, 6}}));
  int64_t total = 0;
  for (int64_t v : c.transitions[0]) total += v;
  EXPECT_EQ(total, 5 * 2 * 2);

  // Two empty steps empty the window; the cumulative stays.
  stats.EndStep();
  stats.EndStep();
  EXPECT_EQ(stats.Window().tokens, 0);
  EXPECT_EQ(stats.Window().counts, (Matrix{{0, 0, 0, 0}, {0, 0, 0, 0}}));
  EXPECT_EQ(stats.WindowExpertImbalance(), (std::vector<double>{0, 0}));
  EXPECT_EQ(stats.Cumulative().tokens, 5);
}

TEST(RoutingStatsTest, SingleRankNeedsNoRanks) {
  RoutingStats stats({0}, 3, 1, 1, 4);
  const std::vector<std::vector<int32_t>> experts = {{2, 2, 0}};
  stats.AddStep(3, experts, {});
  stats.AddStep(0, {}, {});  // an idle rank's empty batch
  stats.EndStep();
  EXPECT_EQ(stats.Window().counts, (Matrix{{1, 0, 2}}));
  EXPECT_TRUE(stats.Window().transitions.empty());  // one MoE layer: no layer pairs
  EXPECT_EQ(stats.WindowRankPairs(), (Matrix{{3}}));
}

TEST(RoutingStatsTest, RecordsWindowsOfNSteps) {
  RoutingStats stats = NewStats();
  stats.StartRecording(2);
  EXPECT_TRUE(stats.recording());
  Add(&stats, kStep1RankA);
  Add(&stats, kStep1RankB);
  stats.EndStep();
  Add(&stats, kStep2);
  stats.EndStep();
  Add(&stats, kStep3);
  stats.EndStep();
  RoutingTrace trace = stats.TakeRecordedTrace();
  EXPECT_EQ(trace.layers, (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(trace.num_experts, 4);
  EXPECT_EQ(trace.top_k, 2);
  EXPECT_TRUE(trace.Validate().ok()) << trace.Validate().ToString();
  ASSERT_EQ(trace.windows.size(), 2u);  // steps 1-2, and the partial window of step 3
  EXPECT_EQ(trace.windows[0].tokens, 4);
  EXPECT_EQ(trace.windows[0].counts, (Matrix{{2, 2, 2, 2}, {2, 2, 2, 2}}));
  EXPECT_EQ(trace.windows[1].tokens, 1);
  EXPECT_EQ(trace.windows[1].counts, (Matrix{{1, 0, 0, 1}, {0, 0, 1, 1}}));
  EXPECT_EQ(trace.windows[1].transitions, (Matrix{{0, 0, 1, 1,  //
                                                   0, 0, 0, 0,  //
                                                   0, 0, 0, 0,  //
                                                   0, 0, 1, 1}}));
  StatusOr<RoutingTrace> back = RoutingTrace::FromJson(trace.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->Total().counts, (Matrix{{3, 2, 2, 3}, {2, 2, 3, 3}}));

  EXPECT_TRUE(stats.TakeRecordedTrace().windows.empty());
  Add(&stats, kStep2);
  stats.EndStep();
  EXPECT_EQ(stats.TakeRecordedTrace().windows.size(), 1u);
}

TEST(RoutingStatsTest, JsonForAdminEndpoint) {
  RoutingStats stats = NewStats();
  Add(&stats, kStep1RankA);
  Add(&stats, kStep1RankB);
  stats.EndStep();
  Add(&stats, kStep2);
  stats.EndStep();
  Add(&stats, kStep3);
  stats.EndStep();
  const nlohmann::json brief = nlohmann::json::parse(stats.ToJson(false));
  EXPECT_EQ(brief["layers"], nlohmann::json({1, 3}));
  EXPECT_EQ(brief["num_ranks"], 2);
  EXPECT_EQ(brief["window_steps"], 2);
  EXPECT_EQ(brief["steps"], 3);
  EXPECT_EQ(brief["window"]["tokens"], 2);
  EXPECT_EQ(brief["window"]["counts"], nlohmann::json({{1, 0, 1, 2}, {1, 1, 1, 1}}));
  EXPECT_EQ(brief["window"]["rank_pairs"], nlohmann::json({{2, 2}, {2, 2}}));
  EXPECT_DOUBLE_EQ(brief["window"]["expert_imbalance"][0].get<double>(), 2.0);
  EXPECT_EQ(brief["cumulative"]["tokens"], 5);
  EXPECT_EQ(brief["cumulative"]["rank_pairs"], nlohmann::json({{6, 4}, {4, 6}}));
  EXPECT_DOUBLE_EQ(brief["cumulative"]["rank_imbalance"][1].get<double>(), 6.0 / 5);
  EXPECT_FALSE(brief["window"].contains("transitions"));
  const nlohmann::json full = nlohmann::json::parse(stats.ToJson(true));
  EXPECT_EQ(full["window"]["transitions"][0][15], 1);  // (3, 3): step 3
  EXPECT_EQ(full["cumulative"]["transitions"][0].size(), 16u);
}

// Random steps against a recount of the window's steps from scratch.
TEST(RoutingStatsTest, MatchesBruteForceRecount) {
  constexpr int kLayers = 3, kExperts = 6, kTopK = 3, kRanks = 3, kWindow = 4;
  RoutingStats stats({0, 1, 2}, kExperts, kTopK, kRanks, kWindow);
  std::mt19937 rng(7);
  std::vector<std::vector<Batch>> history;
  for (int step = 0; step < 25; ++step) {
    history.emplace_back();
    for (int rank = 0; rank < kRanks; ++rank) {
      const int64_t tokens = rng() % 4;
      Batch b{tokens, std::vector<std::vector<int32_t>>(kLayers),
              std::vector<std::vector<int32_t>>(kLayers)};
      for (int l = 0; l < kLayers; ++l) {
        for (int64_t t = 0; t < tokens; ++t) {
          std::vector<int32_t> all = {0, 1, 2, 3, 4, 5};
          std::shuffle(all.begin(), all.end(), rng);
          for (int c = 0; c < kTopK; ++c) {
            b.experts[l].push_back(all[c]);
            b.ranks[l].push_back(static_cast<int32_t>(rng() % kRanks));
          }
        }
      }
      Add(&stats, b);
      history.back().push_back(std::move(b));
    }
    stats.EndStep();

    Matrix counts(kLayers, std::vector<int64_t>(kExperts));
    Matrix pairs(kLayers, std::vector<int64_t>(kRanks));
    Matrix transitions(kLayers - 1, std::vector<int64_t>(kExperts * kExperts));
    int64_t tokens = 0;
    for (size_t s = history.size() > kWindow ? history.size() - kWindow : 0; s < history.size();
         ++s) {
      for (const Batch& b : history[s]) {
        tokens += b.tokens;
        for (int l = 0; l < kLayers; ++l) {
          for (size_t p = 0; p < b.experts[l].size(); ++p) {
            ++counts[l][b.experts[l][p]];
            ++pairs[l][b.ranks[l][p]];
          }
        }
        for (int l = 0; l + 1 < kLayers; ++l) {
          for (int64_t t = 0; t < b.tokens; ++t) {
            for (int x = 0; x < kTopK; ++x) {
              for (int y = 0; y < kTopK; ++y) {
                const int i = b.experts[l][t * kTopK + x], j = b.experts[l + 1][t * kTopK + y];
                ++transitions[l][i * kExperts + j];
              }
            }
          }
        }
      }
    }
    const RoutingWindow w = stats.Window();
    ASSERT_EQ(w.tokens, tokens) << "step " << step;
    ASSERT_EQ(w.counts, counts) << "step " << step;
    ASSERT_EQ(w.transitions, transitions) << "step " << step;
    ASSERT_EQ(stats.WindowRankPairs(), pairs) << "step " << step;
  }
}

}  // namespace
}  // namespace sy
