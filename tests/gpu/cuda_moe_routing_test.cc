// The MoE routing kernels of kernels/cuda/moe_routing.cu against sy::cpu::ref: route (same ids,
// weights within kWeightTol; softmax, and sigmoid with bias and group limits), sort_by_expert
// (bit for bit) and combine_experts, over many shapes with poisoned outputs, determinism and
// batch invariance. Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cuda/ops.h"
#include "tests/gpu/gpu_testing.h"

namespace sy {
namespace {

using gpu_testing::DeviceArray;
using gpu_testing::DeviceOk;

template <typename T>
::testing::AssertionResult BitEqual(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  }
  size_t bad = 0;
  size_t first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0 && bad++ == 0) first = i;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream out;
  out.precision(9);
  out << bad << " of " << got.size() << " differ; first at " << first << ": got " << got[first]
      << ", want " << want[first];
  return ::testing::AssertionFailure() << out.str();
}

::testing::AssertionResult Close(const std::vector<float>& got, const std::vector<float>& want,
                                 cpu::Tolerance tol, int64_t row_len = 0) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  }
  const std::string diff =
      cpu::compare_close(got.data(), want.data(), static_cast<int64_t>(got.size()), tol, row_len);
  if (diff.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << diff;
}

// --- route ---

// Router logits on a grid of 2^-8: equal logits are exact ties (broken by the lower id on both
// sides), and different ones are far apart, so no probability is within rounding of another
// and the GPU's exp (a few ulp from the CPU's) cannot change the order. `levels` small: many ties.
std::vector<float> RouterLogits(int64_t tokens, int64_t experts, int levels, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(-levels, levels);
  std::vector<float> logits(tokens * experts);
  for (float& v : logits) v = static_cast<float>(dist(rng)) / 256.0f;
  return logits;
}

// The GPU's expf is within 2 ulp of the CPU's, and the softmax sums up to 512 of those values in
// f32 in the reference's order: a 1-ulp change in one term can change the rounding of every later
// partial sum, so the sum (and so each weight) may move by ~sqrt(n) * 2^-24, about 1.5e-6 for 512
// experts (seen in emulation with 2-ulp expf noise). 2e-5 bounds it; real bugs are far larger.
constexpr cpu::Tolerance kWeightTol = {0.0, 2e-5};

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

// args.correction_bias, when set, points to host memory: it is uploaded for the GPU.
Routed RunRoute(const std::vector<float>& logits, int64_t tokens, int64_t experts,
                const cpu::RouterArgs& args) {
  DeviceArray<float> d_logits(logits);
  const int64_t bias_size = args.correction_bias != nullptr ? experts : 0;
  DeviceArray<float> d_bias(
      std::vector<float>(args.correction_bias, args.correction_bias + bias_size));
  DeviceArray<int32_t> d_ids(tokens * args.k);
  DeviceArray<float> d_weights(tokens * args.k);
  d_ids.Poison();
  d_weights.Poison();
  cpu::RouterArgs device_args = args;
  device_args.correction_bias = args.correction_bias != nullptr ? d_bias.get() : nullptr;
  const cudaError_t err = cuda::route(d_logits.get(), tokens, experts, device_args, d_ids.get(),
                                      d_weights.get(), nullptr);
  EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  EXPECT_TRUE(DeviceOk());
  return {d_ids.Download(), d_weights.Download()};
}

Routed RunReference(const std::vector<float>& logits, int64_t tokens, int64_t experts,
                    const cpu::RouterArgs& args) {
  Routed want{std::vector<int32_t>(tokens * args.k), std::vector<float>(tokens * args.k)};
  cpu::ref::route(logits.data(), tokens, experts, args, want.ids.data(), want.weights.data());
  return want;
}

cpu::RouterArgs Softmax(int k, bool renormalize) {
  cpu::RouterArgs args;
  args.k = k;
  args.renormalize = renormalize;
  return args;
}

struct RouteCase {
  int64_t tokens, experts;
  int k;
};
constexpr RouteCase kRouteCases[] = {{1, 8, 2},     {37, 8, 2},    {100, 64, 6}, {513, 128, 8},
                                     {64, 256, 8},  {33, 512, 16}, {10, 1, 1},   {5, 16, 16},
                                     {1000, 60, 4}, {7, 33, 3},    {3, 512, 1},  {129, 32, 8},
                                     {2, 511, 16},  {4096, 64, 8}, {9, 100, 12}};

