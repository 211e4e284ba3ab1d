#include "engine/kv/block_allocator.h"

#include <gtest/gtest.h>

#include <set>

namespace sy {
namespace {

TEST(BlockAllocator, AllocatesEveryBlockOnceThenRunsOut) {
  BlockAllocator a(4);
  std::set<int32_t> got;
  for (int i = 0; i < 4; ++i) {
    auto b = a.Allocate();
    ASSERT_TRUE(b.has_value());
    got.insert(*b);
  }
  EXPECT_EQ(got, (std::set<int32_t>{0, 1, 2, 3}));
  EXPECT_FALSE(a.Allocate().has_value());
  EXPECT_EQ(a.num_used(), 4);
}

TEST(BlockAllocator, SharedBlockIsFreedAfterTheLastRelease) {
  BlockAllocator a(2);
  const int32_t b = *a.Allocate();
  a.AddRef(b);
  EXPECT_EQ(a.ref_count(b), 2);
  a.Release(b);
  EXPECT_EQ(a.num_free(), 1);
  a.Release(b);
  EXPECT_EQ(a.num_free(), 2);
}

TEST(BlockTable, SlotsFollowTheBlocks) {
  BlockAllocator a(8);
  BlockTable t;
  ASSERT_TRUE(t.EnsureCapacity(5, 4, &a));  // two blocks of four
  ASSERT_EQ(t.blocks().size(), 2u);
  EXPECT_EQ(t.Slot(0, 4), t.blocks()[0] * 4);
  EXPECT_EQ(t.Slot(5 - 1, 4), t.blocks()[1] * 4 + 0);
  EXPECT_EQ(t.Slot(3, 4), t.blocks()[0] * 4 + 3);
  ASSERT_TRUE(t.EnsureCapacity(8, 4, &a));  // still two
  EXPECT_EQ(t.blocks().size(), 2u);
  t.ReleaseAll(&a);
  EXPECT_EQ(a.num_free(), 8);
}

TEST(BlockTable, FailsWithoutAllocatingWhenShort) {
  BlockAllocator a(3);
  BlockTable t;
  EXPECT_FALSE(t.EnsureCapacity(16, 4, &a));
  EXPECT_TRUE(t.blocks().empty());
  EXPECT_EQ(a.num_free(), 3);
}

}  // namespace
}  // namespace sy
