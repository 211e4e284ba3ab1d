// make-model writes checkpoints the engine and tokenizer load, deterministically from a seed.
#include "engine/model/make_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <numeric>
#include <random>

#include "engine/model/presets.h"
#include "engine/model/safetensors.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/common/test_model.h"

namespace sy {
namespace {

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

class MakeModelArch : public ::testing::TestWithParam<std::string> {};

TEST_P(MakeModelArch, WritesALoadableModelThatGenerates) {
  testing::ScratchDir dir("make-model");
  MakeModelOptions o;
  o.arch = GetParam();
  o.out_dir = dir.path().string();
  o.seed = 3;
  ASSERT_TRUE(MakeModel(o).ok());
  testing::LoadedModel m = testing::LoadForTest(o.out_dir);
  ASSERT_NE(m.runner, nullptr);
  auto tok = Tokenizer::Load(o.out_dir);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->vocab_size(), m.model->config().vocab_size);
  ASSERT_EQ((*tok)->eos_ids().size(), 1u);
  EXPECT_EQ((*tok)->eos_ids()[0], m.model->config().vocab_size - 3);
  const std::string text = "Hello, switchyard! Grüße 👋";
  const std::vector<int32_t> ids = (*tok)->Encode(text, true);
  EXPECT_EQ((*tok)->Decode(ids, true), text);

  GenerationRequest r;
  r.prompt = ids;
  r.max_new_tokens = 8;
  r.sampling.seed = 1;
  Generator g(m.runner.get());
  auto out = g.Generate({&r, 1});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ((*out)[0].tokens.size(), 8u);
}

INSTANTIATE_TEST_SUITE_P(Archs, MakeModelArch,
                         ::testing::Values("mixtral", "qwen2_moe", "qwen3_moe", "olmoe"));

TEST(MakeModel, SameSeedSameBytesOtherSeedOtherBytes) {
  testing::ScratchDir a("mm-a"), b("mm-b"), c("mm-c");
  MakeModelOptions o;
  o.arch = "mixtral";
  o.seed = 11;
  o.out_dir = a.path().string();
  ASSERT_TRUE(MakeModel(o).ok());
  o.out_dir = b.path().string();
  ASSERT_TRUE(MakeModel(o).ok());
  o.seed = 12;
  o.out_dir = c.path().string();
  ASSERT_TRUE(MakeModel(o).ok());
  const std::string wa = ReadFile(a.path() / "model.safetensors");
  EXPECT_EQ(wa, ReadFile(b.path() / "model.safetensors"));
  EXPECT_NE(wa, ReadFile(c.path() / "model.safetensors"));
  EXPECT_EQ(ReadFile(a.path() / "tokenizer.json"), ReadFile(b.path() / "tokenizer.json"));
}

TEST(MakeModel, OverridesAndShardsAndDtypes) {
  testing::ScratchDir dir("mm-set");
  MakeModelOptions o;
  o.arch = "olmoe";
  o.overrides = {"num_hidden_layers=3", "num_experts=4", "vocab_size=700"};
  o.dtype = DType::kF16;
  o.max_shard_bytes = 64 * 1024;
  o.out_dir = dir.path().string();
  ASSERT_TRUE(MakeModel(o).ok());
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "model.safetensors.index.json"));
  testing::LoadedModel m = testing::LoadForTest(o.out_dir);
  ASSERT_NE(m.model, nullptr);
  EXPECT_EQ(m.model->config().num_layers, 3);
  EXPECT_EQ(m.model->config().num_experts, 4);
  EXPECT_EQ(m.model->config().vocab_size, 700);
  EXPECT_EQ(m.model->config().torch_dtype, "float16");
}

TEST(MakeModel, BadOptionsAreRejected) {
  testing::ScratchDir dir("mm-bad");
  MakeModelOptions o;
  o.out_dir = dir.path().string();
  o.arch = "llama";
  EXPECT_EQ(MakeModel(o).code(), StatusCode::kInvalidArgument);
  o.arch = "mixtral";
  o.preset = "qwen3-30b-a3b";
  EXPECT_EQ(MakeModel(o).code(), StatusCode::kInvalidArgument);
  o.preset = "no-such-preset";
  EXPECT_EQ(MakeModel(o).code(), StatusCode::kNotFound);
  o.preset = "";
  o.overrides = {"num_experts_per_tok=99"};
  EXPECT_EQ(MakeModel(o).code(), StatusCode::kInvalidArgument);
  o.overrides = {"novalue"};
  EXPECT_EQ(MakeModel(o).code(), StatusCode::kInvalidArgument);
}

