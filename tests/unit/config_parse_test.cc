// ParseModelConfig on the published config.json of each supported architecture, every error
// path, and ModelConfigToJson -> ParseModelConfig round trips.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/model/config.h"

namespace sy {
namespace {

using nlohmann::json;

// mistralai/Mixtral-8x7B-v0.1
const char kMixtral[] = R"({
  "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
  "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
  "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mixtral",
  "num_attention_heads": 32, "num_experts_per_tok": 2, "num_hidden_layers": 32,
  "num_key_value_heads": 8, "num_local_experts": 8, "output_router_logits": false,
  "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.02,
  "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.36.0.dev0", "use_cache": true, "vocab_size": 32000})";

// Qwen/Qwen3-30B-A3B
const char kQwen3Moe[] = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 151643, "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128,
  "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
  "intermediate_size": 6144, "max_position_embeddings": 40960, "max_window_layers": 48,
  "mlp_only_layers": [], "model_type": "qwen3_moe", "moe_intermediate_size": 768,
  "norm_topk_prob": true, "num_attention_heads": 32, "num_experts": 128,
  "num_experts_per_tok": 8, "num_hidden_layers": 48, "num_key_value_heads": 4,
  "output_router_logits": false, "rms_norm_eps": 1e-06, "rope_scaling": null,
  "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001, "sliding_window": null,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
  "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})";

// allenai/OLMoE-1B-7B-0924
const char kOlmoe[] = R"({
  "architectures": ["OlmoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "clip_qkv": null, "eos_token_id": 50279, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 1024, "max_position_embeddings": 4096,
  "model_type": "olmoe", "norm_topk_prob": false, "num_attention_heads": 16, "num_experts": 64,
  "num_experts_per_tok": 8, "num_hidden_layers": 16, "num_key_value_heads": 16,
  "output_router_logits": false, "pad_token_id": 1, "rms_norm_eps": 1e-05,
  "rope_scaling": null, "rope_theta": 10000.0, "router_aux_loss_coef": 0.01,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 50304})";

// Qwen/Qwen1.5-MoE-A2.7B
const char kQwen2Moe[] = R"({
  "architectures": ["Qwen2MoeForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
  "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 5632, "max_position_embeddings": 8192,
  "max_window_layers": 21, "model_type": "qwen2_moe", "num_attention_heads": 16,
  "num_hidden_layers": 24, "num_key_value_heads": 16, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": false,
  "torch_dtype": "bfloat16", "transformers_version": "4.39.0.dev0", "use_cache": true,
  "use_sliding_window": false, "vocab_size": 151936, "decoder_sparse_step": 1,
  "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
  "num_experts_per_tok": 4, "num_experts": 60, "norm_topk_prob": false,
  "output_router_logits": false, "router_aux_loss_coef": 0.001})";

ModelConfig MustParse(const std::string& text) {
  auto c = ParseModelConfig(text);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? c.value() : ModelConfig();
}

// `base` with `patch` merged in (RFC 7386: null removes a key).
std::string Patched(const char* base, const json& patch) {
  json j = json::parse(base);
  j.merge_patch(patch);
  return j.dump();
}

// `base` with `patch` merged in and `key` set to null.
std::string WithNull(const char* base, const char* key, const json& patch = json::object()) {
  json j = json::parse(base);
  j.merge_patch(patch);
  j[key] = nullptr;
  return j.dump();
}

void ExpectError(const std::string& text, StatusCode code, const std::string& fragment) {
  auto c = ParseModelConfig(text);
  ASSERT_FALSE(c.ok()) << "parsed: " << text.substr(0, 200);
  EXPECT_EQ(c.status().code(), code) << c.status().ToString();
  EXPECT_NE(c.status().message().find(fragment), std::string::npos) << c.status().ToString();
}

void ExpectRoundTrip(const ModelConfig& c) {
  const std::string text = ModelConfigToJson(c).dump(2);
  auto back = ParseModelConfig(text);
  ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << text;
  EXPECT_TRUE(back.value() == c) << text;
}

