// Batch invariance: a sequence's logits do not depend on which other sequences share its steps,
// on the KV-cache block size, or on how its prompt is chunked across steps.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/common/test_model.h"

namespace sy {
namespace {

constexpr float kTolerance = 1e-5f;

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

class BatchInvarianceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BatchInvarianceTest, LogitsAloneEqualLogitsBatched) {
  const auto dir = std::filesystem::path(testing::GoldenDir()) / "models" / GetParam();
  const auto prompts = testing::GoldenPrompts(dir);
  ASSERT_GE(prompts.size(), 2u);

  testing::LoadedModel alone = testing::LoadForTest(dir.string(), /*block_size=*/16);
  ASSERT_NE(alone.runner, nullptr);
  Generator ga(alone.runner.get());
  std::vector<std::vector<float>> reference;
  for (const auto& p : prompts) {
    auto r = ga.PromptLogits({&p, 1});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    reference.push_back((*r)[0]);
  }

  // Several block sizes, and token budgets small enough to split prompts across steps (so
  // chunks of one prompt share steps with other prompts' chunks).
  for (int block_size : {1, 3, 16, 32}) {
    for (int64_t budget : {int64_t{256}, int64_t{7}}) {
      testing::LoadedModel m = testing::LoadForTest(dir.string(), block_size, budget);
      ASSERT_NE(m.runner, nullptr);
      Generator g(m.runner.get());
      auto batched = g.PromptLogits(prompts);
      ASSERT_TRUE(batched.ok()) << batched.status().ToString();
      size_t total = 0;
      for (const auto& p : prompts) total += p.size();
      if (budget < 256) {
        EXPECT_GE(g.last_steps(), static_cast<int64_t>(total) / budget);
      }
      for (size_t i = 0; i < prompts.size(); ++i) {
        EXPECT_LE(MaxAbsDiff(reference[i], (*batched)[i]), kTolerance)
            << GetParam() << " prompt " << i << " block size " << block_size << " budget "
            << budget;
      }
    }
  }
}

TEST_P(BatchInvarianceTest, GreedyTokensAloneEqualTokensBatched) {
  const auto dir = std::filesystem::path(testing::GoldenDir()) / "models" / GetParam();
  const auto prompts = testing::GoldenPrompts(dir);
  std::vector<GenerationRequest> reqs;
  for (const auto& p : prompts) {
    GenerationRequest r;
    r.prompt = p;
    r.sampling.temperature = 0.0f;
    r.max_new_tokens = 24;
    reqs.push_back(r);
  }
  testing::LoadedModel alone = testing::LoadForTest(dir.string());
  ASSERT_NE(alone.runner, nullptr);
  std::vector<std::vector<int32_t>> reference;
  for (const auto& r : reqs) {
    Generator g(alone.runner.get());
    auto out = g.Generate({&r, 1});
    ASSERT_TRUE(out.ok());
    reference.push_back((*out)[0].tokens);
  }
  // A budget of 5 tokens mixes prompt chunks with other sequences' decode tokens.
  testing::LoadedModel m = testing::LoadForTest(dir.string(), /*block_size=*/4, /*budget=*/5);
  ASSERT_NE(m.runner, nullptr);
  Generator g(m.runner.get());
  auto out = g.Generate(reqs);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ((*out)[i].tokens, reference[i]) << i;
}

INSTANTIATE_TEST_SUITE_P(Models, BatchInvarianceTest,
                         ::testing::Values("mixtral", "qwen2_moe", "qwen3_moe", "olmoe"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sy