TEST(MakeModel, RouterSkewZeroIsOff) {
  testing::ScratchDir a("mm-skew0-a"), b("mm-skew0-b");
  MakeModelOptions o;
  o.arch = "qwen2_moe";
  o.seed = 4;
  o.out_dir = a.path().string();
  ASSERT_TRUE(MakeModel(o).ok());
  o.router_skew = 0;
  o.router_skew_seed = 99;
  o.out_dir = b.path().string();
  ASSERT_TRUE(MakeModel(o).ok());
  EXPECT_EQ(ReadFile(a.path() / "model.safetensors"), ReadFile(b.path() / "model.safetensors"));
  o.router_skew = -1;
  EXPECT_EQ(MakeModel(o).code(), StatusCode::kInvalidArgument);
  o.router_skew = std::nan("");
  EXPECT_EQ(MakeModel(o).code(), StatusCode::kInvalidArgument);
}

std::vector<float> F32Values(const SafetensorsFile& file, const std::string& name) {
  const TensorView* t = file.Find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  std::vector<float> v(t->numel());
  std::memcpy(v.data(), t->data, t->nbytes);
  return v;
}

// Skew rewrites hidden dimension 0 only: the embedding's column 0 shifts by one constant, each
// router's column 0 decreases along the intended popularity order, and the other weights lose
// column 0 (if they read the residual stream) or row 0 (if they write it); nothing else moves.
TEST(MakeModel, RouterSkewRewritesOnlyHiddenDimensionZero) {
  testing::ScratchDir a("mm-plain"), b("mm-skewed");
  MakeModelOptions o;
  o.arch = "qwen3_moe";
  o.dtype = DType::kF32;
  o.seed = 5;
  o.out_dir = a.path().string();
  ASSERT_TRUE(MakeModel(o).ok());
  o.router_skew = 1.0;
  o.router_skew_seed = 9;
  o.out_dir = b.path().string();
  ASSERT_TRUE(MakeModel(o).ok());
  auto plain = SafetensorsFile::Open((a.path() / "model.safetensors").string());
  auto skewed = SafetensorsFile::Open((b.path() / "model.safetensors").string());
  ASSERT_TRUE(plain.ok() && skewed.ok());
  const int64_t hidden = 64;  // tiny-qwen3-moe
  for (const std::string& name : (*plain)->names()) {
    const std::vector<float> p = F32Values(**plain, name), s = F32Values(**skewed, name);
    ASSERT_EQ(p.size(), s.size()) << name;
    const std::vector<int64_t>& shape = (*plain)->Find(name)->shape;
    const int64_t cols = shape.size() == 2 ? shape[1] : 0;
    std::vector<size_t> changed;
    for (size_t i = 0; i < p.size(); ++i) {
      if (p[i] != s[i]) changed.push_back(i);
    }
    if (name.ends_with("mlp.gate.weight")) {
      const int layer = std::stoi(name.substr(std::strlen("model.layers.")));
      const std::vector<int32_t> order = RouterSkewOrder(9, layer, 8);
      EXPECT_EQ(s[order[0] * hidden], 0.0f) << name;
      for (size_t r = 1; r < order.size(); ++r) {
        EXPECT_LT(s[order[r] * hidden], s[order[r - 1] * hidden]) << name << " rank " << r;
      }
    }
    for (size_t i : changed) {
      const bool column0 = cols > 0 && i % cols == 0,
                 row0 = cols > 0 && i < static_cast<size_t>(cols);
      if (name == "model.embed_tokens.weight") {
        ASSERT_TRUE(column0) << name << " " << i;
        EXPECT_NEAR(s[i] - p[i], 10 * 0.02f * 8, 1e-5f) << name;  // 10 * 0.02 * sqrt(hidden)
      } else if (name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight")) {
        ASSERT_TRUE(row0) << name << " " << i;
        EXPECT_EQ(s[i], 0.0f);
      } else {
        ASSERT_TRUE(column0 && cols == hidden) << name << " " << i;
        if (!name.ends_with("mlp.gate.weight")) {
          EXPECT_EQ(s[i], 0.0f) << name;
        }
      }
    }
  }
}

// Spearman correlation of expert counts with the intended order (rank 0 = most popular).
double OrderCorrelation(std::span<const int64_t> counts, const std::vector<int32_t>& order) {
  const size_t n = order.size();
  std::vector<int32_t> measured(n);
  std::iota(measured.begin(), measured.end(), 0);
  std::sort(measured.begin(), measured.end(),
            [&](int32_t x, int32_t y) { return counts[x] > counts[y]; });
  std::vector<double> intended_rank(n), measured_rank(n);
  for (size_t r = 0; r < n; ++r) intended_rank[order[r]] = r, measured_rank[measured[r]] = r;
  double d2 = 0;
  for (size_t e = 0; e < n; ++e) d2 += std::pow(intended_rank[e] - measured_rank[e], 2);
  return 1 - 6 * d2 / (n * (n * n - 1.0));
}

