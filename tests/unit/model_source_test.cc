// `--model preset:NAME --random-weights`: real shapes, weights made by the backend, optionally
// quantized to int8 at load (--quantization int8).
#include "engine/model/model_source.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

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
  for (Quantization q :
       {Quantization::kNone, Quantization::kInt8, Quantization::kInt4, Quantization::kFp8}) {
    for (const char* preset : {"tiny-mixtral", "tiny-olmoe", "tiny-qwen2-moe", "tiny-qwen3-moe"}) {
      const ModelSource s{std::string("preset:") + preset, true, 0, q};
      CpuBackend backend(1);
      auto model = LoadSourceModel(s, &backend);
      ASSERT_TRUE(model.ok()) << model.status().ToString();
      const ModelConfig& c = (*model)->config();
      // The preset's vectors (norms, biases, rotary table) are f32; rope's inv_freq is extra.
      const size_t inv_freq = static_cast<size_t>(c.head_dim / 2) * sizeof(float);
      EXPECT_NEAR(static_cast<double>(WeightBytes(c, ConfigWeightDType(c).value(), q) + inv_freq),
                  static_cast<double>((*model)->weights_bytes()),
                  static_cast<double>(c.num_layers * (c.hidden_size + c.head_dim) * 16))
          << preset << " " << QuantizationName(q);
    }
  }
}

TEST(ModelSource, QuantizationNames) {
  EXPECT_EQ(ParseQuantization("none").value(), Quantization::kNone);
  EXPECT_EQ(ParseQuantization("int8").value(), Quantization::kInt8);
  EXPECT_EQ(ParseQuantization("int4").value(), Quantization::kInt4);
  EXPECT_EQ(ParseQuantization("fp8").value(), Quantization::kFp8);
  for (const char* bad : {"int2", "INT8", "", "int4g64", "FP8", "fp8_e5m2"}) {
    const Status st = ParseQuantization(bad).status();
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(st.message().find("expected none, int8, int4 or fp8"), std::string::npos)
        << st.message();
  }
  EXPECT_EQ(QuantizationName(Quantization::kInt8), "int8");
  EXPECT_EQ(QuantizationName(Quantization::kInt4), "int4");
  EXPECT_EQ(QuantizationName(Quantization::kFp8), "fp8");
  EXPECT_EQ(QuantizedWeightDType(Quantization::kFp8), DType::kF8);
  EXPECT_EQ(QuantizedWeightDType(Quantization::kInt4), DType::kI4G128);
  EXPECT_EQ(QuantizedWeightDType(Quantization::kInt8), DType::kI8);
}

// Int4 bytes: a group of 128 weights takes 64 bytes of values and 4 of f16 scale and min, so a
// bf16 model's matmul weights shrink to about 17/64 of theirs (columns padded to whole groups).
TEST(ModelSource, Int4WeightBytesAreAboutAQuarter) {
  auto c = LoadSourceConfig(ModelSource{"preset:medium-mixtral", true});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const size_t bf16 = WeightBytes(*c, DType::kBF16);
  const size_t int4 = WeightBytes(*c, DType::kBF16, Quantization::kInt4);
  const size_t embed = static_cast<size_t>(c->vocab_size * c->hidden_size) * 2;
  const size_t router = static_cast<size_t>(c->num_layers * c->num_experts * c->hidden_size) * 2;
  EXPECT_NEAR(static_cast<double>(int4 - embed - router),
              static_cast<double>(bf16 - embed - router) * 68 / 256,
              static_cast<double>(bf16 - embed) * 0.01);
}

// Int8 bytes: each quantized matrix is rows x (cols + 4) bytes, so a bf16 model's matmul weights
// shrink to about half; the embedding (and router) stay bf16.
TEST(ModelSource, Int8WeightBytesAreAboutHalf) {
  auto c = LoadSourceConfig(ModelSource{"preset:tiny-mixtral", true});
  ASSERT_TRUE(c.ok());
  const size_t bf16 = WeightBytes(*c, DType::kBF16);
  const size_t int8 = WeightBytes(*c, DType::kBF16, Quantization::kInt8);
  const size_t embed = static_cast<size_t>(c->vocab_size * c->hidden_size) * 2;
  EXPECT_LT(int8, bf16);
  EXPECT_NEAR(static_cast<double>(int8 - embed), static_cast<double>(bf16 - embed) / 2,
              static_cast<double>(bf16 - embed) * 0.05);
}

