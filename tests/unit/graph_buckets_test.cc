// Decode-graph buckets and padding. The padding's semantics are checked on the CPU backend:
// a decode step padded to a bucket gives, for the real sequences, exactly the logits of the
// step unpadded (and leaves the KV cache of the real sequences as the unpadded step does).
#include "engine/runner/graph_buckets.h"

#include <gtest/gtest.h>

#include "tests/common/test_model.h"

namespace sy {
namespace {

TEST(DecodeGraphBuckets, CoverEveryBatchSizeUpToTheCap) {
  const std::vector<int32_t> b = DecodeGraphBuckets(256);
  EXPECT_EQ(b.front(), 1);
  EXPECT_EQ(b.back(), 256);
  EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
  for (int n = 1; n <= 256; ++n) {
    const int32_t bucket = BucketFor(b, n);
    ASSERT_GE(bucket, n);
    // Steps of 8, 16, 32: padding stays below half the batch (plus one step of 8).
    EXPECT_LT(bucket - n, n / 2 + 8) << n;
  }
  EXPECT_EQ(BucketFor(b, 257), -1);
}

TEST(DecodeGraphBuckets, EndAtMaxSeqs) {
  EXPECT_EQ(DecodeGraphBuckets(1), std::vector<int32_t>({1}));
  EXPECT_EQ(DecodeGraphBuckets(5), std::vector<int32_t>({1, 2, 4, 5}));
  EXPECT_EQ(DecodeGraphBuckets(20).back(), 20);
  EXPECT_EQ(DecodeGraphBuckets(1000).back(), 256);
}

StepBatch Decode(int n, int width) {
  StepBatch b;
  b.max_blocks_per_seq = width;
  for (int s = 0; s < n; ++s) {
    b.tokens.push_back(3 + s);
    b.positions.push_back(5 + s);
    b.slots.push_back(s * 16 * width + 5 + s);
    b.token_seq.push_back(s);
    b.logits_indices.push_back(s);
    for (int j = 0; j < width; ++j) b.block_tables.push_back(s * width + j);
  }
  return b;
}

TEST(IsDecodeStep, OnlyOneTokenPerSequenceWithItsLogits) {
  EXPECT_TRUE(IsDecodeStep(Decode(3, 2)));
  StepBatch prefill = Decode(1, 2);
  prefill.tokens.push_back(1);
  prefill.positions.push_back(6);
  prefill.slots.push_back(7);
  prefill.token_seq.push_back(0);
  EXPECT_FALSE(IsDecodeStep(prefill));
  StepBatch no_logits = Decode(3, 2);
  no_logits.logits_indices.pop_back();
  EXPECT_FALSE(IsDecodeStep(no_logits));
  EXPECT_FALSE(IsDecodeStep(StepBatch{}));
}

TEST(PadDecodeStep, PadsWithTokensThatWriteNoKv) {
  const StepBatch p = PadDecodeStep(Decode(3, 2), 8, 4);
  ASSERT_EQ(p.tokens.size(), 8u);
  EXPECT_EQ(p.max_blocks_per_seq, 4);
  EXPECT_EQ(p.block_tables.size(), 32u);
  EXPECT_EQ(p.block_tables[4], 2);  // sequence 1's first block, at the wider stride
  EXPECT_EQ(p.block_tables[6], 0);
  for (int i = 3; i < 8; ++i) {
    EXPECT_EQ(p.slots[i], -1);
    EXPECT_EQ(p.token_seq[i], i);
    EXPECT_EQ(p.logits_indices[i], i);
  }
  EXPECT_TRUE(IsDecodeStep(p));
}

TEST(PadDecodeStep, RealRowsGetTheUnpaddedLogits) {
  const auto dir = std::filesystem::path(testing::GoldenDir()) / "models" / "qwen3_moe";
  testing::LoadedModel a = testing::LoadForTest(dir.string());
  testing::LoadedModel b = testing::LoadForTest(dir.string());
  ASSERT_NE(a.runner, nullptr);
  ASSERT_NE(b.runner, nullptr);
  // Fill some KV first (identically on both), then one decode step of 3 sequences.
  StepBatch prefill;
  prefill.max_blocks_per_seq = 1;
  for (int s = 0; s < 3; ++s) {
    for (int pos = 0; pos < 5; ++pos) {
      prefill.tokens.push_back(7 * s + pos + 1);
      prefill.positions.push_back(pos);
      prefill.slots.push_back(s * 16 + pos);
      prefill.token_seq.push_back(s);
    }
    prefill.block_tables.push_back(s);
  }
  std::vector<float> unused;
  ASSERT_TRUE(a.runner->Step(prefill, &unused).ok());
  ASSERT_TRUE(b.runner->Step(prefill, &unused).ok());
  StepBatch step;
  step.max_blocks_per_seq = 1;
  for (int s = 0; s < 3; ++s) {
    step.tokens.push_back(11 + s);
    step.positions.push_back(5);
    step.slots.push_back(s * 16 + 5);
    step.token_seq.push_back(s);
    step.logits_indices.push_back(s);
    step.block_tables.push_back(s);
  }
  std::vector<float> plain, padded;
  ASSERT_TRUE(a.runner->Step(step, &plain).ok());
  ASSERT_TRUE(b.runner->Step(PadDecodeStep(step, 8, 4), &padded).ok());
  const size_t vocab = static_cast<size_t>(a.model->config().vocab_size);
  ASSERT_EQ(padded.size(), 8 * vocab);
  padded.resize(3 * vocab);
  EXPECT_EQ(plain, padded);
}

}  // namespace
}  // namespace sy
