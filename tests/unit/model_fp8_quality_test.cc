// What --quantization fp8 costs in accuracy, on every golden fixture model: the same prompts
// through the unquantized and the fp8 model (e4m3fn weights, one scale per 128 columns of each
// row), compared position by position and by greedy continuation. The measured values are
// printed and recorded (docs/quantization.md quotes them). torch, quantizing the same fixtures
// the same way (float8_e4m3fn cast, max|w| / 448 per 1 x 128 block), gives the same KL values to
// three digits, so the error is fp8's own: 3 mantissa bits against int8's ~7. The bounds sit
// about 1.5-2x above the worst measured value, and far below what a broken kernel gives (a
// decode off by an exponent step or a misplaced block scale moves the logits by whole units).
#include <gtest/gtest.h>

#include "tests/common/quantized_quality.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

// Bounds over all fixtures (docs/quantization.md). The tiny random fixtures have nearly flat
// next-token distributions, so top-1 and the greedy prefix are noisy; mean KL is the steady one.
constexpr double kMaxLogitDiff = 6.0;         // worst measured 4.11 (qwen3_moe)
constexpr double kMaxKl = 1.2;                // nats at any one position; worst 0.728
constexpr double kMaxMeanKl = 0.15;           // nats over all positions; worst 0.080
constexpr double kMinTop1Agreement = 0.6;     // share of prompt positions; worst 29/41 = 0.71
constexpr double kMinGreedyAgreement = 0.05;  // greedy tokens before the first split; worst
                                              // 11/96 = 0.11

class Fp8QualityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(Fp8QualityTest, StaysCloseToTheUnquantizedModel) {
  const testing::QuantizedQuality c =
      testing::MeasureQuantizedQuality(GetParam(), Quantization::kFp8);
  ASSERT_GT(c.positions, 0);
  EXPECT_GT(c.max_logit_diff, 0.0) << "fp8 weights should change the logits at all";
  EXPECT_LE(c.max_logit_diff, kMaxLogitDiff);
  EXPECT_LE(c.max_kl, kMaxKl);
  EXPECT_LE(c.mean_kl, kMaxMeanKl);
  EXPECT_GE(c.top1(), kMinTop1Agreement);
  EXPECT_GE(c.greedy(), kMinGreedyAgreement);
}

INSTANTIATE_TEST_SUITE_P(Models, Fp8QualityTest, ::testing::ValuesIn(testing::GoldenModels()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sy
