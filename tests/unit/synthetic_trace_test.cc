// Synthetic routing traces: shapes and sums, determinism, Zipf skew against the closed form,
// inter-layer affinity and drift, each checked through properties the trace must show.
#include "engine/moe/synthetic_trace.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace sy {
namespace {

SyntheticTraceOptions Small() {
  SyntheticTraceOptions o;
  o.num_layers = 3;
  o.num_experts = 8;
  o.top_k = 2;
  o.num_windows = 2;
  o.tokens_per_window = 500;
  return o;
}

RoutingTrace Generate(const SyntheticTraceOptions& o) {
  StatusOr<RoutingTrace> trace = GenerateSyntheticTrace(o);
  EXPECT_TRUE(trace.ok()) << trace.status().ToString();
  return trace.ok() ? std::move(trace).value() : RoutingTrace{};
}

int64_t Sum(const std::vector<int64_t>& v) {
  return std::accumulate(v.begin(), v.end(), int64_t{0});
}

double MaxOverMean(const std::vector<int64_t>& counts) {
  return *std::max_element(counts.begin(), counts.end()) /
         (static_cast<double>(Sum(counts)) / counts.size());
}

// Spearman rank correlation (no ties expected at these counts).
double RankCorrelation(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  const auto ranks = [](const std::vector<int64_t>& v) {
    std::vector<int> idx(v.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](int x, int y) { return v[x] < v[y]; });
    std::vector<double> r(v.size());
    for (size_t i = 0; i < idx.size(); ++i) r[idx[i]] = static_cast<double>(i);
    return r;
  };
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  double d2 = 0;
  for (size_t i = 0; i < a.size(); ++i) d2 += (ra[i] - rb[i]) * (ra[i] - rb[i]);
  const double n = static_cast<double>(a.size());
  return 1 - 6 * d2 / (n * (n * n - 1));
}