TEST(CudaRoute, SoftmaxMatchesReference) {
  SY_REQUIRE_GPU();
  uint32_t seed = 1;
  for (const RouteCase& c : kRouteCases) {
    for (int levels : {2, 1000}) {
      for (bool renormalize : {false, true}) {
        SCOPED_TRACE(::testing::Message()
                     << "tokens " << c.tokens << " experts " << c.experts << " k " << c.k
                     << " levels " << levels << " renormalize " << renormalize);
        const std::vector<float> logits = RouterLogits(c.tokens, c.experts, levels, seed++);
        const cpu::RouterArgs args = Softmax(c.k, renormalize);
        const Routed want = RunReference(logits, c.tokens, c.experts, args);
        const Routed got = RunRoute(logits, c.tokens, c.experts, args);
        EXPECT_TRUE(BitEqual(got.ids, want.ids));
        EXPECT_TRUE(Close(got.weights, want.weights, kWeightTol, c.k));
      }
    }
  }
}

// The DeepSeek-V2/V3, GLM-4.5 and Kimi K2 settings: sigmoid scores with a correction bias (on a
// grid of 1/64 in [-1/4, 1/4]), group limits, scaling.
struct RouterSetting {
  const char* name;
  int64_t experts;
  cpu::RouterArgs args;
  bool bias;
};

std::vector<RouterSetting> RouterSettings() {
  std::vector<RouterSetting> settings;
  cpu::RouterArgs v3;  // DeepSeek-V3 (GLM-4.5 has the same rules at 160 experts, 1 group)
  v3.k = 8;
  v3.scoring = cpu::RouterScoring::kSigmoid;
  v3.renormalize = true;
  v3.scaling = 2.5f;
  v3.n_group = 8;
  v3.topk_group = 4;
  v3.group_scoring = cpu::GroupScoring::kTopTwoSum;
  settings.push_back({"deepseek_v3", 256, v3, true});
  cpu::RouterArgs kimi = v3;  // Kimi K2
  kimi.n_group = 1;
  kimi.topk_group = 1;
  kimi.scaling = 2.827f;
  settings.push_back({"kimi_k2", 384, kimi, true});
  cpu::RouterArgs glm = kimi;  // GLM-4.5
  glm.scaling = 1.0f;
  settings.push_back({"glm4_moe", 160, glm, true});
  cpu::RouterArgs sigmoid_plain = kimi;
  sigmoid_plain.renormalize = false;
  settings.push_back({"sigmoid_no_bias", 64, sigmoid_plain, false});
  cpu::RouterArgs masked = v3;  // 16 experts, 1 of 4 groups kept, k 8: masked experts chosen
  masked.n_group = 4;
  masked.topk_group = 1;
  settings.push_back({"masked_picks", 16, masked, true});
  cpu::RouterArgs v2;  // DeepSeek-V2: softmax, group max, scaled, not renormalised
  v2.k = 6;
  v2.scaling = 16.0f;
  v2.n_group = 8;
  v2.topk_group = 3;
  settings.push_back({"deepseek_v2", 160, v2, false});
  cpu::RouterArgs v2_lite = v2;  // DeepSeek-V2-Lite: greedy
  v2_lite.n_group = 1;
  v2_lite.topk_group = 1;
  v2_lite.scaling = 1.0f;
  settings.push_back({"deepseek_v2_lite", 64, v2_lite, false});
  return settings;
}

