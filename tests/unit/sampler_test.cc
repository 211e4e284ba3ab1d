#include "engine/runner/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <sstream>
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

// --- Sweep over extreme parameters against a plain double-precision reference ---

constexpr double kInf = std::numeric_limits<double>::infinity();

// The penalised logits as documented: repetition penalty (divide positive, multiply negative)
// on prompt and output tokens, then frequency * count + presence on output tokens; each result
// saturated to the float range and stored as a float; masked (-inf) logits stay masked.
std::vector<double> ReferencePenalised(const std::vector<float>& logits, const SamplingParams& p,
                                       const std::set<int32_t>& seen,
                                       const std::map<int32_t, int>& counts) {
  auto store = [](double v) {
    return static_cast<double>(
        static_cast<float>(std::clamp(v, -double{FLT_MAX}, double{FLT_MAX})));
  };
  std::vector<double> l(logits.begin(), logits.end());
  for (size_t t = 0; t < l.size(); ++t) {
    if (l[t] == -kInf) continue;
    if (seen.count(static_cast<int32_t>(t)) && p.repetition_penalty != 1.0f) {
      l[t] = store(l[t] > 0 ? l[t] / p.repetition_penalty : l[t] * p.repetition_penalty);
    }
    auto c = counts.find(static_cast<int32_t>(t));
    if (c != counts.end() && (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)) {
      l[t] = store(l[t] - double{p.frequency_penalty} * c->second - p.presence_penalty);
    }
  }
  return l;
}

// The lowest id among the largest penalised logits.
int32_t ReferenceArgmax(const std::vector<double>& l) {
  int32_t best = 0;
  for (size_t t = 1; t < l.size(); ++t) {
    if (l[t] > l[best]) best = static_cast<int32_t>(t);
  }
  return best;
}

// The tokens a draw may return: nonzero probability at temperature T, within the top k (ties at
// the k-th logit all allowed), at least min_p times the top probability, and inside the nucleus
// (the mass of strictly more likely kept tokens is below top_p). Tolerances of 1e-9 allow for
// rounding at the boundaries.
std::set<int32_t> ReferenceSupport(const std::vector<double>& l, const SamplingParams& p) {
  std::vector<double> finite;
  for (double v : l) {
    if (v > -kInf) finite.push_back(v);
  }
  std::sort(finite.rbegin(), finite.rend());
  const double top = finite[0];
  const bool cut = p.top_k > 0 && static_cast<size_t>(p.top_k) < finite.size();
  const double kth = cut ? finite[p.top_k - 1] : -kInf;
  std::vector<double> prob(l.size(), 0.0);
  for (size_t t = 0; t < l.size(); ++t) {
    if (l[t] > -kInf && l[t] >= kth) prob[t] = std::exp((l[t] - top) / p.temperature);
  }
  for (double& q : prob) {
    if (q < p.min_p * (1 - 1e-9)) q = 0.0;  // the top probability is exp(0) = 1
  }
  double total = 0.0;
  for (double q : prob) total += q;
  std::set<int32_t> support;
  for (size_t t = 0; t < l.size(); ++t) {
    if (prob[t] == 0.0) continue;
    double above = 0.0;
    for (double q : prob) {
      if (q > prob[t]) above += q;
    }
    if (above < p.top_p * total * (1 + 1e-9)) support.insert(static_cast<int32_t>(t));
  }
  return support;
}

std::string Describe(const SamplingParams& p, const std::vector<float>& logits, int step) {
  std::ostringstream s;
  s << "T=" << p.temperature << " top_k=" << p.top_k << " top_p=" << p.top_p << " min_p=" << p.min_p
    << " rep=" << p.repetition_penalty << " pres=" << p.presence_penalty
    << " freq=" << p.frequency_penalty << " seed=" << *p.seed << " step=" << step << " logits=";
  for (float v : logits) s << v << ",";
  return s.str();
}

