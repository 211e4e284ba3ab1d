// What --quantization int8 costs in accuracy, on every golden fixture model: the same prompts
// through the unquantized and the int8 model, compared position by position (max |logit diff|,
// KL divergence of the next-token distributions, top-1 agreement) and by greedy continuation
// (tests/common/quantized_quality.h).
// The measured values are printed and recorded (docs/quantization.md quotes them); the bounds
// sit above the worst measured value with margin.
#include <gtest/gtest.h>

#include "tests/common/quantized_quality.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

// Bounds over all fixtures: about 1.6-2.5x the worst value measured (docs/quantization.md). The
// fixtures are tiny random-weight models whose next-token distributions are nearly flat, so a
// small logit change flips near-ties: top-1 and the greedy prefix are noisy here, KL is not.
constexpr double kMaxLogitDiff = 2.0;         // worst measured 1.25 (qwen3_moe)
constexpr double kMaxKl = 0.2;                // nats at any one position; worst 0.103
constexpr double kMaxMeanKl = 0.01;           // nats over all positions; worst 0.0042
constexpr double kMinTop1Agreement = 0.8;     // share of prompt positions; worst 37/42 = 0.88
constexpr double kMinGreedyAgreement = 0.25;  // share of greedy tokens before the first split;
                                              // worst 36/96 = 0.375 (mixtral_bf16)

class Int8QualityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(Int8QualityTest, StaysCloseToTheUnquantizedModel) {
  const testing::QuantizedQuality c =
      testing::MeasureQuantizedQuality(GetParam(), Quantization::kInt8);
  ASSERT_GT(c.positions, 0);
  EXPECT_GT(c.max_logit_diff, 0.0) << "int8 weights should change the logits at all";
  EXPECT_LE(c.max_logit_diff, kMaxLogitDiff);
  EXPECT_LE(c.max_kl, kMaxKl);
  EXPECT_LE(c.mean_kl, kMaxMeanKl);
  EXPECT_GE(c.top1(), kMinTop1Agreement);
  EXPECT_GE(c.greedy(), kMinGreedyAgreement);
}

INSTANTIATE_TEST_SUITE_P(Models, Int8QualityTest, ::testing::ValuesIn(testing::GoldenModels()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sy