// The closest call in one token's routing, in double precision: the smallest nonzero gap
// between the last kept and the first dropped group score (n_group > 1) and between the k-th and
// (k+1)-th choice. Sigmoid scores plus a bias, and sums of two of them, have no grid: a gap
// within a few ulp is a near-tie that the GPU's expf (2 ulp from the CPU's) may decide the other
// way. Exact ties (gap 0: equal inputs) must still match, so they do not count.
double DecisionMargin(const float* logits, int64_t experts, const cpu::RouterArgs& args) {
  std::vector<double> scores(logits, logits + experts);
  if (args.scoring == cpu::RouterScoring::kSoftmax) {
    const double max = *std::max_element(scores.begin(), scores.end());
    double sum = 0;
    for (double& v : scores) sum += (v = std::exp(v - max));
    for (double& v : scores) v /= sum;
  } else {
    for (double& v : scores) v = 1 / (1 + std::exp(-v));
  }
  std::vector<double> choice(experts);
  for (int64_t e = 0; e < experts; ++e) {
    choice[e] = scores[e] + (args.correction_bias != nullptr ? args.correction_bias[e] : 0.0);
  }
  double margin = INFINITY;
  auto gap_at = [&margin](std::vector<double> values, int keep) {
    if (keep >= static_cast<int>(values.size())) return;
    std::sort(values.begin(), values.end(), std::greater<>());
    const double gap = values[keep - 1] - values[keep];
    if (gap > 0) margin = std::min(margin, gap);
  };
  if (args.n_group > 1) {
    const int64_t size = experts / args.n_group;
    std::vector<double> group_scores(args.n_group);
    for (int g = 0; g < args.n_group; ++g) {
      std::vector<double> group(choice.begin() + g * size, choice.begin() + (g + 1) * size);
      std::sort(group.begin(), group.end(), std::greater<>());
      group_scores[g] =
          args.group_scoring == cpu::GroupScoring::kMax ? group[0] : group[0] + group[1];
    }
    gap_at(group_scores, args.topk_group);
    std::vector<int> order(args.n_group);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return group_scores[a] > group_scores[b]; });
    for (int j = args.topk_group; j < args.n_group; ++j) {
      std::fill(choice.begin() + order[j] * size, choice.begin() + (order[j] + 1) * size, 0.0);
    }
  }
  gap_at(choice, args.k);
  return margin;
}

template <typename T>
std::vector<T> TokenRow(const std::vector<T>& v, int64_t t, int k) {
  return std::vector<T>(v.begin() + t * k, v.begin() + (t + 1) * k);
}

// GPU and reference routings agree: equal ids and close weights on every token, except tokens
// whose decision margin is a near-tie (at most 1% of them).
::testing::AssertionResult SameRouting(const Routed& got, const Routed& want,
                                       const std::vector<float>& logits, int64_t tokens,
                                       int64_t experts, const cpu::RouterArgs& args) {
  const int k = args.k;
  int64_t near_ties = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    if (TokenRow(got.ids, t, k) != TokenRow(want.ids, t, k)) {
      if (DecisionMargin(logits.data() + t * experts, experts, args) < 1e-5) {
        ++near_ties;
        continue;
      }
      return ::testing::AssertionFailure() << "token " << t << ": ids differ";
    }
    const ::testing::AssertionResult close =
        Close(TokenRow(got.weights, t, k), TokenRow(want.weights, t, k), kWeightTol, k);
    if (!close) return ::testing::AssertionFailure() << "token " << t << ": " << close.message();
  }
  if (near_ties > tokens / 100) {
    return ::testing::AssertionFailure() << near_ties << " near-ties of " << tokens << " tokens";
  }
  return ::testing::AssertionSuccess();
}

TEST(CudaRoute, GroupsBiasAndSigmoidMatchReference) {
  SY_REQUIRE_GPU();
  uint32_t seed = 100;
  for (const RouterSetting& s : RouterSettings()) {
    for (int64_t tokens : {int64_t{1}, int64_t{77}, int64_t{1000}}) {
      for (int levels : {3, 1000}) {
        SCOPED_TRACE(::testing::Message()
                     << s.name << " tokens " << tokens << " levels " << levels);
        const std::vector<float> logits = RouterLogits(tokens, s.experts, levels, seed++);
        std::vector<float> bias = RouterLogits(1, s.experts, 16, seed++);
        for (float& b : bias) b *= 4.0f;  // multiples of 1/64 in [-1/4, 1/4]
        cpu::RouterArgs args = s.args;
        args.correction_bias = s.bias ? bias.data() : nullptr;
        const Routed want = RunReference(logits, tokens, s.experts, args);
        const Routed got = RunRoute(logits, tokens, s.experts, args);
        EXPECT_TRUE(SameRouting(got, want, logits, tokens, s.experts, args));
      }
    }
  }
}

TEST(CudaRoute, UnderflowedProbabilitiesTieByLowerId) {
  SY_REQUIRE_GPU();
  // Three experts per token dominate by ~200, so every other probability underflows to exactly
  // zero on both sides: the rest of the top-k are then the lowest ids among those, in order.
  const int64_t tokens = 40;
  const int64_t experts = 64;
  const int k = 8;
  std::vector<float> logits = RouterLogits(tokens, experts, 256, 3);
  std::mt19937 rng(4);
  std::uniform_int_distribution<int64_t> pick(0, experts - 1);
  for (int64_t t = 0; t < tokens; ++t) {
    for (float boost : {200.0f, 200.5f, 201.0f}) logits[t * experts + pick(rng)] = boost;
  }
  for (bool renormalize : {false, true}) {
    const Routed want = RunReference(logits, tokens, experts, Softmax(k, renormalize));
    const Routed got = RunRoute(logits, tokens, experts, Softmax(k, renormalize));
    EXPECT_TRUE(BitEqual(got.ids, want.ids));
    EXPECT_TRUE(Close(got.weights, want.weights, kWeightTol, k));
  }
}

