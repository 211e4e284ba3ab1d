// ExpertPlacement: the contiguous layout, replicas, migration cost, validation and the JSON file,
// all against hand-written placements.
#include "engine/moe/placement.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace sy {
namespace {

// slots[li][rank][slot] written out by hand.
ExpertPlacement FromTable(std::vector<int32_t> layers, int32_t experts,
                          const std::vector<std::vector<std::vector<int32_t>>>& table) {
  const int32_t ranks = static_cast<int32_t>(table[0].size());
  const int32_t slots = static_cast<int32_t>(table[0][0].size());
  ExpertPlacement p(std::move(layers), experts, ranks, slots);
  for (int32_t li = 0; li < static_cast<int32_t>(table.size()); ++li) {
    for (int32_t r = 0; r < ranks; ++r) {
      for (int32_t s = 0; s < slots; ++s) p.set_expert(li, r, s, table[li][r][s]);
    }
  }
  return p;
}

void ExpectSlots(const ExpertPlacement& p, int32_t li,
                 const std::vector<std::vector<int32_t>>& expected) {
  for (int32_t r = 0; r < p.num_ranks(); ++r) {
    for (int32_t s = 0; s < p.slots_per_rank(); ++s) {
      EXPECT_EQ(p.expert_at(li, r, s), expected[r][s])
          << "layer " << li << " rank " << r << " slot " << s;
    }
  }
}

TEST(PlacementTest, NewPlacementIsEmptyAndInvalid) {
  ExpertPlacement p({0, 2}, 4, 2, 3);
  EXPECT_EQ(p.num_layers(), 2);
  ExpectSlots(p, 1, {{-1, -1, -1}, {-1, -1, -1}});
  EXPECT_FALSE(p.Validate().ok());
}

TEST(PlacementTest, ContiguousEvenSplit) {
  ExpertPlacement p = ExpertPlacement::Contiguous({1, 3}, 6, 3, 3);
  for (int32_t li = 0; li < 2; ++li) ExpectSlots(p, li, {{0, 1, -1}, {2, 3, -1}, {4, 5, -1}});
  EXPECT_TRUE(p.Validate().ok());
  EXPECT_EQ(p.LayerIndex(1), 0);
  EXPECT_EQ(p.LayerIndex(3), 1);
  EXPECT_EQ(p.LayerIndex(2), -1);
  EXPECT_EQ(p.LayerIndex(4), -1);
}

TEST(PlacementTest, ContiguousUnevenSplitLeavesLastRankShort) {
  // ceil(7 / 3) = 3 experts per rank: 0-2, 3-5, 6.
  ExpertPlacement p = ExpertPlacement::Contiguous({0}, 7, 3, 3);
  ExpectSlots(p, 0, {{0, 1, 2}, {3, 4, 5}, {6, -1, -1}});
  EXPECT_TRUE(p.Validate().ok());
}

TEST(PlacementTest, ReplicasAreOrderedByRank) {
  ExpertPlacement p = FromTable({0}, 3, {{{0, 1}, {2, -1}, {1, 0}}});
  ASSERT_TRUE(p.Validate().ok());
  const std::vector<SlotRef> zero = p.replicas(0, 0);
  ASSERT_EQ(zero.size(), 2u);
  EXPECT_EQ(zero[0].rank, 0);
  EXPECT_EQ(zero[0].slot, 0);
  EXPECT_EQ(zero[1].rank, 2);
  EXPECT_EQ(zero[1].slot, 1);
  const std::vector<SlotRef> two = p.replicas(0, 2);
  ASSERT_EQ(two.size(), 1u);
  EXPECT_EQ(two[0].rank, 1);
  EXPECT_EQ(two[0].slot, 0);
}

TEST(PlacementTest, MovesFromCountsNewRankHostings) {
  ExpertPlacement before = FromTable({0, 1}, 4,
                                     {{{0, 1, -1}, {2, 3, -1}},  //
                                      {{0, 1, -1}, {2, 3, -1}}});
  // Layer 0: swapping slots on a rank is free; expert 3 replicated to rank 0 is one copy.
  // Layer 1: experts 1 and 2 trade ranks (two copies) and expert 0 gains a rank-1 replica.
  ExpertPlacement after = FromTable({0, 1}, 4,
                                    {{{1, 0, 3}, {3, 2, -1}},  //
                                     {{0, 2, -1}, {1, 3, 0}}});
  ASSERT_TRUE(after.Validate().ok());
  EXPECT_EQ(after.MovesFrom(before), 1 + 3);
  // Back: layer 0 drops a replica (free); layer 1 copies 1 to rank 0 and 2 to rank 1.
  EXPECT_EQ(before.MovesFrom(after), 2);
  EXPECT_EQ(before.MovesFrom(before), 0);
}

TEST(PlacementTest, ValidateReportsMissingExpert) {
  ExpertPlacement p = FromTable({4}, 4, {{{0, 1}, {2, -1}}});
  Status s = p.Validate();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("expert 3 has no slot"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("layer 4"), std::string::npos) << s.message();
}

TEST(PlacementTest, ValidateReportsDuplicateOnOneRank) {
  ExpertPlacement p = FromTable({0}, 3, {{{0, 1}, {2, 2}}});
  Status s = p.Validate();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rank 1 slot 1: expert 2 appears twice"), std::string::npos)
      << s.message();
}

TEST(PlacementTest, ValidateReportsOutOfRangeExpert) {
  ExpertPlacement p = FromTable({0}, 3, {{{0, 1}, {2, 3}}});
  Status s = p.Validate();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("expert 3 out of range"), std::string::npos) << s.message();
  p.set_expert(0, 1, 1, -2);
  EXPECT_FALSE(p.Validate().ok());
}

