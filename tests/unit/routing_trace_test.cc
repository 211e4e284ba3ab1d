// RoutingTrace: sums over windows, validation, the JSON file, and the real OLMoE and Mixtral
// traces whose totals and skew are documented in tests/data/traces/README.md.
#include "engine/moe/routing_trace.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "tests/common/source_dir.h"

namespace sy {
namespace {

// Two MoE layers (model layers 3 and 5), 3 experts, top-2; two windows with transitions.
constexpr char kTwoWindows[] = R"({
  "format": "switchyard-routing-v1", "source": "hand", "num_experts": 3, "top_k": 2,
  "layers": [3, 5],
  "windows": [
    {"tokens": 2, "counts": [[2, 1, 1], [0, 2, 2]],
     "transitions": [[1, 0, 1,  0, 0, 1,  0, 1, 0]]},
    {"tokens": 1, "counts": [[1, 0, 1], [1, 1, 0]],
     "transitions": [[0, 1, 0,  0, 0, 0,  1, 0, 0]]}
  ]})";

TEST(RoutingTraceTest, ReadsHandWrittenFile) {
  StatusOr<RoutingTrace> trace = RoutingTrace::FromJson(kTwoWindows);
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  EXPECT_EQ(trace->source, "hand");
  EXPECT_EQ(trace->layers, (std::vector<int32_t>{3, 5}));
  EXPECT_EQ(trace->num_layers(), 2);
  EXPECT_EQ(trace->num_experts, 3);
  EXPECT_EQ(trace->top_k, 2);
  ASSERT_EQ(trace->windows.size(), 2u);
  EXPECT_EQ(trace->windows[1].counts[1], (std::vector<int64_t>{1, 1, 0}));
  EXPECT_TRUE(trace->has_transitions());
}

TEST(RoutingTraceTest, TotalAndSum) {
  StatusOr<RoutingTrace> trace = RoutingTrace::FromJson(kTwoWindows);
  ASSERT_TRUE(trace.ok());
  const RoutingWindow total = trace->Total();
  EXPECT_EQ(total.tokens, 3);
  EXPECT_EQ(total.counts, (std::vector<std::vector<int64_t>>{{3, 1, 2}, {1, 3, 2}}));
  EXPECT_EQ(total.transitions, (std::vector<std::vector<int64_t>>{{1, 1, 1, 0, 0, 1, 1, 1, 0}}));
  const RoutingWindow second = trace->Sum(1, 1);
  EXPECT_EQ(second.tokens, 1);
  EXPECT_EQ(second.counts, trace->windows[1].counts);
  EXPECT_EQ(second.transitions, trace->windows[1].transitions);
  const RoutingWindow none = trace->Sum(2, 0);
  EXPECT_EQ(none.tokens, 0);
  EXPECT_EQ(none.counts, (std::vector<std::vector<int64_t>>{{0, 0, 0}, {0, 0, 0}}));
  EXPECT_TRUE(none.transitions.empty());
}

TEST(RoutingTraceTest, TransitionsOnlyWhenEveryWindowHasThem) {
  StatusOr<RoutingTrace> trace = RoutingTrace::FromJson(kTwoWindows);
  ASSERT_TRUE(trace.ok());
  trace->windows[0].transitions.clear();
  EXPECT_TRUE(trace->Validate().ok());
  EXPECT_FALSE(trace->has_transitions());
  EXPECT_TRUE(trace->Total().transitions.empty());
  EXPECT_EQ(trace->Sum(1, 1).transitions.size(), 1u);
}