// Routes 512 random tokens; returns per MoE layer the expert counts.
std::vector<std::vector<int64_t>> MeasureRouting(const std::string& dir) {
  testing::LoadedModel m = testing::LoadForTest(dir);
  EXPECT_NE(m.runner, nullptr);
  if (m.runner == nullptr) return {};
  std::mt19937 rng(1);
  std::vector<std::vector<int32_t>> prompts(4);
  for (auto& p : prompts) {
    for (int i = 0; i < 128; ++i) p.push_back(static_cast<int32_t>(rng() % 1000));
  }
  Generator g(m.runner.get());
  EXPECT_TRUE(g.PromptLogits(prompts).ok());
  std::vector<std::vector<int64_t>> counts;
  for (int64_t layer = 0; layer < m.model->config().num_layers; ++layer) {
    const auto c = m.runner->expert_load().cumulative(layer);
    counts.emplace_back(c.begin(), c.end());
  }
  return counts;
}

double MaxOverMean(const std::vector<int64_t>& counts) {
  const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  return *std::max_element(counts.begin(), counts.end()) * counts.size() / total;
}

// Expected max/mean of top-2 routing when both choices are drawn without replacement from
// Zipf(s) popularity over n experts: n / 2 * P(the most popular expert is among the two).
double ZipfTop2MaxOverMean(double s, int n) {
  std::vector<double> p(n);
  for (int r = 0; r < n; ++r) p[r] = std::pow(r + 1.0, -s);
  const double total = std::accumulate(p.begin(), p.end(), 0.0);
  for (double& x : p) x /= total;
  double chosen = p[0];
  for (int f = 1; f < n; ++f) chosen += p[f] * p[0] / (1 - p[f]);
  return n / 2.0 * chosen;
}

TEST(MakeModel, RouterSkewRoutesAlongTheIntendedPopularity) {
  testing::ScratchDir dir("mm-route-skewed");
  MakeModelOptions o;
  o.arch = "qwen3_moe";                   // 8 experts, top-2
  o.overrides = {"num_hidden_layers=4"};  // deeper than tiny: the skew must hold at depth
  o.seed = 5;
  o.router_skew = 1.5;
  o.router_skew_seed = 9;
  o.out_dir = dir.path().string();
  ASSERT_TRUE(MakeModel(o).ok());
  const auto counts = MeasureRouting(o.out_dir);
  ASSERT_EQ(counts.size(), 4u);
  const double expected = ZipfTop2MaxOverMean(1.5, 8);  // 3.2; a plain random router: 1.3-2.2
  for (size_t layer = 0; layer < counts.size(); ++layer) {
    const std::vector<int32_t> order = RouterSkewOrder(9, layer, 8);
    const std::vector<int64_t>& c = counts[layer];
    EXPECT_EQ(std::max_element(c.begin(), c.end()) - c.begin(), order[0]) << "layer " << layer;
    EXPECT_NEAR(MaxOverMean(c), expected, 0.5) << "layer " << layer;
    EXPECT_GT(OrderCorrelation(c, order), 0.7) << "layer " << layer;
  }
}

// DeepSeek-V3's router adds e_score_correction_bias to the sigmoid scores before its top-k. A
// random bias there is a fixed popularity order of its own, larger than the per-token noise in
// score space, and made routing nearly deterministic (25 of 256 experts used); skew therefore
// zeroes it (transformers initialises it to zeros too), and routing follows the intended order.
TEST(MakeModel, RouterSkewOnSigmoidRoutingWithCorrectionBias) {
  testing::ScratchDir dir("mm-route-skewed-v3");
  MakeModelOptions o;
  o.preset = "tiny-deepseek-v3";  // 16 experts, top-4 of 4 groups (2 picked), MoE layers 1, 2
  o.seed = 5;
  o.router_skew = 1.0;
  o.router_skew_seed = 9;
  o.out_dir = dir.path().string();
  ASSERT_TRUE(MakeModel(o).ok());
  auto file = SafetensorsFile::Open((dir.path() / "model.safetensors").string());
  ASSERT_TRUE(file.ok());
  for (int layer : {1, 2}) {
    const std::string name =
        "model.layers." + std::to_string(layer) + ".mlp.gate.e_score_correction_bias";
    for (float v : F32Values(**file, name)) EXPECT_EQ(v, 0.0f) << name;
  }
  const auto counts = MeasureRouting(o.out_dir);
  ASSERT_EQ(counts.size(), 3u);
  for (size_t layer : {1, 2}) {
    const std::vector<int64_t>& c = counts[layer];
    const int used =
        static_cast<int>(std::count_if(c.begin(), c.end(), [](int64_t n) { return n > 0; }));
    EXPECT_EQ(used, 16) << "layer " << layer;
    EXPECT_GT(OrderCorrelation(c, RouterSkewOrder(9, layer, 16)), 0.7) << "layer " << layer;
  }
}

TEST(MakeModel, EveryPresetGivesAValidConfig) {
  for (const std::string& name : PresetNames()) {
    MakeModelOptions o;
    o.preset = name;
    EXPECT_TRUE(MakeModelConfigText(o).ok()) << name;
  }
}

}  // namespace
}  // namespace sy
