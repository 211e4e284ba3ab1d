// Hand-worked cases for the DeepSeek / Kimi / GLM router rules of sy::cpu::route (sigmoid scores,
// correction bias, group limits, scaling, renormalisation): every expected id and weight is
// derived in the comments here, not by the code. Run with Isa::kScalar (= sy::cpu::ref) and every
// ISA. The softmax top-k rules are in kernels_reference_test.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"

namespace sy::cpu {
namespace {

// The logit whose sigmoid is p.
float logit(float p) { return std::log(p / (1.0f - p)); }

std::vector<float> logits_of(const std::vector<float>& scores) {
  std::vector<float> out;
  for (float p : scores) out.push_back(logit(p));
  return out;
}

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> weights;
};

Routed run(const std::vector<float>& logits, const RouterArgs& args) {
  const auto experts = static_cast<int64_t>(logits.size());
  Routed r{std::vector<int32_t>(args.k, -7), std::vector<float>(args.k)};
  poison(r.weights);
  route(logits.data(), 1, experts, args, r.ids.data(), r.weights.data());
  return r;
}

void expect_weights(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6f) << "weight " << i;
}

RouterArgs sigmoid_args(int k) {
  RouterArgs args;
  args.k = k;
  args.scoring = RouterScoring::kSigmoid;
  return args;
}

class KernelsRouter : public testing::TestWithParam<Isa> {
 protected:
  IsaScope isa_{GetParam()};
};

TEST_P(KernelsRouter, BiasChangesTheChoiceNotTheWeight) {
  // Scores [0.9, 0.6, 0.5, 0.2] + bias [0, 0, 0, 0.5] = choices [0.9, 0.6, 0.5, 0.7]: the top 2
  // are experts 0 and 3, weighted by their unbiased scores 0.9 and 0.2.
  const std::vector<float> logits = logits_of({0.9f, 0.6f, 0.5f, 0.2f});
  const std::vector<float> bias = {0, 0, 0, 0.5f};
  RouterArgs args = sigmoid_args(2);
  args.correction_bias = bias.data();
  Routed r = run(logits, args);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 3}));
  expect_weights(r.weights, {0.9f, 0.2f});
  // Renormalised: / (0.9 + 0.2 + 1e-20) = / 1.1.
  args.renormalize = true;
  r = run(logits, args);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 3}));
  expect_weights(r.weights, {0.9f / 1.1f, 0.2f / 1.1f});
  // routed_scaling_factor 2.5 multiplies after renormalising: 2.5 * 9/11, 2.5 * 2/11.
  args.scaling = 2.5f;
  r = run(logits, args);
  expect_weights(r.weights, {22.5f / 11, 5.0f / 11});
  // Without the bias: experts 0 and 1.
  args.correction_bias = nullptr;
  args.renormalize = false;
  args.scaling = 1.0f;
  r = run(logits, args);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 1}));
  expect_weights(r.weights, {0.9f, 0.6f});
}

// 8 experts in 4 groups of 2: [0.9, 0.1 | 0.8, 0.7 | 0.85, 0.6 | 0.2, 0.3].
// Group max (V2):       [0.9, 0.8, 0.85, 0.3]  -> groups 0 and 2 kept.
// Group top-2 sum (V3): [1.0, 1.5, 1.45, 0.5]  -> groups 1 and 2 kept.
const std::vector<float> kGroupedScores = {0.9f, 0.1f, 0.8f, 0.7f, 0.85f, 0.6f, 0.2f, 0.3f};

TEST_P(KernelsRouter, GroupMaxExcludesHighScoringExperts) {
  // Kept: experts 0, 1, 4, 5 (0.9, 0.1, 0.85, 0.6); 2 and 3 (0.8, 0.7) are out with group 1.
  RouterArgs args = sigmoid_args(3);
  args.n_group = 4;
  args.topk_group = 2;
  args.group_scoring = GroupScoring::kMax;
  const Routed r = run(logits_of(kGroupedScores), args);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 4, 5}));
  expect_weights(r.weights, {0.9f, 0.85f, 0.6f});
}

TEST_P(KernelsRouter, GroupTopTwoSumPicksOtherGroups) {
  // Kept: experts 2, 3, 4, 5; expert 0, the best of all, is out with group 0.
  RouterArgs args = sigmoid_args(3);
  args.n_group = 4;
  args.topk_group = 2;
  args.group_scoring = GroupScoring::kTopTwoSum;
  const Routed r = run(logits_of(kGroupedScores), args);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{4, 2, 3}));
  expect_weights(r.weights, {0.85f, 0.8f, 0.7f});
  // topk_group == n_group keeps everything: the plain top 3.
  args.topk_group = 4;
  const Routed all = run(logits_of(kGroupedScores), args);
  EXPECT_EQ(all.ids, (std::vector<int32_t>{0, 4, 2}));
  expect_weights(all.weights, {0.9f, 0.85f, 0.8f});
}