TEST(SyntheticTraceTest, ShapesAndSums) {
  const SyntheticTraceOptions o = Small();
  const RoutingTrace trace = Generate(o);
  EXPECT_EQ(trace.layers, (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(trace.num_experts, 8);
  EXPECT_EQ(trace.top_k, 2);
  EXPECT_TRUE(trace.Validate().ok());
  ASSERT_TRUE(trace.has_transitions());
  ASSERT_EQ(trace.windows.size(), 2u);
  for (const RoutingWindow& w : trace.windows) {
    EXPECT_EQ(w.tokens, 500);
    ASSERT_EQ(w.counts.size(), 3u);
    for (const auto& layer : w.counts) EXPECT_EQ(Sum(layer), 500 * 2);
    ASSERT_EQ(w.transitions.size(), 2u);
    for (size_t l = 0; l < 2; ++l) {
      const std::vector<int64_t>& m = w.transitions[l];
      ASSERT_EQ(m.size(), 64u);
      EXPECT_EQ(Sum(m), 500 * 2 * 2);
      // Full co-activation: a token at expert i pairs with each of its k next-layer choices,
      // so row i sums to k * counts[l][i] and column j to k * counts[l + 1][j].
      for (int i = 0; i < 8; ++i) {
        int64_t row = 0, column = 0;
        for (int j = 0; j < 8; ++j) row += m[i * 8 + j], column += m[j * 8 + i];
        EXPECT_EQ(row, 2 * w.counts[l][i]);
        EXPECT_EQ(column, 2 * w.counts[l + 1][i]);
      }
    }
  }
}

TEST(SyntheticTraceTest, SingleLayerHasNoTransitions) {
  SyntheticTraceOptions o = Small();
  o.num_layers = 1;
  const RoutingTrace trace = Generate(o);
  EXPECT_TRUE(trace.Validate().ok());
  EXPECT_FALSE(trace.has_transitions());
}

TEST(SyntheticTraceTest, DeterministicPerSeed) {
  SyntheticTraceOptions o = Small();
  o.drift = 0.5;
  const std::string a = Generate(o).ToJson();
  EXPECT_EQ(Generate(o).ToJson(), a);
  o.seed = 2;
  EXPECT_NE(Generate(o).ToJson(), a);
}

TEST(SyntheticTraceTest, ZeroExponentIsUniform) {
  SyntheticTraceOptions o;
  o.num_layers = 4;
  o.num_experts = 16;
  o.top_k = 4;
  o.zipf_exponent = 0;
  o.affinity = 0.5;
  o.tokens_per_window = 8000;
  const RoutingTrace trace = Generate(o);
  const double expected = 8000.0 * 4 / 16;
  for (const auto& layer : trace.windows[0].counts) {
    double chi2 = 0;
    for (int64_t c : layer) chi2 += (c - expected) * (c - expected) / expected;
    // 15 degrees of freedom: mean 15, P(chi2 > 40) < 0.001 (and drawing without replacement
    // only lowers the variance).
    EXPECT_LT(chi2, 40.0);
  }
}

TEST(SyntheticTraceTest, TopOneMatchesZipfClosedForm) {
  // k = 1, no affinity: each token picks expert of rank r with probability r^-s / H(E, s).
  SyntheticTraceOptions o;
  o.num_layers = 2;
  o.num_experts = 8;
  o.top_k = 1;
  o.zipf_exponent = 1.0;
  o.affinity = 0;
  o.tokens_per_window = 20000;
  const RoutingTrace trace = Generate(o);
  double harmonic = 0;
  for (int r = 1; r <= 8; ++r) harmonic += 1.0 / r;
  for (const auto& layer : trace.windows[0].counts) {
    std::vector<int64_t> sorted = layer;
    std::sort(sorted.rbegin(), sorted.rend());
    for (int r = 0; r < 8; ++r) {
      const double p = 1.0 / (r + 1) / harmonic;
      const double sd = std::sqrt(20000 * p * (1 - p));
      // Sorting can swap neighbours whose expectations are close; 5 sd covers that.
      EXPECT_NEAR(sorted[r], 20000 * p, 5 * sd) << "rank " << r;
    }
  }
}

TEST(SyntheticTraceTest, LargerExponentMeansMoreSkew) {
  SyntheticTraceOptions o;
  o.num_layers = 2;
  o.num_experts = 64;
  o.top_k = 8;
  o.affinity = 0;
  o.tokens_per_window = 2000;
  double previous = 0;
  for (double s : {0.0, 0.5, 1.0, 1.5}) {
    o.zipf_exponent = s;
    const double skew = MaxOverMean(Generate(o).windows[0].counts[0]);
    EXPECT_GT(skew, previous) << "s = " << s;
    previous = skew;
  }
  EXPECT_GT(previous, 3.0);
  EXPECT_LE(previous, 64.0 / 8);  // an expert gets at most one of a token's k choices
}

TEST(SyntheticTraceTest, AffinityConcentratesTransitions) {
  SyntheticTraceOptions o;
  o.num_layers = 3;
  o.num_experts = 16;
  o.top_k = 4;
  o.zipf_exponent = 0.5;
  o.tokens_per_window = 3000;
  // Share of row i's pairs that go to its single most frequent successor, averaged over rows.
  const auto mean_top_share = [](const RoutingWindow& w, int l) {
    double total = 0;
    for (int i = 0; i < 16; ++i) {
      const auto row = w.transitions[l].begin() + i * 16;
      total += static_cast<double>(*std::max_element(row, row + 16)) / Sum({row, row + 16});
    }
    return total / 16;
  };
  o.affinity = 1;
  const RoutingTrace follow = Generate(o);
  const RoutingWindow& w = follow.windows[0];
  for (int l = 0; l < 2; ++l) {
    // Every token at expert i has i's successor among its next choices: that cell equals the
    // count of i, which is 1/k of the row.
    for (int i = 0; i < 16; ++i) {
      const auto row = w.transitions[l].begin() + i * 16;
      EXPECT_EQ(*std::max_element(row, row + 16), w.counts[l][i]);
    }
    // And the next layer's counts are the same multiset, permuted.
    std::vector<int64_t> a = w.counts[l], b = w.counts[l + 1];
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    EXPECT_EQ(a, b);
    EXPECT_NEAR(mean_top_share(w, l), 0.25, 1e-9);
  }
  o.affinity = 0;
  const RoutingTrace independent = Generate(o);
  for (int l = 0; l < 2; ++l) EXPECT_LT(mean_top_share(independent.windows[0], l), 0.15);
}

TEST(SyntheticTraceTest, DriftChangesPopularityOrder) {
  SyntheticTraceOptions o;
  o.num_layers = 2;
  o.num_experts = 16;
  o.top_k = 2;
  o.zipf_exponent = 1.2;
  o.affinity = 0;
  o.num_windows = 3;
  o.tokens_per_window = 20000;
  o.drift = 0;
  const RoutingTrace steady = Generate(o);
  for (int w = 1; w < 3; ++w) {
    for (int l = 0; l < 2; ++l) {
      EXPECT_GT(RankCorrelation(steady.windows[0].counts[l], steady.windows[w].counts[l]), 0.95);
    }
  }
  o.drift = 1;
  const RoutingTrace drifting = Generate(o);
  double correlation = 0;
  for (int w = 1; w < 3; ++w) {
    for (int l = 0; l < 2; ++l) {
      correlation +=
          RankCorrelation(drifting.windows[w - 1].counts[l], drifting.windows[w].counts[l]);
    }
  }
  EXPECT_LT(correlation / 4, 0.5);
}

TEST(SyntheticTraceTest, RejectsImpossibleOptions) {
  const auto rejected = [](auto mutate) {
    SyntheticTraceOptions o = Small();
    mutate(o);
    return GenerateSyntheticTrace(o).status().code() == StatusCode::kInvalidArgument;
  };
  EXPECT_TRUE(rejected([](SyntheticTraceOptions& o) { o.top_k = 9; }));
  EXPECT_TRUE(rejected([](SyntheticTraceOptions& o) { o.top_k = 0; }));
  EXPECT_TRUE(rejected([](SyntheticTraceOptions& o) { o.num_layers = 0; }));
  EXPECT_TRUE(rejected([](SyntheticTraceOptions& o) { o.num_experts = 0; }));
  EXPECT_TRUE(rejected([](SyntheticTraceOptions& o) { o.tokens_per_window = -1; }));
  EXPECT_TRUE(rejected([](SyntheticTraceOptions& o) { o.num_windows = -1; }));
  EXPECT_TRUE(rejected([](SyntheticTraceOptions& o) { o.affinity = 1.5; }));
  EXPECT_TRUE(rejected([](SyntheticTraceOptions& o) { o.drift = -0.1; }));
  EXPECT_TRUE(rejected([](SyntheticTraceOptions& o) { o.zipf_exponent = -1; }));
  EXPECT_TRUE(rejected([](SyntheticTraceOptions& o) { o.zipf_exponent = std::nan(""); }));
}

TEST(SyntheticTraceTest, TopKEqualsExpertsWithSteepSkew) {
  // Every token takes every expert; the rejection sampler must fall back, not loop.
  SyntheticTraceOptions o = Small();
  o.top_k = 8;
  o.zipf_exponent = 8;
  const RoutingTrace trace = Generate(o);
  for (const auto& layer : trace.windows[0].counts) {
    EXPECT_EQ(layer, std::vector<int64_t>(8, 500));
  }
}

}  // namespace
}  // namespace sy
