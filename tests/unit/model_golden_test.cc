// The engine against Hugging Face transformers: for every tiny model under tests/golden/models
// (made and run by transformers itself, scripts/golden/gen_golden.py), the logits of every
// prompt position and the 32-token greedy continuation must match what transformers recorded.
// Built twice: for the CPU (unit tests) and, with SY_TEST_DEVICE="cuda", for the GPU
// (tests/gpu; skipped without a GPU).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/common/test_model.h"
#ifdef SY_TEST_DEVICE
#include "tests/gpu/gpu_testing.h"
#endif

namespace sy {
namespace {

using nlohmann::json;

#ifdef SY_TEST_DEVICE
constexpr const char* kDevice = SY_TEST_DEVICE;
// The GPU multiplies bf16/f16 weights by activations rounded to the weights' dtype on tensor
// cores (f32 accumulation), as transformers does natively; f32 weights stay f32 throughout.
// f32 fixtures are held to near-f32 agreement; half fixtures to the half-precision bound below.
constexpr float kLogitTolerance = 1e-3f;
#define SY_REQUIRE_DEVICE() SY_REQUIRE_GPU()
#else
constexpr const char* kDevice = "cpu";
// f32 arithmetic over the same weights: only summation order differs from transformers.
constexpr float kLogitTolerance = 1e-4f;
#define SY_REQUIRE_DEVICE() \
  do {                      \
  } while (0)
#endif

json ReadJson(const std::filesystem::path& path) {
  std::ifstream f(path);
  return json::parse(f);
}

// Largest |a - b| over a prompt's logits, and where it is.
struct MaxDiff {
  float value = 0;
  size_t index = 0;
};

MaxDiff Compare(const std::vector<float>& ours, const json& theirs, int64_t vocab) {
  MaxDiff d;
  for (size_t pos = 0; pos < theirs.size(); ++pos) {
    for (int64_t v = 0; v < vocab; ++v) {
      const float diff = std::fabs(ours[pos * vocab + v] - theirs[pos][v].get<float>());
      if (!(diff <= d.value)) d = {diff, pos * vocab + v};
    }
  }
  return d;
}

class GoldenModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenModelTest, PromptLogitsMatchTransformers) {
  SY_REQUIRE_DEVICE();
  const auto dir = std::filesystem::path(testing::GoldenDir()) / "models" / GetParam();
  const json golden = ReadJson(dir / "golden.json");
  testing::LoadedModel m = testing::LoadForTest(dir.string(), 16, 256, 2, kDevice);
  ASSERT_NE(m.runner, nullptr);
  const int64_t vocab = m.model->config().vocab_size;
  Generator gen(m.runner.get());
  for (const json& p : golden["prompts"]) {
    const std::vector<int32_t> ids = p["ids"].get<std::vector<int32_t>>();
    auto logits = gen.PromptLogits({&ids, 1});
    ASSERT_TRUE(logits.ok()) << logits.status().ToString();
    ASSERT_EQ(p["logits"].size(), ids.size());
    const bool half = golden.value("dtype", "float32") != "float32";
    const float tolerance = kDevice == std::string("cpu") || !half ? kLogitTolerance : 0.05f;
    const MaxDiff d = Compare((*logits)[0], p["logits"], vocab);
    EXPECT_LE(d.value, tolerance) << GetParam() << " prompt of " << ids.size()
                                  << " tokens: position " << d.index / vocab << " token "
                                  << d.index % vocab;
    if (p.contains("logits_native")) {
      // transformers computing in the half dtype itself rounds every activation to 8 (bf16) or
      // 11 (f16) mantissa bits; we accumulate in f32, so only agreement in the large is expected.
      const float native_tol = golden.value("dtype", "") == "bfloat16" ? 0.25f : 0.05f;
      const MaxDiff n = Compare((*logits)[0], p["logits_native"], vocab);
      EXPECT_LE(n.value, native_tol) << GetParam() << " vs native half-precision logits";
    }
  }
}

TEST_P(GoldenModelTest, GreedyContinuationMatchesTransformers) {
  SY_REQUIRE_DEVICE();
  const auto dir = std::filesystem::path(testing::GoldenDir()) / "models" / GetParam();
  const json golden = ReadJson(dir / "golden.json");
  testing::LoadedModel m = testing::LoadForTest(dir.string(), 16, 256, 2, kDevice);
  ASSERT_NE(m.runner, nullptr);
  // All prompts in one batch: each continuation must equal transformers' run alone.
  std::vector<GenerationRequest> reqs;
  for (const json& p : golden["prompts"]) {
    GenerationRequest r;
    r.prompt = p["ids"].get<std::vector<int32_t>>();
    r.sampling.temperature = 0.0f;
    r.max_new_tokens = static_cast<int32_t>(p["greedy"].size());
    reqs.push_back(r);
  }
  Generator gen(m.runner.get());
  auto out = gen.Generate(reqs);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ((*out)[i].tokens, golden["prompts"][i]["greedy"].get<std::vector<int32_t>>())
        << GetParam() << " prompt " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, GoldenModelTest, ::testing::ValuesIn(testing::GoldenModels()),
                         [](const auto& info) { return info.param; });

TEST(GoldenFixtures, AllFourArchitecturesArePresent) {
  const std::vector<std::string> models = testing::GoldenModels();
  for (const char* name : {"mixtral", "qwen2_moe", "qwen3_moe", "olmoe"}) {
    EXPECT_NE(std::find(models.begin(), models.end(), name), models.end()) << name;
  }
}

// GoldenModels() (a directory scan) runs exactly the models the generator wrote (index.json), so a
// missing fixture fails here instead of silently not running.
TEST(GoldenFixtures, EveryIndexedModelRuns) {
  const json index = ReadJson(std::filesystem::path(testing::GoldenDir()) / "models/index.json");
  std::vector<std::string> indexed;
  for (const json& m : index["models"]) indexed.push_back(m["name"].get<std::string>());
  std::sort(indexed.begin(), indexed.end());
  EXPECT_EQ(testing::GoldenModels(), indexed);
  // The rope_scaling variants beyond the defaults (tests/golden/README.md).
  for (const char* name : {"mixtral_llama3rope", "qwen3_moe_yarn_params"}) {
    EXPECT_NE(std::find(indexed.begin(), indexed.end(), name), indexed.end()) << name;
  }
}

}  // namespace
}  // namespace sy
