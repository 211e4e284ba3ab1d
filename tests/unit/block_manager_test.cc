// BlockManager: allocation and reference counts, prefix-cache hits along the hash chain (never
// the last token), LRU eviction of cached blocks, and reuse after free.
#include "engine/sched/block_manager.h"

#include <gtest/gtest.h>

#include <numeric>

namespace sy {
namespace {

constexpr int kBlock = 4;

std::vector<int32_t> Range(int32_t first, int32_t count) {
  std::vector<int32_t> v(count);
  std::iota(v.begin(), v.end(), first);
  return v;
}

std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Allocates `tokens` for a new sequence (with whatever prefix hits) and marks them computed.
SeqBlocks Prefill(BlockManager& m, const std::vector<int32_t>& tokens) {
  SeqBlocks seq;
  const PrefixMatch match = m.MatchPrefix(tokens);
  EXPECT_TRUE(m.CanAllocate(match, static_cast<int64_t>(tokens.size())));
  m.Allocate(match, static_cast<int64_t>(tokens.size()), static_cast<int64_t>(tokens.size()), &seq);
  m.CacheFullBlocks(tokens, static_cast<int64_t>(tokens.size()), &seq);
  return seq;
}

TEST(BlockManager, AllocatesWhatFitsAndCountsReferences) {
  BlockManager m(8, kBlock, true);
  SeqBlocks a;
  m.Allocate({}, 10, 10, &a);  // 10 tokens: 3 blocks
  EXPECT_EQ(a.ids.size(), 3u);
  EXPECT_EQ(m.num_used(), 3);
  EXPECT_EQ(m.num_free(), 5);
  for (int32_t b : a.ids) EXPECT_EQ(m.ref_count(b), 1);
  EXPECT_TRUE(m.CanAllocate({}, 20));   // 5 blocks
  EXPECT_FALSE(m.CanAllocate({}, 21));  // 6 blocks
  EXPECT_TRUE(m.CanAppend(a, 12));      // still 3 blocks
  EXPECT_TRUE(m.CanAppend(a, 32));      // 8 blocks: 5 more
  EXPECT_FALSE(m.CanAppend(a, 33));
  m.Append(13, &a);
  EXPECT_EQ(a.ids.size(), 4u);
  m.Free(&a);
  EXPECT_TRUE(a.ids.empty());
  EXPECT_EQ(m.num_used(), 0);
  EXPECT_EQ(m.num_free(), 8);
  EXPECT_EQ(m.num_cached_free(), 0);  // nothing was computed, so nothing is cached
}

TEST(BlockManager, SharedPrefixHitsAndIsReferencedTwice) {
  BlockManager m(16, kBlock, true);
  const std::vector<int32_t> prompt = Range(100, 12);
  SeqBlocks a = Prefill(m, prompt);
  const std::vector<int32_t> longer = Concat(prompt, {7});
  const PrefixMatch match = m.MatchPrefix(longer);
  ASSERT_EQ(match.blocks.size(), 3u);
  EXPECT_EQ(match.blocks, a.ids);
  SeqBlocks b;
  m.Allocate(match, 13, 13, &b);
  EXPECT_EQ(b.ids.size(), 4u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(m.ref_count(a.ids[i]), 2);
  EXPECT_EQ(m.num_used(), 4);  // 3 shared + 1 of b's own
  EXPECT_EQ(m.query_tokens(), 12 + 13);
  EXPECT_EQ(m.hit_tokens(), 12);
  m.Free(&a);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(m.ref_count(b.ids[i]), 1);
  EXPECT_EQ(m.num_used(), 4);
}

TEST(BlockManager, LastTokenIsNeverAHit) {
  BlockManager m(16, kBlock, true);
  const std::vector<int32_t> prompt = Range(100, 12);
  Prefill(m, prompt);
  // The same 12 tokens: only 2 blocks, so that token 12 is computed for its logits.
  EXPECT_EQ(m.MatchPrefix(prompt).blocks.size(), 2u);
  EXPECT_EQ(m.MatchPrefix(Range(100, 9)).blocks.size(), 2u);
  EXPECT_EQ(m.MatchPrefix(Range(100, 8)).blocks.size(), 1u);
  EXPECT_EQ(m.MatchPrefix(Range(100, 4)).blocks.size(), 0u);
}

TEST(BlockManager, HitsFollowTheHashChain) {
  BlockManager m(16, kBlock, true);
  const std::vector<int32_t> x = {1, 2, 3, 4}, y = {5, 6, 7, 8}, z = {9, 9, 9, 9};
  Prefill(m, Concat(x, y));
  // y after a different first block must not hit, even though y's own tokens were cached.
  EXPECT_EQ(m.MatchPrefix(Concat(Concat(z, y), {0})).blocks.size(), 0u);
  // x then something else: only x hits.
  EXPECT_EQ(m.MatchPrefix(Concat(Concat(x, z), {0})).blocks.size(), 1u);
  EXPECT_EQ(m.MatchPrefix(Concat(Concat(x, y), {0})).blocks.size(), 2u);
  // Partial blocks are never cached.
  BlockManager n(16, kBlock, true);
  Prefill(n, {1, 2, 3});
  EXPECT_EQ(n.num_cached_free(), 0);
}

TEST(BlockManager, OnlyComputedBlocksAreCached) {
  BlockManager m(16, kBlock, true);
  const std::vector<int32_t> prompt = Range(0, 12);
  SeqBlocks a;
  m.Allocate({}, 12, 12, &a);
  m.CacheFullBlocks(prompt, 5, &a);  // a chunk of 5 tokens: block 0 is full
  EXPECT_EQ(m.MatchPrefix(Concat(prompt, {1})).blocks.size(), 1u);
  m.CacheFullBlocks(prompt, 12, &a);
  EXPECT_EQ(m.MatchPrefix(Concat(prompt, {1})).blocks.size(), 3u);
}

TEST(BlockManager, FreedCachedBlocksAreEvictedLeastRecentlyFreedFirst) {
  BlockManager m(4, kBlock, true);
  const std::vector<int32_t> a = Range(10, 4), b = Range(20, 4);
  SeqBlocks sa = Prefill(m, a);
  SeqBlocks sb = Prefill(m, b);
  m.Free(&sa);  // freed first: evicted first
  m.Free(&sb);
  EXPECT_EQ(m.num_used(), 0);
  EXPECT_EQ(m.num_cached_free(), 2);
  EXPECT_EQ(m.num_free(), 4);
  // Three fresh blocks: the two never-cached ones, then a's.
  SeqBlocks c;
  m.Allocate({}, 12, 12, &c);
  EXPECT_EQ(m.num_cached_free(), 1);
  EXPECT_EQ(m.MatchPrefix(Concat(a, {0})).blocks.size(), 0u);
  EXPECT_EQ(m.MatchPrefix(Concat(b, {0})).blocks.size(), 1u);
  // A hit takes its block out of the cache's free list.
  SeqBlocks d;
  const PrefixMatch hit = m.MatchPrefix(Concat(b, {0}));
  EXPECT_FALSE(m.CanAllocate(hit, 8));  // would need a fifth block
  ASSERT_TRUE(m.CanAllocate(hit, 4));
  m.Allocate(hit, 4, 5, &d);
  EXPECT_EQ(m.num_cached_free(), 0);
  EXPECT_EQ(m.num_free(), 0);
  EXPECT_EQ(m.ref_count(d.ids[0]), 1);
}

TEST(BlockManager, SequenceTailIsEvictedBeforeItsPrefix) {
  BlockManager m(3, kBlock, true);
  const std::vector<int32_t> t = Range(0, 8);
  SeqBlocks s = Prefill(m, t);
  m.Free(&s);
  SeqBlocks other;
  m.Allocate({}, 8, 8, &other);  // the one plain block, then the LRU's first: t's tail
  EXPECT_EQ(m.MatchPrefix(Concat(t, {0})).blocks.size(), 1u);
}

TEST(BlockManager, DuplicateContentKeepsTheFirstCachedBlock) {
  BlockManager m(8, kBlock, true);
  const std::vector<int32_t> t = Range(0, 4);
  SeqBlocks a, b;
  m.Allocate({}, 4, 4, &a);
  m.Allocate({}, 4, 4, &b);  // computed concurrently, before a's block was cached
  m.CacheFullBlocks(t, 4, &a);
  m.CacheFullBlocks(t, 4, &b);
  const int32_t first = a.ids[0];
  m.Free(&a);
  m.Free(&b);
  EXPECT_EQ(m.num_cached_free(), 1);
  EXPECT_EQ(m.MatchPrefix(Concat(t, {0})).blocks, std::vector<int32_t>{first});
}

TEST(BlockManager, DisabledCachingNeverHits) {
  BlockManager m(8, kBlock, false);
  const std::vector<int32_t> t = Range(0, 9);
  SeqBlocks a = Prefill(m, t);
  EXPECT_TRUE(m.MatchPrefix(t).blocks.empty());
  m.Free(&a);
  EXPECT_EQ(m.num_cached_free(), 0);
  EXPECT_EQ(m.query_tokens(), 0);
}

}  // namespace
}  // namespace sy