TEST(PlacementTest, ValidateRejectsUnsortedLayers) {
  EXPECT_FALSE(ExpertPlacement::Contiguous({3, 1}, 2, 1, 2).Validate().ok());
  EXPECT_FALSE(ExpertPlacement::Contiguous({1, 1}, 2, 1, 2).Validate().ok());
}

TEST(PlacementTest, CheckCompatible) {
  ExpertPlacement p = ExpertPlacement::Contiguous({0, 2}, 4, 2, 2);
  EXPECT_TRUE(p.CheckCompatible({0, 2}, 4, 2).ok());
  EXPECT_FALSE(p.CheckCompatible({0, 1}, 4, 2).ok());
  EXPECT_FALSE(p.CheckCompatible({0, 2}, 8, 2).ok());
  EXPECT_FALSE(p.CheckCompatible({0, 2}, 4, 4).ok());
}

constexpr char kHandWritten[] = R"({
  "format": "switchyard-placement-v1", "num_experts": 3, "num_ranks": 2, "slots_per_rank": 2,
  "layers": [{"layer": 1, "slots": [[0, 2], [1, 0]]},
             {"layer": 5, "slots": [[2, -1], [0, 1]]}]})";

TEST(PlacementTest, FromJsonReadsHandWrittenFile) {
  StatusOr<ExpertPlacement> p = ExpertPlacement::FromJson(kHandWritten);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->layers(), (std::vector<int32_t>{1, 5}));
  EXPECT_EQ(p->num_experts(), 3);
  EXPECT_EQ(p->num_ranks(), 2);
  EXPECT_EQ(p->slots_per_rank(), 2);
  ExpectSlots(*p, 0, {{0, 2}, {1, 0}});
  ExpectSlots(*p, 1, {{2, -1}, {0, 1}});
}

TEST(PlacementTest, JsonRoundTrip) {
  ExpertPlacement p = FromTable({0, 3, 9}, 4,
                                {{{0, 1, -1}, {2, 3, 0}},  //
                                 {{3, 2, 1}, {0, -1, -1}},
                                 {{0, 1, 2}, {3, 2, 1}}});
  ASSERT_TRUE(p.Validate().ok());
  StatusOr<ExpertPlacement> back = ExpertPlacement::FromJson(p.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, p);
}

void ExpectJsonError(const std::string& text, const std::string& fragment) {
  StatusOr<ExpertPlacement> p = ExpertPlacement::FromJson(text);
  ASSERT_FALSE(p.ok()) << text;
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find(fragment), std::string::npos)
      << p.status().message() << " lacks " << fragment;
}

TEST(PlacementTest, FromJsonRejectsMalformedFiles) {
  const std::string head =
      R"({"format": "switchyard-placement-v1", "num_experts": 2, "num_ranks": 2, )";
  ExpectJsonError("{not json", "not valid JSON");
  ExpectJsonError(std::string(300000, '[') + std::string(300000, ']'), "deeper than 64 levels");
  ExpectJsonError("[]", "field 'placement' must be an object, got []");
  ExpectJsonError(R"({"format": "other"})", "placement.format");
  ExpectJsonError(head + R"("layers": []})", "field 'placement.slots_per_rank' is missing");
  ExpectJsonError(head + R"("slots_per_rank": "1", "layers": []})",
                  "field 'placement.slots_per_rank' must be an integer, got \"1\"");
  ExpectJsonError(head + R"("slots_per_rank": 0, "layers": []})", "placement.slots_per_rank");
  ExpectJsonError(head + R"("slots_per_rank": 1, "layers": {}})",
                  "field 'placement.layers' must be an array, got {}");
  ExpectJsonError(head + R"("slots_per_rank": 1, "layers": [{"layer": 0, "slots": [[0]]}]})",
                  "field 'placement.layers[0].slots' must have 2 elements, got 1");
  ExpectJsonError(
      head + R"("slots_per_rank": 1, "layers": [{"layer": 0, "slots": [[0], [1, 0]]}]})",
      "field 'placement.layers[0].slots[1]' must have 1 elements, got 2");
  ExpectJsonError(head + R"("slots_per_rank": 1, "layers": [{"layer": 0, "slots": [[0], [2]]}]})",
                  "field 'placement.layers[0].slots[1][0]' must be between -1 and 1, got 2");
  ExpectJsonError(head + R"("slots_per_rank": 1, "layers": [{"slots": [[0], [1]]}]})",
                  "field 'placement.layers[0].layer' is missing");
  ExpectJsonError(head + R"("slots_per_rank": 1, "layers": [{"layer": 0, "slots": [[0], [0]]}]})",
                  "expert 1 has no slot");
  ExpectJsonError(head + R"("slots_per_rank": 1, "layers": [{"layer": 0, "slots": [[0], [1.5]]}]})",
                  "field 'placement.layers[0].slots[1][0]' must be an integer, got 1.5");
}

TEST(PlacementTest, SaveAndLoad) {
  const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                     ("sy_placement_test_" + std::to_string(getpid()) + ".json");
  ExpertPlacement p = ExpertPlacement::Contiguous({0, 1}, 5, 2, 4);
  ASSERT_TRUE(p.Save(path.string()).ok());
  StatusOr<ExpertPlacement> back = ExpertPlacement::Load(path.string());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, p);
  {
    std::ofstream out(path);
    out << R"({"format": "switchyard-placement-v1"})";
  }
  StatusOr<ExpertPlacement> bad = ExpertPlacement::Load(path.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(path.string()), std::string::npos);
  std::filesystem::remove(path);
  EXPECT_EQ(ExpertPlacement::Load(path.string()).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace sy
