// The shared JSON field reader: paths in messages, null as absent, integer edge cases; and the
// depth-bounded parse that every client's JSON goes through first.
#include "engine/core/json_fields.h"

#include <gtest/gtest.h>

#include "engine/core/bounded_json.h"

namespace sy::json_fields {
namespace {

TEST(JsonFieldsTest, ErrorsNameTheFieldByItsPath) {
  const json doc = json::parse(R"({"rope": {"factor": "2"}, "layers": [{"slots": [[0, 7]]}]})");
  double factor = 0;
  EXPECT_EQ(Fields(doc["rope"], "rope").Double("factor", &factor).message(),
            "field 'rope.factor' must be a number, got \"2\"");
  EXPECT_EQ(Fields(doc).Double("scale", &factor).message(), "field 'scale' is missing");
  const auto slots = IntArray(doc["layers"][0]["slots"][0], "layers[0].slots[0]", 2, 0, 3);
  EXPECT_EQ(slots.status().message(),
            "field 'layers[0].slots[0][1]' must be between 0 and 3, got 7");
  EXPECT_EQ(CheckArray(doc["layers"], "layers", 2).message(),
            "field 'layers' must have 2 elements, got 1");
  EXPECT_EQ(Member(doc, "windows", "trace").status().message(), "field 'trace.windows' is missing");

  Options api;
  api.backtick_names = true;
  api.context = "request: ";
  EXPECT_EQ(FieldError("n", "is wrong", api).message(), "request: `n` is wrong");
}

TEST(JsonFieldsTest, NullIsAbsentButPresent) {
  const json doc = json::parse(R"({"window": null})");
  const Fields f(doc);
  EXPECT_TRUE(f.Present("window"));
  EXPECT_EQ(f.Find("window"), nullptr);
  int64_t window = 0;
  EXPECT_TRUE(f.Int("window", 4096, &window).ok());
  EXPECT_EQ(window, 4096);
  EXPECT_EQ(Member(doc, "window", "cfg").status().message(), "field 'cfg.window' is missing");
}

TEST(JsonFieldsTest, IntegersAtTheEdges) {
  EXPECT_EQ(Int(json(int64_t{-5}), "x", -5, 5).value(), -5);
  EXPECT_EQ(Int(json(5.0), "x", 0, 9).status().message(), "field 'x' must be an integer, got 5.0");
  Options lenient;
  lenient.integral_floats = true;
  EXPECT_EQ(Int(json(5.0), "x", 0, 9, lenient).value(), 5);
  EXPECT_FALSE(Int(json(5.5), "x", 0, 9, lenient).ok());
  // 2^63 as a float compares equal to (double)INT64_MAX but does not fit.
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  EXPECT_FALSE(Int(json(9223372036854775808.0), "x", kMin, kMax, lenient).ok());
  EXPECT_EQ(Int(json(uint64_t{18446744073709551615u}), "x", kMin, kMax).status().message(),
            "field 'x' must be a 64-bit integer, got 18446744073709551615");
  EXPECT_EQ(Int(json(uint64_t{18446744073709551615u}), "x", 0, 9).status().message(),
            "field 'x' must be between 0 and 9, got 18446744073709551615");
  EXPECT_EQ(AsInt(json(uint64_t{9223372036854775808u})), std::nullopt);
}

TEST(JsonFieldsTest, LenientReadsTakeOtherTypesAsNotGiven) {
  const json doc = json::parse(R"({"type": 3, "name": "bpe", "strip": "yes", "on": true})");
  EXPECT_EQ(LenientString(doc, "type"), std::nullopt);
  EXPECT_EQ(LenientString(doc, "name"), "bpe");
  EXPECT_TRUE(LenientBool(doc, "strip", true));
  EXPECT_TRUE(LenientBool(doc, "on", false));
  EXPECT_EQ(FindMember(json::array(), "type"), nullptr);
}

TEST(BoundedJsonTest, CountsArraysAndObjectsAgainstTheLimit) {
  // {"a": [[1]]} nests 3 levels: the object and two arrays.
  const std::string three = R"({"a": [[1]], "b": {"c": 2}})";
  StatusOr<json> ok = ParseBoundedJson(three, "doc", 3);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ((*ok)["a"][0][0], 1);
  EXPECT_EQ((*ok)["b"]["c"], 2);
  const StatusOr<json> deep = ParseBoundedJson(three, "doc", 2);
  EXPECT_EQ(deep.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(deep.status().message(), "doc nests arrays and objects deeper than 2 levels");
  EXPECT_EQ(ParseBoundedJson("[1, 2", "doc").status().message(), "doc is not valid JSON");
  EXPECT_EQ(ParseBoundedJson("{} trailing", "doc").status().message(), "doc is not valid JSON");
  EXPECT_TRUE(ParseBoundedJson("7", "doc", 0).ok());  // scalars nest no levels
}

TEST(BoundedJsonTest, HostileDepthStopsAtTheLimit) {
  const std::string deep = std::string(300000, '[') + std::string(300000, ']');
  EXPECT_EQ(ParseBoundedJson(deep, "doc").status().message(),
            "doc nests arrays and objects deeper than 64 levels");
  EXPECT_TRUE(ParseBoundedJson(std::string(64, '[') + std::string(64, ']'), "doc").ok());
}

}  // namespace
}  // namespace sy::json_fields