TEST_P(KernelsRouter, MaskedExpertsScoreZeroAndBeatNegativeChoices) {
  // Scores [0.9, 0.5 | 0.6, 0.3 | 0.2, 0.1] + bias [0, -0.8, 0, 0, 0, 0]
  //   = choices [0.9, -0.3 | 0.6, 0.3 | 0.2, 0.1].
  // Top-2 sums per group: [0.6, 0.9, 0.3] -> groups 1 and 0 kept; group 2's choices become 0.0.
  // Choices [0.9, -0.3, 0.6, 0.3, 0, 0]: top 4 = 0, 2, 3, then 4 (0.0, the lower of the tied
  // masked pair); expert 1 (-0.3, in a kept group) loses to the masked experts.
  const std::vector<float> logits = logits_of({0.9f, 0.5f, 0.6f, 0.3f, 0.2f, 0.1f});
  const std::vector<float> bias = {0, -0.8f, 0, 0, 0, 0};
  RouterArgs args = sigmoid_args(4);
  args.correction_bias = bias.data();
  args.n_group = 3;
  args.topk_group = 2;
  args.group_scoring = GroupScoring::kTopTwoSum;
  Routed r = run(logits, args);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 2, 3, 4}));
  expect_weights(r.weights, {0.9f, 0.6f, 0.3f, 0.2f});
  // Renormalised over 0.9 + 0.6 + 0.3 + 0.2 = 2.
  args.renormalize = true;
  r = run(logits, args);
  expect_weights(r.weights, {0.45f, 0.3f, 0.15f, 0.1f});
  // k = 5 takes the other masked expert before expert 1.
  args.k = 5;
  args.renormalize = false;
  r = run(logits, args);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 2, 3, 4, 5}));
  expect_weights(r.weights, {0.9f, 0.6f, 0.3f, 0.2f, 0.1f});
}

TEST_P(KernelsRouter, SigmoidRenormalisationAddsTinyEpsilon) {
  // Scores ~1e-20 each (sigmoid(x) ~ e^x far below 0): (1e-20) / (2e-20 + 1e-20) = 1/3 each,
  // where dividing by the plain sum would give 1/2.
  const float tiny = std::log(1e-20f);
  const std::vector<float> logits = {tiny, tiny, tiny - 10};
  RouterArgs args = sigmoid_args(2);
  args.renormalize = true;
  const Routed r = run(logits, args);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{0, 1}));
  expect_weights(r.weights, {1.0f / 3, 1.0f / 3});
}

TEST_P(KernelsRouter, SoftmaxScalingWithoutRenormalisation) {
  // DeepSeek-V2 greedy: probabilities [1/8, 3/8, 3/8, 1/8], top 2 = experts 1, 2, times 16.
  const float ln3 = std::log(3.0f);
  RouterArgs args;
  args.k = 2;
  args.scaling = 16.0f;
  const Routed r = run({0, ln3, ln3, 0}, args);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{1, 2}));
  expect_weights(r.weights, {6.0f, 6.0f});
}

TEST_P(KernelsRouter, SoftmaxGroupLimitOnProbabilities) {
  // DeepSeek-V2 group_limited_greedy: logits ln [1, 4, 2, 2, 3, 0.5, 1, 0.5] / 14 (sum of
  // exps) give probabilities [1, 4, 2, 2, 3, 0.5, 1, 0.5] / 14. Groups of 2, max:
  // [4, 2, 3, 1] / 14 -> groups 0 and 2 kept; top 3 of experts 0, 1, 4, 5 = 1, 4, 0.
  std::vector<float> logits;
  for (float e : {1.0f, 4.0f, 2.0f, 2.0f, 3.0f, 0.5f, 1.0f, 0.5f}) logits.push_back(std::log(e));
  RouterArgs args;
  args.k = 3;
  args.n_group = 4;
  args.topk_group = 2;
  const Routed r = run(logits, args);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{1, 4, 0}));
  expect_weights(r.weights, {4.0f / 14, 3.0f / 14, 1.0f / 14});
}

std::string isa_param_name(const testing::TestParamInfo<Isa>& info) {
  return std::string(isa_name(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllIsas, KernelsRouter, testing::ValuesIn(supported_isas()),
                         isa_param_name);

}  // namespace
}  // namespace sy::cpu
