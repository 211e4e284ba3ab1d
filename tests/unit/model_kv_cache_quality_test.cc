// What --kv-cache-dtype bf16 and fp8 cost in accuracy, on every golden fixture model: the same
// prompts with the KV cache in f32 and in the narrower type (weights unquantized), compared
// position by position and by greedy continuation. The measured values are printed and recorded
// (docs/architecture.md quotes them). bf16 keeps 8 significant bits of every K and V value, e4m3
// 4 (each row scaled to its own max, so none overflows or flushes to zero); fp8's error is of
// the size fp8 weights give (tests/unit/model_fp8_quality_test.cc). The bounds sit about 2x
// above the worst measured value; a misread cache (a wrong scale or row offset) gives KL of
// whole nats and top-1 near chance.
#include <gtest/gtest.h>

#include "tests/common/quantized_quality.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

struct Bounds {
  double max_logit_diff, max_kl, mean_kl, min_top1, min_greedy;
};

// Over all fixtures (docs/architecture.md). Tiny random fixtures have nearly flat next-token
// distributions, so top-1 and the greedy prefix are noisy; mean KL is the steady measure.
// bf16, worst measured: max|logit diff| 1.27 and KL max 0.095 (qwen2_moe, whose attention biases
// make large keys), mean KL 0.0023, top-1 all, greedy prefix 66/96 (deepseek_v3).
constexpr Bounds kBf16{2.5, 0.2, 0.005, 0.95, 0.4};
// fp8, worst measured: max|logit diff| 4.56 and KL max 0.79 (deepseek_v3_bf16), mean KL 0.034
// (qwen3_moe), top-1 39/41, greedy prefix 24/96 (qwen3_moe).
constexpr Bounds kFp8{8.0, 1.5, 0.07, 0.85, 0.12};

class KvCacheQualityTest : public ::testing::TestWithParam<std::string> {
 protected:
  void Check(KvCacheDType kv, const Bounds& b) {
    const testing::QuantizedQuality c = testing::MeasureKvCacheQuality(GetParam(), kv);
    ASSERT_GT(c.positions, 0);
    EXPECT_GT(c.max_logit_diff, 0.0) << "a narrower cache should change the logits at all";
    EXPECT_LE(c.max_logit_diff, b.max_logit_diff);
    EXPECT_LE(c.max_kl, b.max_kl);
    EXPECT_LE(c.mean_kl, b.mean_kl);
    EXPECT_GE(c.top1(), b.min_top1);
    EXPECT_GE(c.greedy(), b.min_greedy);
  }
};

TEST_P(KvCacheQualityTest, Bf16StaysCloseToF32) { Check(KvCacheDType::kBF16, kBf16); }

TEST_P(KvCacheQualityTest, Fp8StaysCloseToF32) { Check(KvCacheDType::kFP8, kFp8); }

INSTANTIATE_TEST_SUITE_P(Models, KvCacheQualityTest, ::testing::ValuesIn(testing::GoldenModels()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sy
