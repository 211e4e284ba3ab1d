#include "engine/runner/memory_plan.h"

#include <gtest/gtest.h>

namespace sy {
namespace {

constexpr size_t kGiB = 1ull << 30;

TEST(PlanKvBlocks, TakesWhatTheBudgetLeaves) {
  KvMemoryInput in;
  in.total_bytes = 80 * kGiB;
  in.used_bytes = 20 * kGiB;
  in.utilization = 0.9;
  in.bytes_per_block = 1 << 20;
  // 72 GiB budget - 20 GiB used = 52 GiB of 1 MiB blocks.
  auto blocks = PlanKvBlocks(in);
  ASSERT_TRUE(blocks.ok()) << blocks.status().ToString();
  EXPECT_EQ(*blocks, 52 * 1024);
}

TEST(PlanKvBlocks, TooFewBlocksSaysWhatIsNeededAndAvailable) {
  KvMemoryInput in;
  in.total_bytes = 10 * kGiB;
  in.used_bytes = 8 * kGiB;
  in.utilization = 0.9;
  in.bytes_per_block = 64 << 20;
  in.min_blocks = 32;  // 2 GiB
  in.weights_bytes = 7 * kGiB;
  auto blocks = PlanKvBlocks(in);
  ASSERT_FALSE(blocks.ok());
  EXPECT_EQ(blocks.status().code(), StatusCode::kResourceExhausted);
  const std::string& m = blocks.status().message();
  EXPECT_NE(m.find("2.00 GiB"), std::string::npos) << m;  // needed
  EXPECT_NE(m.find("1.00 GiB"), std::string::npos) << m;  // left: 9 - 8
  EXPECT_NE(m.find("weights 7.00 GiB"), std::string::npos) << m;
  EXPECT_NE(m.find("--gpu-memory-utilization"), std::string::npos) << m;
}

TEST(PlanKvBlocks, UsedBeyondTheBudgetLeavesNothing) {
  KvMemoryInput in;
  in.total_bytes = 10 * kGiB;
  in.used_bytes = 9 * kGiB;
  in.utilization = 0.5;
  in.bytes_per_block = 1 << 20;
  EXPECT_EQ(PlanKvBlocks(in).status().code(), StatusCode::kResourceExhausted);
}

TEST(PlanKvBlocks, RejectsBadUtilization) {
  KvMemoryInput in;
  in.total_bytes = kGiB;
  in.bytes_per_block = 1;
  for (double u : {0.0, -0.5, 1.01}) {
    in.utilization = u;
    EXPECT_EQ(PlanKvBlocks(in).status().code(), StatusCode::kInvalidArgument) << u;
  }
}

TEST(CheckWeightsFit, NamesBothSizes) {
  EXPECT_TRUE(CheckWeightsFit(10 * kGiB, 80 * kGiB, kGiB, 0.9).ok());
  const Status st = CheckWeightsFit(61 * kGiB, 80 * kGiB, 20 * kGiB, 0.9);
  ASSERT_EQ(st.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(st.message().find("61.00 GiB"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("52.00 GiB"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace sy
