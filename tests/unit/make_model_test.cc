// make-model writes checkpoints the engine and tokenizer load, deterministically from a seed.
#include "engine/model/make_model.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "engine/model/presets.h"
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

TEST(MakeModel, EveryPresetGivesAValidConfig) {
  for (const std::string& name : PresetNames()) {
    MakeModelOptions o;
    o.preset = name;
    EXPECT_TRUE(MakeModelConfigText(o).ok()) << name;
  }
}

}  // namespace
}  // namespace sy
