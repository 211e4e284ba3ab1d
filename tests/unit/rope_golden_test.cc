// RoPE tables against Hugging Face transformers: for every case of tests/golden/rope/cases.json
// (each architecture's own rotary-embedding module, scripts/golden/golden_rope.py), the config
// must parse and give transformers' inverse frequencies and cos/sin scale.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/model/config.h"
#include "engine/model/rope.h"
#include "tests/common/source_dir.h"

namespace sy {
namespace {

using nlohmann::json;

json ReadCases() {
  std::ifstream f(testing::SourceDir() + "/tests/golden/rope/cases.json");
  return json::parse(f);
}

TEST(RopeGolden, TablesMatchTransformers) {
  const json golden = ReadCases();
  ASSERT_GE(golden["cases"].size(), 50u);
  for (const json& c : golden["cases"]) {
    const std::string name = c["name"].get<std::string>();
    SCOPED_TRACE(name);
    json config = golden["architectures"][c["arch"].get<std::string>()];
    for (const auto& [key, value] : c["config"].items()) config[key] = value;
    auto parsed = ParseModelConfig(config.dump());
    if (!parsed.ok()) {
      ADD_FAILURE() << parsed.status().ToString();
      continue;
    }
    auto tables = ComputeRopeTables(*parsed);
    if (!tables.ok()) {
      ADD_FAILURE() << tables.status().ToString();
      continue;
    }
    EXPECT_EQ(tables->rotary_dim, c["rotary_dim"].get<int64_t>());
    const std::vector<float> expected = c["inv_freq"].get<std::vector<float>>();
    if (tables->inv_freq.size() != expected.size()) {
      ADD_FAILURE() << tables->inv_freq.size() << " frequencies, expected " << expected.size();
      continue;
    }
    // float32 pow and operation order may differ from torch's in the last bits; any change in
    // the formula (a band, the ramp, a factor) moves some frequency by far more.
    for (size_t i = 0; i < expected.size(); ++i) {
      EXPECT_NEAR(tables->inv_freq[i], expected[i], 1e-6f * expected[i]) << "frequency " << i;
    }
    EXPECT_FLOAT_EQ(tables->attention_scale, c["attention_scaling"].get<float>());
  }
}

}  // namespace
}  // namespace sy
