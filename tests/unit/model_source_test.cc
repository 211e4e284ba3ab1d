// `--model preset:NAME --random-weights`: real shapes, weights made by the backend.
#include "engine/model/model_source.h"

#include <gtest/gtest.h>

#include "engine/backend/cpu_backend.h"
#include "engine/model/model_weights.h"
#include "engine/runner/generator.h"
#include "engine/runner/model_runner.h"

namespace sy {
namespace {

TEST(ModelSource, PresetNeedsRandomWeights) {
  const ModelSource s{"preset:tiny-olmoe"};
  EXPECT_TRUE(s.is_preset());
  EXPECT_EQ(s.preset_name(), "tiny-olmoe");
  const Status st = s.Validate();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("--random-weights"), std::string::npos);
  EXPECT_EQ(LoadSourceConfig(ModelSource{"preset:nope", true}).status().code(),
            StatusCode::kNotFound);
}

TEST(ModelSource, ConfigDTypes) {
  ModelConfig c;
  EXPECT_EQ(ConfigWeightDType(c).value(), DType::kBF16);
  c.torch_dtype = "float16";
  EXPECT_EQ(ConfigWeightDType(c).value(), DType::kF16);
  c.torch_dtype = "float32";
  EXPECT_EQ(ConfigWeightDType(c).value(), DType::kF32);
  c.torch_dtype = "float8_e4m3fn";
  EXPECT_EQ(ConfigWeightDType(c).status().code(), StatusCode::kUnimplemented);
}

// The prompt's last-position logits and an 8-token greedy continuation.
struct Output {
  std::vector<float> logits;
  std::vector<int32_t> tokens;
};

Output RunModel(const ModelSource& source) {
  CpuBackend backend(2);
  auto model = LoadSourceModel(source, &backend);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return {};
  RunnerOptions ro;
  ro.max_batch_tokens = 64;
  ro.max_seqs = 1;
  ro.num_kv_blocks = 8;
  auto runner = ModelRunner::Create(model->get(), ro);
  EXPECT_TRUE(runner.ok());
  GenerationRequest r;
  r.prompt = {1, 2, 3, 4, 5};
  r.max_new_tokens = 8;
  r.sampling.temperature = 0.0f;
  Generator gen(runner->get());
  auto logits = gen.PromptLogits({&r.prompt, 1});
  EXPECT_TRUE(logits.ok());
  auto out = gen.Generate({&r, 1});
  EXPECT_TRUE(out.ok());
  if (!logits.ok() || !out.ok()) return {};
  return {(*logits)[0], (*out)[0].tokens};
}

TEST(ModelSource, RandomWeightsAreDeterministicPerSeed) {
  for (const char* preset : {"tiny-mixtral", "tiny-olmoe", "tiny-qwen2-moe", "tiny-qwen3-moe"}) {
    const std::string model = std::string("preset:") + preset;
    const Output a = RunModel(ModelSource{model, true, 1});
    const Output b = RunModel(ModelSource{model, true, 1});
    const Output c = RunModel(ModelSource{model, true, 2});
    ASSERT_EQ(a.tokens.size(), 8u) << preset;
    ASSERT_FALSE(a.logits.empty()) << preset;
    EXPECT_EQ(a.tokens, b.tokens) << preset;
    EXPECT_EQ(a.logits, b.logits) << preset;
    EXPECT_NE(a.logits, c.logits) << preset;
  }
}

TEST(ModelSource, WeightBytesPredictsTheAllocation) {
  for (const char* preset : {"tiny-mixtral", "tiny-olmoe", "tiny-qwen2-moe", "tiny-qwen3-moe"}) {
    const ModelSource s{std::string("preset:") + preset, true, 0};
    CpuBackend backend(1);
    auto model = LoadSourceModel(s, &backend);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const ModelConfig& c = (*model)->config();
    // The preset's vectors (norms, biases, rotary table) are f32; rope's inv_freq is extra.
    const size_t inv_freq = static_cast<size_t>(c.head_dim / 2) * sizeof(float);
    EXPECT_NEAR(static_cast<double>(WeightBytes(c, ConfigWeightDType(c).value()) + inv_freq),
                static_cast<double>((*model)->weights_bytes()),
                static_cast<double>(c.num_layers * (c.hidden_size + c.head_dim) * 16))
        << preset;
  }
}

TEST(ModelSource, PresetTokenizerIsSynthesized) {
  auto tok = LoadSourceTokenizer(ModelSource{"preset:tiny-qwen3-moe", true});
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  auto config = LoadSourceConfig(ModelSource{"preset:tiny-qwen3-moe", true});
  ASSERT_TRUE(config.ok());
  EXPECT_EQ((*tok)->vocab_size(), config->vocab_size);
  const std::vector<int32_t> ids = (*tok)->Encode("hello world", false);
  EXPECT_EQ((*tok)->Decode(ids, false), "hello world");
}

}  // namespace
}  // namespace sy