TEST(ModelConfig, Mixtral8x7B) {
  const ModelConfig c = MustParse(kMixtral);
  EXPECT_EQ(c.arch, Arch::kMixtral);
  EXPECT_EQ(c.architecture, "MixtralForCausalLM");
  EXPECT_EQ(c.model_type, "mixtral");
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.layer_uses_sliding_window, std::vector<bool>(32, false));
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.qk_norm, QkNorm::kNone);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_EQ(c.moe_intermediate_size, 14336);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.shared_expert_intermediate_size, 0);
  EXPECT_EQ(c.dense_intermediate_size, 0);
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(32, true));
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfig, Qwen3_30B_A3B) {
  const ModelConfig c = MustParse(kQwen3Moe);
  EXPECT_EQ(c.arch, Arch::kQwen3Moe);
  EXPECT_EQ(c.model_type, "qwen3_moe");
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_EQ(c.num_layers, 48);
  EXPECT_EQ(c.num_heads, 32);
  EXPECT_EQ(c.num_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 128);  // explicit: hidden_size / heads would be 64
  EXPECT_EQ(c.max_position_embeddings, 40960);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 1e6);
  EXPECT_EQ(c.qk_norm, QkNorm::kPerHead);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.num_experts, 128);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.moe_intermediate_size, 768);
  EXPECT_EQ(c.dense_intermediate_size, 6144);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(48, true));
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{151645});
}

TEST(ModelConfig, Olmoe1B7B) {
  const ModelConfig c = MustParse(kOlmoe);
  EXPECT_EQ(c.arch, Arch::kOlmoe);
  EXPECT_EQ(c.vocab_size, 50304);
  EXPECT_EQ(c.hidden_size, 2048);
  EXPECT_EQ(c.num_layers, 16);
  EXPECT_EQ(c.num_kv_heads, 16);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.qk_norm, QkNorm::kFull);
  EXPECT_FALSE(c.clip_qkv.has_value());
  EXPECT_EQ(c.num_experts, 64);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.moe_intermediate_size, 1024);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_FALSE(c.bos_token_id.has_value());
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{50279});
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
}

TEST(ModelConfig, Qwen15MoeA27B) {
  const ModelConfig c = MustParse(kQwen2Moe);
  EXPECT_EQ(c.arch, Arch::kQwen2Moe);
  EXPECT_EQ(c.num_layers, 24);
  EXPECT_EQ(c.num_heads, 16);
  EXPECT_EQ(c.num_kv_heads, 16);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.max_position_embeddings, 8192);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.qk_norm, QkNorm::kNone);
  EXPECT_EQ(c.sliding_window, 0);  // use_sliding_window is false
  EXPECT_EQ(c.layer_uses_sliding_window, std::vector<bool>(24, false));
  EXPECT_EQ(c.num_experts, 60);
  EXPECT_EQ(c.num_experts_per_tok, 4);
  EXPECT_EQ(c.moe_intermediate_size, 1408);
  EXPECT_EQ(c.shared_expert_intermediate_size, 5632);
  EXPECT_EQ(c.dense_intermediate_size, 5632);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.layer_is_moe, std::vector<bool>(24, true));
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{151643});
}

