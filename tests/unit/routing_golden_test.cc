// MoE routers against Hugging Face transformers: for every case of tests/golden/routing/cases.json
// (DeepseekV2MoEGate, DeepseekV3TopkRouter with the DeepSeek-V3 and Kimi K2 shapes, and
// Glm4MoeTopkRouter run on random logits and biases by scripts/golden/golden_routing.py), the
// reference and the fast sy::cpu::route must choose the same experts with the same weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "tests/common/source_dir.h"

namespace sy::cpu {
namespace {

using nlohmann::json;

json ReadCases() {
  std::ifstream f(sy::testing::SourceDir() + "/tests/golden/routing/cases.json");
  return json::parse(f);
}

RouterArgs ArgsOf(const json& a) {
  RouterArgs args;
  args.k = a["k"].get<int>();
  args.scoring = a["scoring"].get<std::string>() == "sigmoid" ? RouterScoring::kSigmoid
                                                              : RouterScoring::kSoftmax;
  args.renormalize = a["renormalize"].get<bool>();
  args.scaling = a["scaling"].get<float>();
  args.n_group = a["n_group"].get<int>();
  args.topk_group = a["topk_group"].get<int>();
  args.group_scoring = a["group_scoring"].get<std::string>() == "top_two_sum"
                           ? GroupScoring::kTopTwoSum
                           : GroupScoring::kMax;
  return args;
}

using RouteFn = void (*)(const float*, int64_t, int64_t, const RouterArgs&, int32_t*, float*);

// transformers picks with topk(sorted=False), so its order means nothing: the fixture lists each
// token's experts in ascending id with their weights, and so are ours compared.
void ExpectMatchesTransformers(const json& c, RouteFn route_fn) {
  const int64_t experts = c["experts"].get<int64_t>();
  const std::vector<std::vector<float>> logits = c["logits"].get<std::vector<std::vector<float>>>();
  const std::vector<std::vector<int32_t>> want_ids =
      c["ids"].get<std::vector<std::vector<int32_t>>>();
  const std::vector<std::vector<float>> want_weights =
      c["weights"].get<std::vector<std::vector<float>>>();
  std::vector<float> bias;
  RouterArgs args = ArgsOf(c["args"]);
  if (!c["bias"].is_null()) {
    bias = c["bias"].get<std::vector<float>>();
    ASSERT_EQ(static_cast<int64_t>(bias.size()), experts);
    args.correction_bias = bias.data();
  }
  const int k = args.k;
  for (size_t t = 0; t < logits.size(); ++t) {
    ASSERT_EQ(static_cast<int64_t>(logits[t].size()), experts);
    std::vector<int32_t> ids(k, -1);
    std::vector<float> weights(k);
    poison(weights);
    route_fn(logits[t].data(), 1, experts, args, ids.data(), weights.data());
    std::vector<int> order(k);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return ids[a] < ids[b]; });
    for (int j = 0; j < k; ++j) {
      EXPECT_EQ(ids[order[j]], want_ids[t][j]) << "token " << t << " choice " << j;
      const float want = want_weights[t][j];
      EXPECT_NEAR(weights[order[j]], want, 1e-6f * std::max(1.0f, std::abs(want)))
          << "token " << t << " expert " << want_ids[t][j];
    }
  }
}

TEST(RoutingGolden, ReferenceMatchesTransformers) {
  const json golden = ReadCases();
  ASSERT_GE(golden["cases"].size(), 8u);
  for (const json& c : golden["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    ExpectMatchesTransformers(c, &ref::route);
  }
}

TEST(RoutingGolden, FastMatchesTransformersOnEveryIsa) {
  const json golden = ReadCases();
  for (Isa isa : supported_isas()) {
    IsaScope scope(isa);
    for (const json& c : golden["cases"]) {
      SCOPED_TRACE(std::string(isa_name(isa)) + " " + c["name"].get<std::string>());
      ExpectMatchesTransformers(c, &route);
    }
  }
}

}  // namespace
}  // namespace sy::cpu