TEST(CudaRoute, DeterministicAndBatchInvariant) {
  SY_REQUIRE_GPU();
  const int64_t tokens = 77;
  for (const RouterSetting& s : RouterSettings()) {
    SCOPED_TRACE(s.name);
    const int k = s.args.k;
    const std::vector<float> logits = RouterLogits(tokens, s.experts, 300, 9);
    std::vector<float> bias = RouterLogits(1, s.experts, 16, 10);
    cpu::RouterArgs args = s.args;
    args.correction_bias = s.bias ? bias.data() : nullptr;
    const Routed batch = RunRoute(logits, tokens, s.experts, args);
    const Routed again = RunRoute(logits, tokens, s.experts, args);
    EXPECT_TRUE(BitEqual(again.ids, batch.ids));
    EXPECT_TRUE(BitEqual(again.weights, batch.weights));
    for (int64_t t : {int64_t{0}, int64_t{5}, tokens - 1}) {
      const std::vector<float> row(logits.begin() + t * s.experts,
                                   logits.begin() + (t + 1) * s.experts);
      const Routed one = RunRoute(row, 1, s.experts, args);
      EXPECT_TRUE(BitEqual(one.ids, std::vector<int32_t>(batch.ids.begin() + t * k,
                                                         batch.ids.begin() + (t + 1) * k)));
      EXPECT_TRUE(BitEqual(one.weights, std::vector<float>(batch.weights.begin() + t * k,
                                                           batch.weights.begin() + (t + 1) * k)));
    }
  }
}

TEST(CudaRoute, RejectsUnsupportedShapes) {
  SY_REQUIRE_GPU();
  DeviceArray<float> logits(1024);
  DeviceArray<int32_t> ids(64);
  DeviceArray<float> weights(64);
  auto call = [&](int64_t experts, cpu::RouterArgs args) {
    return cuda::route(logits.get(), 1, experts, args, ids.get(), weights.get(), nullptr);
  };
  auto grouped = [](int k, int n_group, int topk_group, cpu::GroupScoring scoring) {
    cpu::RouterArgs args = Softmax(k, true);
    args.n_group = n_group;
    args.topk_group = topk_group;
    args.group_scoring = scoring;
    return args;
  };
  EXPECT_EQ(call(513, Softmax(2, true)), cudaErrorInvalidValue);
  EXPECT_EQ(call(64, Softmax(17, true)), cudaErrorInvalidValue);
  EXPECT_EQ(call(4, Softmax(5, true)), cudaErrorInvalidValue);
  EXPECT_EQ(call(0, Softmax(1, true)), cudaErrorInvalidValue);
  EXPECT_EQ(call(8, Softmax(0, true)), cudaErrorInvalidValue);
  EXPECT_EQ(call(60, grouped(2, 8, 2, cpu::GroupScoring::kMax)), cudaErrorInvalidValue);
  EXPECT_EQ(call(64, grouped(2, 8, 9, cpu::GroupScoring::kMax)), cudaErrorInvalidValue);
  EXPECT_EQ(call(64, grouped(2, 8, 0, cpu::GroupScoring::kMax)), cudaErrorInvalidValue);
  EXPECT_EQ(call(128, grouped(2, 64, 2, cpu::GroupScoring::kMax)), cudaErrorInvalidValue);
  EXPECT_EQ(call(8, grouped(2, 8, 2, cpu::GroupScoring::kTopTwoSum)), cudaErrorInvalidValue);
  EXPECT_EQ(call(8, grouped(2, 8, 2, cpu::GroupScoring::kMax)), cudaSuccess);
  EXPECT_EQ(cuda::route(nullptr, 0, 8, Softmax(2, true), nullptr, nullptr, nullptr), cudaSuccess);
  EXPECT_TRUE(DeviceOk());
}

// --- sort_by_expert ---

