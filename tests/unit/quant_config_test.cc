// config.json quantization_config: the FP8 formats parse (transformers' fp8 with
// weight_block_size, per-tensor fp8, compressed-tensors float 8-bit at each strategy), anything
// the loader cannot honour fails naming the field, module exclusions match as each format
// means them, and configs round-trip through ModelConfigToJson.
#include "engine/model/quant_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/model/config.h"

namespace sy {
namespace {

using nlohmann::json;

QuantizationConfig MustParse(const char* text) {
  auto q = ParseQuantizationConfig(json::parse(text));
  EXPECT_TRUE(q.ok()) << q.status().ToString();
  return q.ok() ? *q : QuantizationConfig{};
}

void ExpectUnsupported(const char* text, const std::string& field) {
  const Status st = ParseQuantizationConfig(json::parse(text)).status();
  EXPECT_EQ(st.code(), StatusCode::kUnimplemented) << text << ": " << st.ToString();
  EXPECT_NE(st.message().find("'" + field + "'"), std::string::npos) << st.message();
}

TEST(QuantConfig, Fp8BlockScaledAsDeepSeekV3Publishes) {
  const QuantizationConfig q = MustParse(R"({"activation_scheme": "dynamic", "fmt": "e4m3",
      "quant_method": "fp8", "weight_block_size": [128, 128],
      "modules_to_not_convert": ["lm_head", "model.layers.0.mlp.gate"]})");
  EXPECT_EQ(q.method, QuantMethod::kFp8);
  EXPECT_EQ(q.granularity, ScaleGranularity::kBlock);
  EXPECT_EQ(q.block_rows, 128);
  EXPECT_EQ(q.block_cols, 128);
  EXPECT_EQ(q.scale_name, "weight_scale_inv");
  EXPECT_TRUE(q.Quantizes("model.layers.0.self_attn.q_proj"));
  EXPECT_TRUE(q.Quantizes("model.layers.0.mlp.experts.3.down_proj"));
  EXPECT_FALSE(q.Quantizes("lm_head"));
  EXPECT_FALSE(q.Quantizes("model.layers.0.mlp.gate"));  // transformers: a substring match
  EXPECT_TRUE(q.Quantizes("model.layers.1.mlp.gate"));
}

TEST(QuantConfig, Fp8WithoutBlockSizeIsPerTensor) {
  const QuantizationConfig q = MustParse(R"({"quant_method": "fp8", "ignored_layers": ["x"]})");
  EXPECT_EQ(q.granularity, ScaleGranularity::kTensor);
  EXPECT_EQ(q.scale_name, "weight_scale");
  EXPECT_FALSE(q.Quantizes("a.x.b"));
}

TEST(QuantConfig, CompressedTensorsFloat8EveryStrategy) {
  const QuantizationConfig channel = MustParse(R"({"quant_method": "compressed-tensors",
      "format": "float-quantized", "config_groups": {"group_0": {"targets": ["Linear"],
      "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": true,
                  "dynamic": false},
      "input_activations": {"num_bits": 8, "type": "float", "strategy": "token",
                            "dynamic": true}}},
      "ignore": ["lm_head", "re:.*mlp\\.gate$"]})");
  EXPECT_EQ(channel.method, QuantMethod::kFp8);
  EXPECT_EQ(channel.granularity, ScaleGranularity::kChannel);
  EXPECT_EQ(channel.scale_name, "weight_scale");
  EXPECT_FALSE(channel.Quantizes("lm_head"));
  EXPECT_FALSE(channel.Quantizes("model.layers.2.mlp.gate"));
  EXPECT_TRUE(channel.Quantizes("model.layers.2.mlp.gate_proj"));
  EXPECT_TRUE(channel.Quantizes("lm_head_2"));  // exact names, not substrings

  const QuantizationConfig tensor = MustParse(R"({"quant_method": "compressed-tensors",
      "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}})");
  EXPECT_EQ(tensor.granularity, ScaleGranularity::kTensor);

  const QuantizationConfig block = MustParse(R"({"quant_method": "compressed-tensors",
      "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float", "strategy": "block",
      "block_structure": [64, 32]}}}})");
  EXPECT_EQ(block.granularity, ScaleGranularity::kBlock);
  EXPECT_EQ(block.block_rows, 64);
  EXPECT_EQ(block.block_cols, 32);
}

