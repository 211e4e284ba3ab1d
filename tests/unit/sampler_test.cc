#include "engine/runner/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

namespace sy {
namespace {

std::vector<float> Logits() { return {1.0f, 3.0f, 2.0f, -1.0f, 0.5f}; }

SampledToken SampleOnce(SamplingParams p, std::vector<float> logits,
                        std::vector<int32_t> prompt = {}) {
  Sampler s(p, prompt);
  return s.Sample(logits);
}

TEST(Sampler, GreedyPicksArgmax) {
  SamplingParams p;
  p.temperature = 0.0f;
  EXPECT_EQ(SampleOnce(p, Logits()).token, 1);
}

TEST(Sampler, TinyTemperatureIsGreedy) {
  // 1 / 1e-40 overflows a float; the sampler once drew the least likely token here.
  SamplingParams p;
  p.temperature = 1e-40f;
  for (int i = 0; i < 20; ++i) {
    p.seed = i;
    EXPECT_EQ(SampleOnce(p, Logits()).token, 1);
  }
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplingParams p;
  p.top_k = 1;
  p.seed = 7;
  for (int i = 0; i < 20; ++i) {
    p.seed = i;
    EXPECT_EQ(SampleOnce(p, Logits()).token, 1);
  }
}

TEST(Sampler, SameSeedSameTokens) {
  SamplingParams p;
  p.seed = 1234;
  Sampler a(p, {}), b(p, {});
  std::vector<int32_t> ta, tb;
  for (int i = 0; i < 50; ++i) {
    std::vector<float> la = Logits(), lb = Logits();
    ta.push_back(a.Sample(la).token);
    tb.push_back(b.Sample(lb).token);
  }
  EXPECT_EQ(ta, tb);
  // A different seed gives a different sequence (50 draws over 5 tokens).
  p.seed = 99;
  Sampler c(p, {});
  std::vector<int32_t> tc;
  for (int i = 0; i < 50; ++i) {
    std::vector<float> l = Logits();
    tc.push_back(c.Sample(l).token);
  }
  EXPECT_NE(ta, tc);
}

TEST(Sampler, FrequenciesFollowTheSoftmax) {
  // At temperature 1 the empirical frequencies approach softmax(logits).
  SamplingParams p;
  p.seed = 5;
  Sampler s(p, {});
  std::map<int32_t, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l = Logits();
    ++counts[s.Sample(l).token];
  }
  const std::vector<float> l = Logits();
  double z = 0;
  for (float v : l) z += std::exp(v);
  for (int t = 0; t < 5; ++t) {
    EXPECT_NEAR(counts[t] / static_cast<double>(n), std::exp(l[t]) / z, 0.015) << "token " << t;
  }
}

TEST(Sampler, TopPKeepsTheNucleus) {
  // softmax(Logits()) = [.084, .624, .229, .011, .051]: top_p 0.6 keeps token 1 only,
  // top_p 0.8 keeps tokens 1 and 2.
  SamplingParams p;
  p.top_p = 0.6f;
  for (int i = 0; i < 30; ++i) {
    p.seed = i;
    EXPECT_EQ(SampleOnce(p, Logits()).token, 1);
  }
  p.top_p = 0.8f;
  for (int i = 0; i < 60; ++i) {
    p.seed = i;
    const int32_t t = SampleOnce(p, Logits()).token;
    EXPECT_TRUE(t == 1 || t == 2) << t;
  }
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  // Relative to the top probability .624: token 2 is .368x, token 0 is .135x.
  SamplingParams p;
  p.min_p = 0.2f;
  for (int i = 0; i < 60; ++i) {
    p.seed = i;
    const int32_t t = SampleOnce(p, Logits()).token;
    EXPECT_TRUE(t == 1 || t == 2) << t;
  }
}

TEST(Sampler, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  // Token 1 (logit 3) is in the prompt: 3 / 4 = 0.75 < 2, so greedy moves to token 2.
  SamplingParams p;
  p.temperature = 0.0f;
  p.repetition_penalty = 4.0f;
  EXPECT_EQ(SampleOnce(p, Logits(), {1}).token, 2);
  // A negative logit gets more negative: token 3 at -1 * 4 stays last, token 1 still wins
  // without it in the prompt.
  EXPECT_EQ(SampleOnce(p, Logits(), {3}).token, 1);
}

TEST(Sampler, PresenceAndFrequencyPenaltiesApplyToOutputOnly) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.frequency_penalty = 0.6f;
  const std::vector<int32_t> prompt = {1, 1, 1};  // prompt tokens are not penalised by frequency
  Sampler s(p, prompt);
  std::vector<float> l = Logits();
  EXPECT_EQ(s.Sample(l).token, 1);  // 3.0
  l = Logits();
  EXPECT_EQ(s.Sample(l).token, 1);  // 3.0 - 0.6 = 2.4 > 2
  l = Logits();
  EXPECT_EQ(s.Sample(l).token, 2);  // 3.0 - 1.2 = 1.8 < 2
  SamplingParams q;
  q.temperature = 0.0f;
  q.presence_penalty = 1.5f;
  Sampler r(q, {});
  l = Logits();
  EXPECT_EQ(r.Sample(l).token, 1);
  l = Logits();
  EXPECT_EQ(r.Sample(l).token, 2);  // 3.0 - 1.5 = 1.5 < 2
}

TEST(Sampler, LogprobsAreTheRawLogSoftmax) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.logprobs = 2;
  p.repetition_penalty = 4.0f;  // changes the choice, not the reported distribution
  const SampledToken t = SampleOnce(p, Logits(), {1});
  const std::vector<float> l = Logits();
  double z = 0;
  for (float v : l) z += std::exp(static_cast<double>(v));
  EXPECT_EQ(t.token, 2);
  EXPECT_NEAR(t.logprob, 2.0 - std::log(z), 1e-5);
  ASSERT_EQ(t.top.size(), 2u);
  EXPECT_EQ(t.top[0].token, 1);
  EXPECT_NEAR(t.top[0].logprob, 3.0 - std::log(z), 1e-5);
  EXPECT_EQ(t.top[1].token, 2);
}

TEST(Sampler, ValidateRejectsOutOfRange) {
  auto bad = [](auto mutate) {
    SamplingParams p;
    mutate(p);
    return p.Validate();
  };
  EXPECT_TRUE(bad([](SamplingParams&) {}).ok());
  EXPECT_EQ(bad([](SamplingParams& p) { p.temperature = -1; }).code(),
            StatusCode::kInvalidArgument);
  EXPECT_FALSE(bad([](SamplingParams& p) { p.temperature = NAN; }).ok());
  EXPECT_FALSE(bad([](SamplingParams& p) { p.top_p = 0; }).ok());
  EXPECT_FALSE(bad([](SamplingParams& p) { p.top_p = 1.5f; }).ok());
  EXPECT_FALSE(bad([](SamplingParams& p) { p.min_p = -0.1f; }).ok());
  EXPECT_FALSE(bad([](SamplingParams& p) { p.top_k = -2; }).ok());
  EXPECT_FALSE(bad([](SamplingParams& p) { p.repetition_penalty = 0; }).ok());
  EXPECT_FALSE(bad([](SamplingParams& p) { p.presence_penalty = 2.5f; }).ok());
  EXPECT_FALSE(bad([](SamplingParams& p) { p.frequency_penalty = -3; }).ok());
  EXPECT_FALSE(bad([](SamplingParams& p) { p.logprobs = 21; }).ok());
}

}  // namespace
}  // namespace sy