TEST(RoutingTraceTest, JsonRoundTrip) {
  StatusOr<RoutingTrace> trace = RoutingTrace::FromJson(kTwoWindows);
  ASSERT_TRUE(trace.ok());
  trace->source = "a \"quoted\" source\n";
  trace->windows[1].transitions.clear();
  StatusOr<RoutingTrace> back = RoutingTrace::FromJson(trace->ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << trace->ToJson();
  EXPECT_EQ(back->source, trace->source);
  EXPECT_EQ(back->layers, trace->layers);
  EXPECT_EQ(back->num_experts, trace->num_experts);
  EXPECT_EQ(back->top_k, trace->top_k);
  ASSERT_EQ(back->windows.size(), 2u);
  for (size_t w = 0; w < 2; ++w) {
    EXPECT_EQ(back->windows[w].tokens, trace->windows[w].tokens);
    EXPECT_EQ(back->windows[w].counts, trace->windows[w].counts);
    EXPECT_EQ(back->windows[w].transitions, trace->windows[w].transitions);
  }
}

TEST(RoutingTraceTest, SaveAndLoad) {
  const std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("sy_routing_trace_test_" + std::to_string(getpid()) + ".json");
  StatusOr<RoutingTrace> trace = RoutingTrace::FromJson(kTwoWindows);
  ASSERT_TRUE(trace.ok());
  ASSERT_TRUE(trace->Save(path.string()).ok());
  StatusOr<RoutingTrace> back = RoutingTrace::Load(path.string());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->Total().counts, trace->Total().counts);
  std::filesystem::remove(path);
  EXPECT_EQ(RoutingTrace::Load(path.string()).status().code(), StatusCode::kNotFound);
}

void ExpectError(const std::string& text, const std::string& fragment) {
  StatusOr<RoutingTrace> trace = RoutingTrace::FromJson(text);
  ASSERT_FALSE(trace.ok()) << text;
  EXPECT_EQ(trace.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(trace.status().message().find(fragment), std::string::npos)
      << trace.status().message() << " lacks " << fragment;
}

TEST(RoutingTraceTest, RejectsMalformedFiles) {
  const std::string head =
      R"({"format": "switchyard-routing-v1", "num_experts": 2, "top_k": 1, "layers": [0, 1], )";
  ExpectError("[1, 2", "not valid JSON");
  ExpectError(R"({"format": "switchyard-routing-v0"})", "trace.format");
  ExpectError(R"({"format": "switchyard-routing-v1", "source": 3})", "trace.source");
  ExpectError(R"({"format": "switchyard-routing-v1", "num_experts": 2, "top_k": 3})",
              "field 'trace.top_k' must be between 1 and 2, got 3");
  ExpectError(head + R"("source": "x"})", "field 'trace.windows' is missing");
  ExpectError(head + R"("windows": [{"counts": [[1, 0], [0, 1]]}]})",
              "field 'trace.windows[0].tokens' is missing");
  ExpectError(head + R"("windows": [{"tokens": 1, "counts": [[1, 0]]}]})",
              "field 'trace.windows[0].counts' must have 2 elements, got 1");
  ExpectError(head + R"("windows": [{"tokens": 1, "counts": [[1, 0], [0, "1"]]}]})",
              "field 'trace.windows[0].counts[1][1]' must be an integer, got \"1\"");
  ExpectError(
      head + R"("windows": [{"tokens": 1, "counts": [[1, 0], [2, -1]]}]})",
      "field 'trace.windows[0].counts[1][1]' must be between 0 and 9223372036854775807, got -1");
  ExpectError(head + R"("windows": [{"tokens": 1, "counts": [[1, 0], [1, 1]]}]})",
              "counts sum to 2, expected tokens * top_k = 1");
  ExpectError(head + R"("windows": [{"tokens": 1, "counts": [[1, 0], [0, 1]],
                                     "transitions": [[0, 1, 0]]}]})",
              "field 'trace.windows[0].transitions[0]' must have 4 elements, got 3");
  ExpectError(head + R"("windows": [{"tokens": 1, "counts": [[1, 0], [0, 1]],
                                     "transitions": []}]})",
              "field 'trace.windows[0].transitions' must have 1 elements, got 0");
  ExpectError(R"({"format": "switchyard-routing-v1", "num_experts": 2, "top_k": 1,
                  "layers": [1, 0], "windows": []})",
              "ascending");
}

TEST(RoutingTraceTest, ValidateChecksShapes) {
  RoutingTrace trace;
  trace.layers = {0};
  trace.num_experts = 2;
  trace.top_k = 1;
  trace.windows.push_back({1, {{1, 0}}, {}});
  EXPECT_TRUE(trace.Validate().ok());
  trace.windows[0].counts[0].push_back(0);
  EXPECT_FALSE(trace.Validate().ok());
  trace.windows[0].counts[0] = {2, -1};
  EXPECT_FALSE(trace.Validate().ok());
  trace.windows[0].counts[0] = {1, 0};
  trace.windows[0].transitions = {{0, 0, 0, 0}};  // one MoE layer has no layer pairs
  EXPECT_FALSE(trace.Validate().ok());
}