// Random expert ids: distinct per token (as a router gives) or not, spread over `used` of the
// experts (the others stay empty).
std::vector<int32_t> RandomChoices(int64_t tokens, int k, int64_t experts, int64_t used,
                                   bool distinct, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> pool(experts);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  pool.resize(used);
  std::vector<int32_t> ids(tokens * k);
  for (int64_t t = 0; t < tokens; ++t) {
    if (distinct) {
      std::shuffle(pool.begin(), pool.end(), rng);
      std::copy(pool.begin(), pool.begin() + k, ids.begin() + t * k);
    } else {
      std::uniform_int_distribution<size_t> dist(0, pool.size() - 1);
      for (int c = 0; c < k; ++c) ids[t * k + c] = pool[dist(rng)];
    }
  }
  return ids;
}

struct Sorted {
  std::vector<int32_t> offsets;
  std::vector<int32_t> sorted;
};

Sorted RunSort(const std::vector<int32_t>& ids, int64_t tokens, int k, int64_t experts) {
  DeviceArray<int32_t> d_ids(ids);
  DeviceArray<int32_t> d_offsets(experts + 1);
  DeviceArray<int32_t> d_sorted(3 * tokens * k);
  d_offsets.Poison();
  d_sorted.Poison();
  const cudaError_t err = cuda::sort_by_expert(d_ids.get(), tokens, k, experts, d_offsets.get(),
                                               d_sorted.get(), nullptr);
  EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  EXPECT_TRUE(DeviceOk());
  return {d_offsets.Download(), d_sorted.Download()};
}

TEST(CudaSortByExpert, MatchesReferenceExactly) {
  SY_REQUIRE_GPU();
  struct Case {
    int64_t tokens;
    int k;
    int64_t experts, used;
    bool distinct;
  };
  const Case cases[] = {
      {1, 1, 1, 1, true},         {1, 2, 8, 8, true},          {7, 2, 8, 8, true},
      {100, 8, 128, 128, true},   {4096, 8, 128, 128, true},   {8192, 8, 512, 512, true},
      {65536, 1, 64, 64, true},   {3000, 6, 60, 60, true},     {33, 16, 512, 512, true},
      {1000, 4, 300, 9, true},    {5000, 2, 256, 1, false},    {777, 3, 40, 40, false},
      {20000, 8, 512, 37, false}, {16, 16, 16, 16, true},      {513, 1, 512, 512, false},
      {10000, 8, 7, 7, false},    {12345, 6, 512, 512, false}, {2, 4, 512, 4, true}};
  uint32_t seed = 100;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "tokens " << c.tokens << " k " << c.k << " experts "
                                      << c.experts << " used " << c.used);
    const std::vector<int32_t> ids =
        RandomChoices(c.tokens, c.k, c.experts, c.used, c.distinct, seed++);
    Sorted want{std::vector<int32_t>(c.experts + 1), std::vector<int32_t>(3 * c.tokens * c.k)};
    cpu::ref::sort_by_expert(ids.data(), c.tokens, c.k, c.experts, want.offsets.data(),
                             want.sorted.data());
    for (int run = 0; run < 2; ++run) {  // twice: deterministic
      const Sorted got = RunSort(ids, c.tokens, c.k, c.experts);
      EXPECT_TRUE(BitEqual(got.offsets, want.offsets));
      EXPECT_TRUE(BitEqual(got.sorted, want.sorted));
    }
  }
}