TEST(ModelConfig, HuggingFaceDefaultsForOptionalFields) {
  const json drop = {{"num_key_value_heads", nullptr}, {"max_position_embeddings", nullptr},
                     {"rms_norm_eps", nullptr},        {"rope_theta", nullptr},
                     {"num_experts_per_tok", nullptr}, {"bos_token_id", nullptr},
                     {"eos_token_id", nullptr},        {"norm_topk_prob", nullptr},
                     {"tie_word_embeddings", nullptr}, {"torch_dtype", nullptr}};
  ModelConfig m = MustParse(Patched(kMixtral, drop));
  EXPECT_EQ(m.num_kv_heads, 8);
  EXPECT_EQ(m.max_position_embeddings, 131072);
  EXPECT_DOUBLE_EQ(m.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(m.rope_theta, 1e6);
  EXPECT_EQ(m.num_experts_per_tok, 2);
  EXPECT_EQ(m.bos_token_id, 1);
  EXPECT_EQ(m.eos_token_ids, std::vector<int32_t>{2});
  EXPECT_EQ(m.torch_dtype, "");
  ModelConfig q2 = MustParse(Patched(kQwen2Moe, drop));
  EXPECT_EQ(q2.num_kv_heads, 16);
  EXPECT_EQ(q2.max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(q2.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(q2.rope_theta, 10000.0);
  EXPECT_EQ(q2.num_experts_per_tok, 4);
  EXPECT_FALSE(q2.bos_token_id.has_value());
  EXPECT_TRUE(q2.eos_token_ids.empty());
  EXPECT_FALSE(q2.norm_topk_prob);
  ModelConfig q3 = MustParse(Patched(kQwen3Moe, drop));
  EXPECT_EQ(q3.num_kv_heads, 4);
  EXPECT_EQ(q3.num_experts_per_tok, 8);
  EXPECT_FALSE(q3.norm_topk_prob);
  ModelConfig o = MustParse(Patched(kOlmoe, drop));
  EXPECT_EQ(o.num_kv_heads, 16);  // OLMoE: defaults to num_attention_heads
  EXPECT_EQ(o.max_position_embeddings, 4096);
  EXPECT_EQ(o.eos_token_ids, std::vector<int32_t>{50279});
  // Explicit nulls mean None, as in transformers.
  ModelConfig n = MustParse(WithNull(kMixtral, "bos_token_id"));
  EXPECT_FALSE(n.bos_token_id.has_value());
}

TEST(ModelConfig, ModelTypeFallbackAndAliases) {
  ModelConfig c = MustParse(Patched(kOlmoe, {{"architectures", nullptr}}));
  EXPECT_EQ(c.arch, Arch::kOlmoe);
  EXPECT_EQ(c.architecture, "OlmoeForCausalLM");
  c = MustParse(Patched(kMixtral, {{"num_local_experts", nullptr}, {"num_experts", 4}}));
  EXPECT_EQ(c.num_experts, 4);
  c = MustParse(Patched(kMixtral, {{"head_dim", 96}}));
  EXPECT_EQ(c.head_dim, 96);
  c = MustParse(Patched(kMixtral, {{"eos_token_id", {2, 32000 - 1}}}));
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{2, 31999}));
  c = MustParse(Patched(kMixtral, {{"hidden_act", "swish"}}));
  EXPECT_EQ(c.arch, Arch::kMixtral);
  c = MustParse(Patched(kQwen3Moe, {{"torch_dtype", nullptr}, {"dtype", "float32"}}));
  EXPECT_EQ(c.torch_dtype, "float32");
  c = MustParse(Patched(kQwen3Moe, {{"attention_bias", true}}));
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  c = MustParse(Patched(kOlmoe, {{"clip_qkv", 8.0}}));
  EXPECT_EQ(c.clip_qkv, 8.0);
}

TEST(ModelConfig, SlidingWindows) {
  ModelConfig m = MustParse(Patched(kMixtral, {{"sliding_window", 4096}}));
  EXPECT_EQ(m.sliding_window, 4096);
  EXPECT_EQ(m.layer_uses_sliding_window, std::vector<bool>(32, true));

  // Qwen2Moe, transformers' rule: even layers below max_window_layers.
  ModelConfig q = MustParse(
      Patched(kQwen2Moe,
              {{"use_sliding_window", true}, {"max_window_layers", 5}, {"num_hidden_layers", 8}}));
  EXPECT_EQ(q.sliding_window, 32768);
  EXPECT_EQ(q.layer_uses_sliding_window,
            (std::vector<bool>{true, false, true, false, true, false, false, false}));
  q = MustParse(Patched(
      kQwen2Moe, {{"use_sliding_window", true},
                  {"num_hidden_layers", 3},
                  {"layer_types", {"full_attention", "sliding_attention", "sliding_attention"}}}));
  EXPECT_EQ(q.layer_uses_sliding_window, (std::vector<bool>{false, true, true}));
  // An explicit null window means none; a missing one takes the class default, 4096.
  q = MustParse(WithNull(kQwen2Moe, "sliding_window", {{"use_sliding_window", true}}));
  EXPECT_EQ(q.sliding_window, 0);
  EXPECT_EQ(q.layer_uses_sliding_window, std::vector<bool>(24, false));
  q = MustParse(Patched(kQwen2Moe, {{"use_sliding_window", true}, {"sliding_window", nullptr}}));
  EXPECT_EQ(q.sliding_window, 4096);
  for (int i = 0; i < 24; ++i) {
    EXPECT_EQ(q.layer_uses_sliding_window[i], i % 2 == 0 && i < 21) << i;  // max_window_layers 21
  }

  ModelConfig q3 = MustParse(Patched(kQwen3Moe, {{"use_sliding_window", true}}));
  EXPECT_EQ(q3.sliding_window, 0);  // sliding_window is null in the published config
  q3 = MustParse(Patched(kQwen3Moe, {{"use_sliding_window", true}, {"sliding_window", 2048}}));
  EXPECT_EQ(q3.sliding_window, 2048);
  EXPECT_EQ(q3.layer_uses_sliding_window, std::vector<bool>(48, true));
  json no_window = json::parse(kQwen3Moe);
  no_window.erase("sliding_window");
  no_window["use_sliding_window"] = true;
  q3 = MustParse(no_window.dump());
  EXPECT_EQ(q3.sliding_window, 4096);  // the class default
}

TEST(ModelConfig, SparseLayers) {
  ModelConfig c = MustParse(Patched(
      kQwen2Moe, {{"num_hidden_layers", 6}, {"decoder_sparse_step", 2}, {"mlp_only_layers", {3}}}));
  EXPECT_EQ(c.layer_is_moe, (std::vector<bool>{false, true, false, false, false, true}));
  EXPECT_EQ(c.dense_intermediate_size, 5632);
  c = MustParse(Patched(kQwen3Moe, {{"num_hidden_layers", 4}, {"mlp_only_layers", {0, 3}}}));
  EXPECT_EQ(c.layer_is_moe, (std::vector<bool>{false, true, true, false}));
  // All layers sparse: intermediate_size may be absent and takes the class default.
  c = MustParse(Patched(kQwen3Moe, {{"intermediate_size", nullptr}}));
  EXPECT_EQ(c.dense_intermediate_size, 6144);
  ExpectError(Patched(kQwen3Moe, {{"intermediate_size", nullptr}, {"mlp_only_layers", {0}}}),
              StatusCode::kInvalidArgument, "field 'intermediate_size' is missing");
}

TEST(ModelConfig, RopeScaling) {
  ModelConfig c =
      MustParse(Patched(kMixtral, {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}}));
  EXPECT_EQ(c.rope_scaling.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 2.0);
  c = MustParse(Patched(kQwen3Moe, {{"rope_scaling",
                                     {{"rope_type", "yarn"},
                                      {"factor", 4.0},
                                      {"original_max_position_embeddings", 32768},
                                      {"beta_fast", 16},
                                      {"attention_factor", 1.2},
                                      {"truncate", false}}}}));
  EXPECT_EQ(c.rope_scaling.type, "yarn");
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 4.0);
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 32768);
  EXPECT_DOUBLE_EQ(c.rope_scaling.beta_fast, 16);
  EXPECT_DOUBLE_EQ(c.rope_scaling.beta_slow, 1);
  EXPECT_EQ(c.rope_scaling.attention_factor, 1.2);
  EXPECT_FALSE(c.rope_scaling.mscale.has_value());
  EXPECT_FALSE(c.rope_scaling.truncate);
  c = MustParse(Patched(kMixtral, {{"rope_scaling",
                                    {{"rope_type", "llama3"},
                                     {"factor", 8.0},
                                     {"original_max_position_embeddings", 8192},
                                     {"low_freq_factor", 1.0},
                                     {"high_freq_factor", 4.0}}}}));
  EXPECT_EQ(c.rope_scaling.type, "llama3");
  EXPECT_EQ(c.rope_scaling.original_max_position_embeddings, 8192);
  // transformers 5 form: rope_parameters carries the theta.
  c = MustParse(Patched(
      kOlmoe,
      {{"rope_theta", nullptr},
       {"rope_scaling", nullptr},
       {"rope_parameters", {{"rope_type", "dynamic"}, {"factor", 2.0}, {"rope_theta", 5e5}}}}));
  EXPECT_EQ(c.rope_scaling.type, "dynamic");
  EXPECT_DOUBLE_EQ(c.rope_theta, 5e5);
  c = MustParse(
      Patched(kOlmoe, {{"rope_parameters", {{"rope_type", "default"}, {"rope_theta", 7.0}}}}));
  EXPECT_EQ(c.rope_scaling.type, "default");
  EXPECT_DOUBLE_EQ(c.rope_theta, 7.0);
  c = MustParse(Patched(kOlmoe, {{"partial_rotary_factor", 0.5}}));
  EXPECT_DOUBLE_EQ(c.partial_rotary_factor, 0.5);

  ExpectError(Patched(kMixtral, {{"rope_scaling", {{"type", "longrope"}, {"factor", 2.0}}}}),
              StatusCode::kUnimplemented, "unsupported rope type 'longrope'");
  ExpectError(Patched(kMixtral, {{"rope_scaling", {{"type", "linear"}}}}),
              StatusCode::kInvalidArgument, "field 'rope_scaling.factor' is missing");
  ExpectError(Patched(kMixtral, {{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}}}),
              StatusCode::kInvalidArgument,
              "field 'rope_scaling.original_max_position_embeddings' is missing");
  ExpectError(Patched(kMixtral, {{"rope_scaling",
                                  {{"rope_type", "llama3"},
                                   {"factor", 8.0},
                                   {"original_max_position_embeddings", 8192}}}}),
              StatusCode::kInvalidArgument, "field 'rope_scaling.low_freq_factor' is missing");
  ExpectError(Patched(kMixtral, {{"rope_scaling", {{"type", "linear"}, {"factor", -1.0}}}}),
              StatusCode::kInvalidArgument, "field 'rope_scaling.factor' must be positive");
  ExpectError(Patched(kMixtral, {{"rope_scaling", {{"type", "linear"}, {"factor", "2"}}}}),
              StatusCode::kInvalidArgument, "field 'rope_scaling.factor' must be a number");
  ExpectError(Patched(kMixtral, {{"rope_scaling", "linear"}}), StatusCode::kInvalidArgument,
              "field 'rope_scaling' must be an object or null");
  ExpectError(Patched(kMixtral, {{"rope_parameters", {{"rope_type", 3}}}}),
              StatusCode::kInvalidArgument, "field 'rope_parameters.rope_type' must be a string");
  ExpectError(Patched(kMixtral, {{"rope_theta", 0}}), StatusCode::kInvalidArgument,
              "field 'rope_theta' must be positive");
  ExpectError(Patched(kMixtral, {{"partial_rotary_factor", 1.5}}), StatusCode::kInvalidArgument,
              "partial_rotary_factor");
}