// Real routing statistics recorded from OLMoE and Mixtral (tests/data/traces/README.md).
std::string RealTracesPath() {
  return sy::testing::SourceDir() + "/tests/data/traces/olmoe-mixtral-routing.json";
}

double MaxOverMean(const std::vector<int64_t>& counts) {
  const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  return *std::max_element(counts.begin(), counts.end()) / (total / counts.size());
}

TEST(RoutingTraceTest, LoadsRealOlmoeC4WithTransitions) {
  const std::string path = RealTracesPath();
  StatusOr<RoutingTrace> trace = RoutingTrace::Load(path, "olmoe_c4");
  ASSERT_TRUE(trace.ok()) << trace.status().ToString();
  EXPECT_EQ(trace->layers, (std::vector<int32_t>{0, 7, 15}));
  EXPECT_EQ(trace->num_experts, 64);
  EXPECT_EQ(trace->top_k, 8);
  ASSERT_EQ(trace->windows.size(), 1u);
  const RoutingWindow& window = trace->windows[0];
  EXPECT_EQ(window.tokens, 208896);  // 102 chunks x 2048 tokens (tests/data/traces/README.md)
  for (const std::vector<int64_t>& layer : window.counts) {
    EXPECT_EQ(std::accumulate(layer.begin(), layer.end(), int64_t{0}), 1671168);
  }
  // tests/data/traces/README.md "Headline skew": max/mean 3.02 / 2.66 / 2.50.
  EXPECT_NEAR(MaxOverMean(window.counts[0]), 3.02, 0.005);
  EXPECT_NEAR(MaxOverMean(window.counts[1]), 2.66, 0.005);
  EXPECT_NEAR(MaxOverMean(window.counts[2]), 2.50, 0.005);
  ASSERT_TRUE(trace->has_transitions());
  ASSERT_EQ(window.transitions.size(), 2u);
  for (const std::vector<int64_t>& matrix : window.transitions) {
    ASSERT_EQ(matrix.size(), 64u * 64u);
    // Rank-aligned pairs: tokens x 8, not the tokens x 64 of full co-activation.
    EXPECT_EQ(std::accumulate(matrix.begin(), matrix.end(), int64_t{0}), 1671168);
  }
  // Row sums of the rank-aligned 0 -> 7 matrix are the layer-0 counts.
  for (int i = 0; i < 64; ++i) {
    const auto row = window.transitions[0].begin() + i * 64;
    EXPECT_EQ(std::accumulate(row, row + 64, int64_t{0}), window.counts[0][i]) << "expert " << i;
  }
  EXPECT_NE(trace->source.find("rank-aligned"), std::string::npos);
}

TEST(RoutingTraceTest, LoadsRealMixtralAndGithub) {
  const std::string path = RealTracesPath();
  StatusOr<RoutingTrace> mixtral = RoutingTrace::Load(path, "mixtral_c4");
  ASSERT_TRUE(mixtral.ok()) << mixtral.status().ToString();
  EXPECT_EQ(mixtral->num_experts, 8);
  EXPECT_EQ(mixtral->top_k, 2);
  EXPECT_EQ(mixtral->windows[0].tokens, 208896);
  for (const std::vector<int64_t>& layer : mixtral->windows[0].counts) {
    EXPECT_EQ(std::accumulate(layer.begin(), layer.end(), int64_t{0}), 417792);
  }
  EXPECT_NEAR(MaxOverMean(mixtral->windows[0].counts[0]), 1.12, 0.005);
  EXPECT_NEAR(MaxOverMean(mixtral->windows[0].counts[1]), 1.08, 0.005);
  EXPECT_FALSE(mixtral->has_transitions());

  StatusOr<RoutingTrace> github = RoutingTrace::Load(path, "olmoe_github");
  ASSERT_TRUE(github.ok()) << github.status().ToString();
  EXPECT_NEAR(MaxOverMean(github->windows[0].counts[1]), 6.16, 0.005);
  EXPECT_FALSE(github->has_transitions());

  EXPECT_EQ(RoutingTrace::Load(path, "olmoe_c5").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(RoutingTrace::Load(path, "olmoe_c4_transitions").status().code(),
            StatusCode::kNotFound);
  // Not our format: loading it without a dataset name fails on "format".
  EXPECT_EQ(RoutingTrace::Load(path).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sy
