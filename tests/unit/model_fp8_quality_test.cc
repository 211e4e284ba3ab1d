// What --quantization fp8 costs in accuracy, on every golden fixture model: the same prompts
// through the unquantized and the fp8 model (e4m3fn weights, one scale per 128 columns of each
// row), compared position by position and by greedy continuation. The measured values are
// printed and recorded (docs/quantization.md quotes them). torch, quantizing the same fixtures
// the same way (float8_e4m3fn cast, max|w| / 448 per 1 x 128 block), gives the same KL values to
// three digits, so the error is fp8's own: 3 mantissa bits against int8's ~7. The bounds sit
// about 1.5-2x above the worst measured value, and far below what a broken kernel gives (a
// decode off by an exponent step or a misplaced block scale moves the logits by whole units).
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/common/quantization_quality.h"

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
  const auto dir = std::filesystem::path(testing::GoldenDir()) / "models" / GetParam();
  const testing::QualityComparison c = testing::CompareQuantized(dir, Quantization::kFp8);
  ASSERT_GT(c.positions, 0);
  std::printf(
      "fp8 vs none, %s: max|logit diff| %.5f, KL max %.3g mean %.3g nats, top-1 %lld/%lld, "
      "greedy prefix %lld/%lld\n",
      GetParam().c_str(), c.max_logit_diff, c.max_kl, c.mean_kl,
      static_cast<long long>(c.top1_same), static_cast<long long>(c.positions),
      static_cast<long long>(c.greedy_same), static_cast<long long>(c.greedy_total));
  RecordProperty("max_logit_diff", std::to_string(c.max_logit_diff));
  RecordProperty("max_kl", std::to_string(c.max_kl));
  RecordProperty("mean_kl", std::to_string(c.mean_kl));
  RecordProperty("top1_agreement", std::to_string(c.top1()));
  RecordProperty("greedy_agreement", std::to_string(c.greedy()));
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