// Reported logprobs are log-softmax of the raw logits: finite, or -inf exactly where the
// probability is zero in double precision or beyond the float range.
void CheckLogprob(float got, int32_t token, const std::vector<float>& raw,
                  const std::string& where) {
  const double m = *std::max_element(raw.begin(), raw.end());
  double z = 0.0;
  for (float v : raw) z += std::exp(static_cast<double>(v) - m);
  const double want = m == -kInf ? -kInf : static_cast<double>(raw[token]) - m - std::log(z);
  ASSERT_FALSE(std::isnan(got)) << where;
  if (want < -double{FLT_MAX}) {
    EXPECT_EQ(got, -std::numeric_limits<float>::infinity()) << where;
  } else {
    ASSERT_TRUE(std::isfinite(got)) << where;
    EXPECT_NEAR(got, want, 1e-5 * std::max(1.0, std::abs(want))) << where;
  }
}

TEST(Sampler, ExtremeParametersStayInTheReferenceSupport) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<std::vector<float>> logit_sets = {
      {1.0f, 3.0f, 2.0f, -1.0f, 0.5f, 2.9f},
      {1e30f, -1e30f, 5e29f, 3e38f, 0.0f, -3e38f},
      {1e-30f, 2e-30f, -1e-30f, 0.0f, 1e-38f, 1.5e-30f},
      {2.0f, 2.0f, 1.0f, 2.0f, -5.0f, 1.0f},
      {-inf, 1.0f, -inf, 0.5f, 3.0f, -inf},
      {-inf, 1e30f, -1e30f, 1e-30f, -inf, 1e30f},
      {-inf, -inf, 7.0f, -inf},
  };
  const std::vector<int32_t> prompt = {0, 1, 3};
  int checked = 0;
  for (const auto& logits : logit_sets) {
    for (float temperature : {0.0f, 1e-40f, 1e-6f, 1e-5f, 1e-3f, 1.0f, 2.0f, FLT_MAX}) {
      for (int32_t top_k : {1, 2, 0}) {
        for (float top_p : {1e-6f, 1.0f}) {
          for (float min_p : {0.0f, 0.99f}) {
            for (float rep : {std::numeric_limits<float>::denorm_min(), 1.0f, FLT_MAX}) {
              for (float pres : {-2.0f, 0.0f, 2.0f}) {
                for (float freq : {-2.0f, 0.0f, 2.0f}) {
                  for (uint64_t seed : {1u, 2u}) {
                    SamplingParams p;
                    p.temperature = temperature;
                    p.top_k = top_k;
                    p.top_p = top_p;
                    p.min_p = min_p;
                    p.repetition_penalty = rep;
                    p.presence_penalty = pres;
                    p.frequency_penalty = freq;
                    p.seed = seed;
                    p.logprobs = 3;
                    ASSERT_TRUE(p.Validate().ok());
                    Sampler sampler(p, prompt);
                    std::set<int32_t> seen(prompt.begin(), prompt.end());
                    std::map<int32_t, int> counts;
                    for (int step = 0; step < 3; ++step) {
                      const std::string where = Describe(p, logits, step);
                      const std::vector<double> l = ReferencePenalised(logits, p, seen, counts);
                      std::vector<float> scratch = logits;
                      const SampledToken got = sampler.Sample(scratch);
                      ASSERT_GE(got.token, 0) << where;
                      ASSERT_LT(got.token, static_cast<int32_t>(logits.size())) << where;
                      ASSERT_GT(l[got.token], -kInf) << where;
                      if (temperature < 1e-5f) {
                        ASSERT_EQ(got.token, ReferenceArgmax(l)) << where;
                      } else {
                        ASSERT_TRUE(ReferenceSupport(l, p).count(got.token))
                            << where << " token=" << got.token;
                      }
                      CheckLogprob(got.logprob, got.token, logits, where);
                      ASSERT_EQ(got.top.size(), 3u) << where;
                      for (const TokenLogprob& t : got.top) {
                        CheckLogprob(t.logprob, t.token, logits, where);
                      }
                      if (HasFailure()) return;
                      seen.insert(got.token);
                      ++counts[got.token];
                      ++checked;
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 7 * 8 * 3 * 2 * 2 * 3 * 3 * 3 * 2 * 3);
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