// Quantized random weights are the unquantized random weights (in the config's dtype) quantized
// per row (int8) or per 128-column block of each row (fp8): the same model a user gets by
// quantizing the checkpoint make-model would write.
TEST(ModelSource, RandomQuantizedWeightsAreTheRandomWeightsQuantized) {
  auto c = LoadSourceConfig(ModelSource{"preset:tiny-mixtral", true});
  ASSERT_TRUE(c.ok());
  CpuBackend backend(1);
  auto plain = RandomModelWeights(*c, &backend, 3, DType::kBF16);
  ASSERT_TRUE(plain.ok());
  for (Quantization quantization : {Quantization::kInt8, Quantization::kFp8}) {
    const DType dtype = quantization == Quantization::kInt8 ? DType::kI8 : DType::kF8;
    auto q = RandomModelWeights(*c, &backend, 3, DType::kBF16, quantization);
    ASSERT_TRUE(q.ok());
    EXPECT_EQ(q->embed.dtype, DType::kBF16);
    EXPECT_EQ(q->layers[0].router.dtype, DType::kBF16);
    const LayerWeights& pl = plain->layers[0];
    const LayerWeights& ql = q->layers[0];
    using Pair = std::pair<const Tensor*, const Tensor*>;
    for (const auto& [want, got] :
         {Pair{&pl.wq, &ql.wq}, Pair{&pl.wo, &ql.wo},
          Pair{&pl.experts[1].gate_up, &ql.experts[1].gate_up},
          Pair{&pl.experts[2].down, &ql.experts[2].down}, Pair{&plain->lm_head, &q->lm_head}}) {
      ASSERT_EQ(got->dtype, dtype);
      ASSERT_EQ(got->rows, want->rows);
      std::vector<float> values(want->cols);
      std::vector<uint8_t> row(got->row_bytes());
      for (int64_t r = 0; r < want->rows; ++r) {
        const void* src = want->Rows(r, 1).data;
        for (int64_t i = 0; i < want->cols; ++i) values[i] = load_as_f32(src, want->dtype, i);
        if (dtype == DType::kI8) {
          quantize_i8_row(values.data(), want->cols, row.data());
        } else {
          quantize_f8_row(values.data(), want->cols, row.data());
        }
        ASSERT_EQ(std::memcmp(row.data(), got->Rows(r, 1).data, row.size()), 0) << "row " << r;
      }
    }
  }
}

// Int4 random weights are the random weights quantized per group as quantize_i4_row does.
TEST(ModelSource, RandomInt4WeightsAreTheRandomWeightsQuantized) {
  auto c = LoadSourceConfig(ModelSource{"preset:tiny-mixtral", true});
  ASSERT_TRUE(c.ok());
  CpuBackend backend(1);
  auto plain = RandomModelWeights(*c, &backend, 3, DType::kBF16);
  auto q4 = RandomModelWeights(*c, &backend, 3, DType::kBF16, Quantization::kInt4);
  ASSERT_TRUE(plain.ok() && q4.ok());
  EXPECT_EQ(q4->embed.dtype, DType::kBF16);
  EXPECT_EQ(q4->layers[0].router.dtype, DType::kBF16);
  const LayerWeights& pl = plain->layers[0];
  const LayerWeights& ql = q4->layers[0];
  using Pair = std::pair<const Tensor*, const Tensor*>;
  for (const auto& [want, got] :
       {Pair{&pl.wk, &ql.wk}, Pair{&pl.experts[1].gate_up, &ql.experts[1].gate_up},
        Pair{&pl.experts[2].down, &ql.experts[2].down}, Pair{&plain->lm_head, &q4->lm_head}}) {
    ASSERT_EQ(got->dtype, DType::kI4G128);
    ASSERT_EQ(got->rows, want->rows);
    std::vector<float> values(want->cols);
    std::vector<uint8_t> row(got->row_bytes());
    for (int64_t r = 0; r < want->rows; ++r) {
      const void* src = want->Rows(r, 1).data;
      for (int64_t i = 0; i < want->cols; ++i) values[i] = load_as_f32(src, want->dtype, i);
      quantize_i4_row(got->dtype, values.data(), want->cols, row.data());
      ASSERT_EQ(std::memcmp(row.data(), got->Rows(r, 1).data, row.size()), 0) << "row " << r;
    }
  }
}

// An int8 model (random weights quantized at load) generates, deterministically, and its logits
// stay near the unquantized model's.
TEST(ModelSource, RandomWeightsQuantizedToInt8Run) {
  const ModelSource none{"preset:tiny-qwen3-moe", true, 1};
  const ModelSource int8{"preset:tiny-qwen3-moe", true, 1, Quantization::kInt8};
  const Output a = RunModel(int8);
  const Output b = RunModel(int8);
  const Output ref = RunModel(none);
  ASSERT_EQ(a.tokens.size(), 8u);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.logits, b.logits);
  ASSERT_EQ(a.logits.size(), ref.logits.size());
  EXPECT_NE(a.logits, ref.logits);
  float max_diff = 0;
  for (size_t i = 0; i < a.logits.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(a.logits[i] - ref.logits[i]));
  }
  EXPECT_LT(max_diff, 0.5f);
}

// The same for int4: deterministic, changed, and near the unquantized logits (4-bit steps are
// 16x coarser than int8's, so the bound is wider).
TEST(ModelSource, RandomWeightsQuantizedToInt4Run) {
  const ModelSource none{"preset:tiny-qwen3-moe", true, 1};
  const ModelSource int4{"preset:tiny-qwen3-moe", true, 1, Quantization::kInt4};
  const Output a = RunModel(int4);
  const Output b = RunModel(int4);
  const Output ref = RunModel(none);
  ASSERT_EQ(a.tokens.size(), 8u);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.logits, b.logits);
  ASSERT_EQ(a.logits.size(), ref.logits.size());
  EXPECT_NE(a.logits, ref.logits);
  float max_diff = 0;
  for (size_t i = 0; i < a.logits.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(a.logits[i] - ref.logits[i]));
  }
  EXPECT_LT(max_diff, 2.0f);
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