TEST(QuantConfig, WhatCannotBeHonouredFailsNamingTheField) {
  ExpectUnsupported(R"({"quant_method": "bitsandbytes", "load_in_4bit": true})",
                    "quantization_config.quant_method");
  ExpectUnsupported(R"({"quant_method": "fp8", "activation_scheme": "static"})",
                    "quantization_config.activation_scheme");
  ExpectUnsupported(R"({"quant_method": "fp8", "fmt": "e5m2"})", "quantization_config.fmt");
  ExpectUnsupported(R"({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
      "weights": {"num_bits": 8, "type": "float"},
      "input_activations": {"num_bits": 8, "type": "float", "dynamic": false}}}})",
                    "quantization_config.config_groups.group_0.input_activations.dynamic");
  ExpectUnsupported(R"({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
      "weights": {"num_bits": 8, "type": "int"}}}})",
                    "quantization_config.config_groups.group_0.weights.type");
  ExpectUnsupported(R"({"quant_method": "compressed-tensors", "config_groups": {"group_0": {
      "weights": {"num_bits": 4, "type": "float"}}}})",
                    "quantization_config.config_groups.group_0.weights.num_bits");
  ExpectUnsupported(R"({"quant_method": "compressed-tensors", "format": "marlin-24",
      "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}})",
                    "quantization_config.format");
  ExpectUnsupported(R"({"quant_method": "compressed-tensors", "kv_cache_scheme": {"num_bits": 8},
      "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float"}}}})",
                    "quantization_config.kv_cache_scheme");
  const Status bad_block =
      ParseQuantizationConfig(
          json::parse(R"({"quant_method": "fp8", "weight_block_size": [0, 1]})"))
          .status();
  EXPECT_EQ(bad_block.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_block.message().find("weight_block_size"), std::string::npos);
}

TEST(QuantConfig, ModelConfigCarriesAndRoundTripsIt) {
  json cfg = {{"architectures", {"MixtralForCausalLM"}},
              {"vocab_size", 300},
              {"hidden_size", 64},
              {"num_hidden_layers", 1},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 2},
              {"intermediate_size", 32},
              {"num_local_experts", 4},
              {"num_experts_per_tok", 2},
              {"max_position_embeddings", 64}};
  auto plain = ParseModelConfig(cfg.dump());
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->quantization_config.method, QuantMethod::kNone);
  EXPECT_FALSE(plain->quantization_config.Quantizes("model.layers.0.self_attn.q_proj"));
  for (
      const char* q :
      {R"({"quant_method": "fp8", "weight_block_size": [32, 64], "modules_to_not_convert": ["lm_head"]})",
       R"({"quant_method": "compressed-tensors", "ignore": ["lm_head"], "config_groups": {"g":
            {"weights": {"num_bits": 8, "type": "float", "strategy": "block",
                         "block_structure": [128, 128]}}}})"}) {
    cfg["quantization_config"] = json::parse(q);
    auto c = ParseModelConfig(cfg.dump());
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(c->quantization_config.method, QuantMethod::kFp8);
    auto again = ParseModelConfig(ModelConfigToJson(*c).dump());
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(again->quantization_config, c->quantization_config) << q;
  }
  cfg["quantization_config"] = {{"quant_method", "bitsandbytes"}};
  EXPECT_EQ(ParseModelConfig(cfg.dump()).status().code(), StatusCode::kUnimplemented);
}

// GPTQ, AWQ and pack-quantized configs belong to the int4 loader (int4_checkpoint.h, which
// checks their fields): the model config keeps them as given.
TEST(QuantConfig, Int4FormatsAreKeptForTheirLoader) {
  for (const char* q : {R"({"quant_method": "gptq", "bits": 4, "group_size": 128})",
                        R"({"quant_method": "awq", "bits": 4, "version": "gemm"})",
                        R"({"quant_method": "compressed-tensors", "format": "pack-quantized"})"}) {
    auto c = ParseQuantizationConfig(json::parse(q));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_EQ(c->method, QuantMethod::kInt4);
    EXPECT_EQ(QuantizationConfigToJson(*c), json::parse(q));
  }
}

}  // namespace
}  // namespace sy