TEST(ModelConfig, ArchitectureErrors) {
  auto c = ParseModelConfig(Patched(kMixtral, {{"architectures", {"LlamaForCausalLM"}}}));
  EXPECT_EQ(c.status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(c.status().message(),
            "unsupported architecture 'LlamaForCausalLM' (supported: MixtralForCausalLM, "
            "Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, OlmoeForCausalLM, DeepseekV2ForCausalLM, "
            "DeepseekV3ForCausalLM, Glm4MoeForCausalLM)");
  ExpectError(Patched(kMixtral, {{"architectures", nullptr}, {"model_type", "llama"}}),
              StatusCode::kUnimplemented, "unsupported architecture 'llama'");
  ExpectError(Patched(kMixtral, {{"architectures", nullptr}, {"model_type", nullptr}}),
              StatusCode::kInvalidArgument, "neither 'architectures' nor 'model_type'");
  ExpectError(Patched(kMixtral, {{"architectures", json::array()}}), StatusCode::kInvalidArgument,
              "field 'architectures' must be a non-empty list of strings");
  ExpectError(Patched(kMixtral, {{"architectures", "MixtralForCausalLM"}}),
              StatusCode::kInvalidArgument, "field 'architectures'");
  ExpectError(Patched(kMixtral, {{"model_type", "qwen2_moe"}}), StatusCode::kInvalidArgument,
              "model_type 'qwen2_moe' does not match architecture MixtralForCausalLM");
  ExpectError(Patched(kMixtral, {{"hidden_act", "gelu"}}), StatusCode::kUnimplemented,
              "unsupported hidden_act 'gelu'");
}

TEST(ModelConfig, FieldErrors) {
  ExpectError("{not json", StatusCode::kInvalidArgument, "not valid JSON");
  ExpectError("[1, 2]", StatusCode::kInvalidArgument, "not a JSON object");
  ExpectError(std::string(200, '[') + std::string(200, ']'), StatusCode::kInvalidArgument,
              "config.json nests arrays and objects deeper than 64 levels");
  for (const char* field : {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                            "num_local_experts", "intermediate_size"}) {
    ExpectError(Patched(kMixtral, {{field, nullptr}}), StatusCode::kInvalidArgument,
                std::string("field '") + field + "' is missing");
    ExpectError(Patched(kMixtral, {{field, "8"}}), StatusCode::kInvalidArgument,
                std::string("field '") + field + "' must be an integer, got \"8\"");
    ExpectError(Patched(kMixtral, {{field, 8.5}}), StatusCode::kInvalidArgument,
                std::string("field '") + field + "' must be an integer");
    ExpectError(Patched(kMixtral, {{field, 0}}), StatusCode::kInvalidArgument,
                std::string("field '") + field + "' must be between 1 and");
  }
  for (const char* field :
       {"num_experts", "moe_intermediate_size", "shared_expert_intermediate_size"}) {
    ExpectError(Patched(kQwen2Moe, {{field, nullptr}}), StatusCode::kInvalidArgument,
                std::string("field '") + field + "' is missing");
    ExpectError(Patched(kQwen2Moe, {{field, -3}}), StatusCode::kInvalidArgument,
                std::string("field '") + field + "' must be between 1 and");
  }
  ExpectError(Patched(kMixtral, {{"hidden_size", 18446744073709551615u}}),
              StatusCode::kInvalidArgument,
              "field 'hidden_size' must be a 64-bit integer, got 18446744073709551615");
  ExpectError(Patched(kMixtral, {{"num_hidden_layers", 1 << 20}}), StatusCode::kInvalidArgument,
              "field 'num_hidden_layers' must be between 1 and 65536");
  ExpectError(Patched(kMixtral, {{"num_key_value_heads", 5}}), StatusCode::kInvalidArgument,
              "num_attention_heads (32) must be a multiple of num_key_value_heads (5)");
  ExpectError(Patched(kMixtral, {{"num_key_value_heads", 64}}), StatusCode::kInvalidArgument,
              "field 'num_key_value_heads' must be between 1 and 32");
  ExpectError(Patched(kMixtral, {{"num_experts_per_tok", 9}}), StatusCode::kInvalidArgument,
              "field 'num_experts_per_tok' must be between 1 and 8, got 9");
  ExpectError(Patched(kMixtral, {{"rms_norm_eps", -1e-5}}), StatusCode::kInvalidArgument,
              "field 'rms_norm_eps' must be positive");
  ExpectError(Patched(kMixtral, {{"tie_word_embeddings", 1}}), StatusCode::kInvalidArgument,
              "field 'tie_word_embeddings' must be true or false");
  ExpectError(Patched(kMixtral, {{"torch_dtype", 16}}), StatusCode::kInvalidArgument,
              "field 'torch_dtype' must be a string");
  ExpectError(Patched(kMixtral, {{"eos_token_id", "2"}}), StatusCode::kInvalidArgument,
              "field 'eos_token_id' must be a token id");
  ExpectError(Patched(kMixtral, {{"eos_token_id", {2, -1}}}), StatusCode::kInvalidArgument,
              "field 'eos_token_id' must be a token id");
  ExpectError(Patched(kMixtral, {{"bos_token_id", 4294967296}}), StatusCode::kInvalidArgument,
              "field 'bos_token_id' must be a token id");
  ExpectError(Patched(kMixtral, {{"head_dim", 0}}), StatusCode::kInvalidArgument,
              "field 'head_dim' must be between 1 and");
  ExpectError(Patched(kMixtral, {{"sliding_window", -1}}), StatusCode::kInvalidArgument,
              "field 'sliding_window'");
  ExpectError(Patched(kOlmoe, {{"head_dim", 64}}), StatusCode::kInvalidArgument,
              "OLMoE needs hidden_size (2048) = num_attention_heads * head_dim (16 * 64)");
  ExpectError(Patched(kOlmoe, {{"clip_qkv", 0}}), StatusCode::kInvalidArgument,
              "field 'clip_qkv' must be positive");
  ExpectError(Patched(kQwen2Moe, {{"decoder_sparse_step", 0}}), StatusCode::kInvalidArgument,
              "field 'decoder_sparse_step' must be between 1");
  ExpectError(Patched(kQwen2Moe, {{"mlp_only_layers", {24}}}), StatusCode::kInvalidArgument,
              "field 'mlp_only_layers' must be a list of layer indices below num_hidden_layers");
  ExpectError(Patched(kQwen2Moe, {{"mlp_only_layers", 3}}), StatusCode::kInvalidArgument,
              "field 'mlp_only_layers'");
  ExpectError(Patched(kQwen2Moe, {{"layer_types", {"full_attention"}}}),
              StatusCode::kInvalidArgument, "field 'layer_types'");
  ExpectError(Patched(kQwen2Moe, {{"use_sliding_window", "yes"}}), StatusCode::kInvalidArgument,
              "field 'use_sliding_window' must be true or false");
  ExpectError(Patched(kQwen2Moe, {{"max_window_layers", "x"}}), StatusCode::kInvalidArgument,
              "field 'max_window_layers' must be an integer");
  ExpectError(Patched(kQwen3Moe, {{"norm_topk_prob", "true"}}), StatusCode::kInvalidArgument,
              "field 'norm_topk_prob' must be true or false");
}

TEST(ModelConfig, RoundTrips) {
  for (const char* text : {kMixtral, kQwen3Moe, kOlmoe, kQwen2Moe}) {
    ExpectRoundTrip(MustParse(text));
  }
  ExpectRoundTrip(MustParse(Patched(kMixtral, {{"sliding_window", 4096},
                                               {"eos_token_id", {2, 7}},
                                               {"tie_word_embeddings", true},
                                               {"rope_scaling",
                                                {{"rope_type", "llama3"},
                                                 {"factor", 8.0},
                                                 {"original_max_position_embeddings", 8192},
                                                 {"low_freq_factor", 2.0},
                                                 {"high_freq_factor", 3.0}}}})));
  ExpectRoundTrip(MustParse(Patched(kQwen2Moe, {{"use_sliding_window", true},
                                                {"max_window_layers", 9},
                                                {"decoder_sparse_step", 3},
                                                {"mlp_only_layers", {4}},
                                                {"norm_topk_prob", true},
                                                {"bos_token_id", nullptr}})));
  ExpectRoundTrip(MustParse(Patched(kQwen3Moe, {{"use_sliding_window", true},
                                                {"sliding_window", 1024},
                                                {"attention_bias", true},
                                                {"mlp_only_layers", {0, 47}},
                                                {"partial_rotary_factor", 0.25},
                                                {"rope_scaling",
                                                 {{"rope_type", "yarn"},
                                                  {"factor", 4.0},
                                                  {"original_max_position_embeddings", 32768},
                                                  {"mscale", 0.7},
                                                  {"mscale_all_dim", 0.5},
                                                  {"attention_factor", 1.1},
                                                  {"truncate", false}}}})));
  ExpectRoundTrip(
      MustParse(Patched(kOlmoe, {{"clip_qkv", 8.0},
                                 {"eos_token_id", json::array()},
                                 {"norm_topk_prob", true},
                                 {"rope_scaling", {{"type", "dynamic"}, {"factor", 2.0}}}})));
}

TEST(ModelConfig, ToJsonUsesEachArchitecturesFieldNames) {
  const json m = ModelConfigToJson(MustParse(kMixtral));
  EXPECT_EQ(m["architectures"], json::array({"MixtralForCausalLM"}));
  EXPECT_EQ(m["model_type"], "mixtral");
  EXPECT_EQ(m["num_local_experts"], 8);
  EXPECT_EQ(m["intermediate_size"], 14336);
  EXPECT_FALSE(m.contains("moe_intermediate_size"));
  EXPECT_TRUE(m["sliding_window"].is_null());
  EXPECT_TRUE(m["rope_scaling"].is_null());
  const json q2 = ModelConfigToJson(MustParse(kQwen2Moe));
  EXPECT_EQ(q2["shared_expert_intermediate_size"], 5632);
  EXPECT_EQ(q2["moe_intermediate_size"], 1408);
  EXPECT_EQ(q2["intermediate_size"], 5632);
  EXPECT_EQ(q2["qkv_bias"], true);
  const json o = ModelConfigToJson(MustParse(kOlmoe));
  EXPECT_EQ(o["num_experts"], 64);
  EXPECT_EQ(o["intermediate_size"], 1024);
  EXPECT_TRUE(o["clip_qkv"].is_null());
  EXPECT_EQ(o["eos_token_id"], 50279);
}

TEST(ModelConfig, LoadFromDirectory) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sy_config_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto missing = LoadModelConfig(dir.string());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "config.json not found in " + dir.string());
  std::ofstream(dir / "config.json") << kOlmoe;
  const auto c = LoadModelConfig(dir.string());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->arch, Arch::kOlmoe);
  std::filesystem::remove_all(dir);
}

TEST(ModelConfig, ArchNames) {
  EXPECT_EQ(ArchName(Arch::kMixtral), "MixtralForCausalLM");
  EXPECT_EQ(ArchName(Arch::kQwen2Moe), "Qwen2MoeForCausalLM");
  EXPECT_EQ(ArchName(Arch::kQwen3Moe), "Qwen3MoeForCausalLM");
  EXPECT_EQ(ArchName(Arch::kOlmoe), "OlmoeForCausalLM");
  EXPECT_EQ(ArchName(Arch::kDeepseekV2), "DeepseekV2ForCausalLM");
  EXPECT_EQ(ArchName(Arch::kDeepseekV3), "DeepseekV3ForCausalLM");
  EXPECT_EQ(ArchName(Arch::kGlm4Moe), "Glm4MoeForCausalLM");
}

}  // namespace
}  // namespace sy
