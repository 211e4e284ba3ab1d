// The forward pass records, per MoE layer, how many tokens each expert received.
#include "engine/moe/expert_load.h"

#include <gtest/gtest.h>

#include <numeric>

#include "tests/common/test_model.h"

namespace sy {
namespace {

TEST(ExpertLoad, RecordsLastStepAndCumulative) {
  ExpertLoad load(2, 3);
  const std::vector<int64_t> a = {1, 0, 2}, b = {0, 4, 1};
  load.BeginStep();
  load.Record(0, a);
  load.Record(1, b);
  load.BeginStep();
  load.Record(0, b);
  EXPECT_EQ(std::vector<int64_t>(load.last_step(0).begin(), load.last_step(0).end()), b);
  EXPECT_EQ(load.last_step(1)[1], 0);
  EXPECT_EQ(std::vector<int64_t>(load.cumulative(0).begin(), load.cumulative(0).end()),
            (std::vector<int64_t>{1, 4, 3}));
}

TEST(ExpertLoad, ForwardCountsEveryTokenChoiceOfEveryMoeLayer) {
  // qwen2_moe has dense layers (0 and 2) and MoE layers (1 and 3).
  const auto dir = std::filesystem::path(testing::GoldenDir()) / "models" / "qwen2_moe";
  testing::LoadedModel m = testing::LoadForTest(dir.string());
  ASSERT_NE(m.runner, nullptr);
  const ModelConfig& c = m.model->config();
  const std::vector<int32_t> prompt = {5, 17, 3, 99, 42, 7, 7, 250, 1, 64, 300};
  Generator g(m.runner.get());
  ASSERT_TRUE(g.PromptLogits({&prompt, 1}).ok());
  const ExpertLoad& load = m.runner->expert_load();
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    const auto counts = load.last_step(layer);
    const int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t{0});
    if (c.layer_is_moe[layer]) {
      EXPECT_EQ(total, static_cast<int64_t>(prompt.size()) * c.num_experts_per_tok) << layer;
      // With top-2 over 4 experts and 11 tokens, no expert can take more than 11.
      for (int64_t n : counts) EXPECT_LE(n, static_cast<int64_t>(prompt.size()));
    } else {
      EXPECT_EQ(total, 0) << layer;
    }
  }
}

}  // namespace
}  // namespace sy