TEST(CudaSortByExpert, RejectsUnsupportedShapes) {
  SY_REQUIRE_GPU();
  DeviceArray<int32_t> ids(8);
  DeviceArray<int32_t> offsets(1024);
  DeviceArray<int32_t> sorted(24);
  EXPECT_EQ(cuda::sort_by_expert(ids.get(), 4, 2, 513, offsets.get(), sorted.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sort_by_expert(ids.get(), 4, 2, 0, offsets.get(), sorted.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sort_by_expert(ids.get(), 4, 0, 8, offsets.get(), sorted.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sort_by_expert(nullptr, 0, 2, 8, nullptr, nullptr, nullptr), cudaSuccess);
  EXPECT_TRUE(DeviceOk());
}

// --- combine_experts ---

// The inverse permutation sort_by_expert gives for random routing of tokens x k pairs.
std::vector<int32_t> RandomInverse(int64_t tokens, int k, int64_t experts, uint32_t seed) {
  const std::vector<int32_t> ids = RandomChoices(tokens, k, experts, experts, k <= experts, seed);
  std::vector<int32_t> offsets(experts + 1);
  std::vector<int32_t> sorted(3 * tokens * k);
  cpu::ref::sort_by_expert(ids.data(), tokens, k, experts, offsets.data(), sorted.data());
  return std::vector<int32_t>(sorted.begin() + 2 * tokens * k, sorted.end());
}

std::vector<float> RunCombine(const std::vector<float>& ys, const std::vector<int32_t>& inverse,
                              const std::vector<float>& weights, int64_t tokens, int k,
                              int64_t dim) {
  DeviceArray<float> d_ys(ys);
  DeviceArray<int32_t> d_inverse(inverse);
  DeviceArray<float> d_weights(weights);
  DeviceArray<float> d_out(tokens * dim);
  d_out.Poison();
  const cudaError_t err = cuda::combine_experts(d_ys.get(), d_inverse.get(), d_weights.get(),
                                                tokens, k, dim, d_out.get(), nullptr);
  EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  EXPECT_TRUE(DeviceOk());
  return d_out.Download();
}

TEST(CudaCombineExperts, MatchesReference) {
  SY_REQUIRE_GPU();
  struct Case {
    int64_t tokens;
    int k;
    int64_t experts, dim;
  };
  const Case cases[] = {{1, 1, 1, 1},      {5, 2, 8, 3},       {300, 8, 64, 64}, {2000, 2, 8, 128},
                        {3, 16, 32, 2048}, {17, 8, 128, 7168}, {9, 4, 16, 1001}, {64, 6, 60, 4},
                        {1, 64, 64, 256},  {4, 3, 3, 5}};
  uint32_t seed = 200;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "tokens " << c.tokens << " k " << c.k << " dim " << c.dim);
    const std::vector<int32_t> inverse = RandomInverse(c.tokens, c.k, c.experts, seed++);
    const std::vector<float> ys = cpu::random_floats(c.tokens * c.k * c.dim, -1, 1, seed++);
    const std::vector<float> weights = cpu::random_floats(c.tokens * c.k, 0, 1, seed++);
    std::vector<float> want(c.tokens * c.dim);
    cpu::ref::combine_experts(ys.data(), inverse.data(), weights.data(), c.tokens, c.k, c.dim,
                              want.data());
    const std::vector<float> got = RunCombine(ys, inverse, weights, c.tokens, c.k, c.dim);
    // The kernel repeats the reference's unfused products and sums in the same order, so this
    // is expected to be exact; the tolerance only allows for a compiler contracting the
    // reference into FMAs.
    EXPECT_TRUE(Close(got, want, {1e-6, 1e-6}, c.dim));
    EXPECT_TRUE(BitEqual(RunCombine(ys, inverse, weights, c.tokens, c.k, c.dim), got));
  }
}

TEST(CudaCombineExperts, BatchInvariant) {
  SY_REQUIRE_GPU();
  const int64_t tokens = 50;
  const int k = 8;
  const int64_t dim = 512;
  const std::vector<int32_t> inverse = RandomInverse(tokens, k, 64, 5);
  const std::vector<float> ys = cpu::random_floats(tokens * k * dim, -1, 1, 6);
  const std::vector<float> weights = cpu::random_floats(tokens * k, 0, 1, 7);
  const std::vector<float> batch = RunCombine(ys, inverse, weights, tokens, k, dim);
  for (int64_t t : {int64_t{0}, int64_t{21}, tokens - 1}) {
    // The token alone, reading the same expert outputs.
    const std::vector<int32_t> inv(inverse.begin() + t * k, inverse.begin() + (t + 1) * k);
    const std::vector<float> w(weights.begin() + t * k, weights.begin() + (t + 1) * k);
    EXPECT_TRUE(
        BitEqual(RunCombine(ys, inv, w, 1, k, dim),
                 std::vector<float>(batch.begin() + t * dim, batch.begin() + (t + 1) * dim)))
        << "token " << t;
  }
}

TEST(CudaCombineExperts, RejectsUnsupportedShapes) {
  SY_REQUIRE_GPU();
  DeviceArray<float> buf(1024);
  DeviceArray<int32_t> inverse(1024);
  EXPECT_EQ(
      cuda::combine_experts(buf.get(), inverse.get(), buf.get(), 1, 65, 4, buf.get(), nullptr),
      cudaErrorInvalidValue);
  EXPECT_EQ(cuda::combine_experts(nullptr, nullptr, nullptr, 0, 8, 64, nullptr, nullptr),
            cudaSuccess);
  EXPECT_TRUE(DeviceOk());
}

}  // namespace
}  // namespace sy
