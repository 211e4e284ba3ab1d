// ParseModelConfig on the published config.json of DeepSeek-V3, Kimi K2, DeepSeek-V2-Lite and
// GLM-4.5-Air: MLA dimensions, group-limited routing, shared experts, dense-first layers,
// errors naming the field, and ModelConfigToJson -> ParseModelConfig round trips.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "engine/model/config.h"

namespace sy {
namespace {

using nlohmann::json;

// deepseek-ai/DeepSeek-V3 (quantization_config left out: the weight loader reads it).
const char kDeepseekV3[] = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config"}, "bos_token_id": 0,
  "eos_token_id": 1, "ep_size": 1, "first_k_dense_replace": 3, "hidden_act": "silu",
  "hidden_size": 7168, "initializer_range": 0.02, "intermediate_size": 18432,
  "kv_lora_rank": 512, "max_position_embeddings": 163840, "model_type": "deepseek_v3",
  "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256,
  "n_shared_experts": 1, "norm_topk_prob": true, "num_attention_heads": 128,
  "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 128,
  "num_nextn_predict_layers": 1, "q_lora_rank": 1536, "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                   "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                   "type": "yarn"},
  "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid",
  "tie_word_embeddings": false, "topk_group": 4, "topk_method": "noaux_tc",
  "torch_dtype": "bfloat16", "transformers_version": "4.46.3", "use_cache": true,
  "v_head_dim": 128, "vocab_size": 129280})";

// moonshotai/Kimi-K2-Instruct
const char kKimiK2[] = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "bos_token_id": 163584, "eos_token_id": 163585, "first_k_dense_replace": 1,
  "hidden_act": "silu", "hidden_size": 7168, "initializer_range": 0.02,
  "intermediate_size": 18432, "kv_lora_rank": 512, "max_position_embeddings": 131072,
  "model_type": "kimi_k2", "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 1,
  "n_routed_experts": 384, "n_shared_experts": 1, "norm_topk_prob": true,
  "num_attention_heads": 64, "num_experts_per_tok": 8, "num_hidden_layers": 61,
  "num_key_value_heads": 64, "num_nextn_predict_layers": 0, "q_lora_rank": 1536,
  "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06,
  "rope_scaling": {"beta_fast": 1.0, "beta_slow": 1.0, "factor": 32.0, "mscale": 1.0,
                   "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
                   "type": "yarn"},
  "rope_theta": 50000.0, "routed_scaling_factor": 2.827, "scoring_func": "sigmoid",
  "tie_word_embeddings": false, "topk_group": 1, "topk_method": "noaux_tc",
  "torch_dtype": "bfloat16", "use_cache": true, "v_head_dim": 128, "vocab_size": 163840})";

// deepseek-ai/DeepSeek-V2-Lite
const char kDeepseekV2Lite[] = R"({
  "architectures": ["DeepseekV2ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "aux_loss_alpha": 0.001, "bos_token_id": 100000, "eos_token_id": 100001,
  "first_k_dense_replace": 1, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 10944, "kv_lora_rank": 512,
  "max_position_embeddings": 163840, "model_type": "deepseek_v2", "moe_intermediate_size": 1408,
  "moe_layer_freq": 1, "n_group": 1, "n_routed_experts": 64, "n_shared_experts": 2,
  "norm_topk_prob": false, "num_attention_heads": 16, "num_experts_per_tok": 6,
  "num_hidden_layers": 27, "num_key_value_heads": 16, "q_lora_rank": null,
  "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
                   "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096,
                   "type": "yarn"},
  "rope_theta": 10000, "routed_scaling_factor": 1.0, "scoring_func": "softmax",
  "seq_aux": true, "tie_word_embeddings": false, "topk_group": 1, "topk_method": "greedy",
  "torch_dtype": "bfloat16", "use_cache": true, "v_head_dim": 128, "vocab_size": 102400})";

// zai-org/GLM-4.5-Air
const char kGlm45Air[] = R"({
  "architectures": ["Glm4MoeForCausalLM"], "attention_bias": true, "attention_dropout": 0.0,
  "pad_token_id": 151329, "eos_token_id": [151329, 151336, 151338], "head_dim": 128,
  "hidden_act": "silu", "hidden_size": 4096, "partial_rotary_factor": 0.5,
  "initializer_range": 0.02, "intermediate_size": 10944, "max_position_embeddings": 131072,
  "model_type": "glm4_moe", "moe_intermediate_size": 1408, "norm_topk_prob": true,
  "num_attention_heads": 96, "n_group": 1, "topk_group": 1, "n_routed_experts": 128,
  "n_shared_experts": 1, "routed_scaling_factor": 1.0, "num_experts_per_tok": 8,
  "first_k_dense_replace": 1, "num_hidden_layers": 46, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 1000000,
  "num_nextn_predict_layers": 1, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.54.0", "use_cache": true, "use_qk_norm": false,
  "vocab_size": 151552})";

ModelConfig MustParse(const std::string& text) {
  auto c = ParseModelConfig(text);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : ModelConfig{};
}

std::string Patched(const char* text, const json& patch) {
  json j = json::parse(text);
  j.merge_patch(patch);
  return j.dump();
}

Status ParseError(const char* text, const json& patch) {
  return ParseModelConfig(Patched(text, patch)).status();
}

TEST(DeepseekConfig, DeepseekV3) {
  const ModelConfig c = MustParse(kDeepseekV3);
  EXPECT_EQ(c.arch, Arch::kDeepseekV3);
  EXPECT_TRUE(IsMla(c));
  EXPECT_EQ(c.mla.q_lora_rank, 1536);
  EXPECT_EQ(c.mla.kv_lora_rank, 512);
  EXPECT_EQ(c.mla.qk_nope_head_dim, 128);
  EXPECT_EQ(c.mla.qk_rope_head_dim, 64);
  EXPECT_EQ(c.mla.v_head_dim, 128);
  EXPECT_TRUE(c.mla.rope_interleave);
  EXPECT_EQ(c.head_dim, 192);  // the query/key head: nope + rope
  EXPECT_EQ(c.num_experts, 256);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.moe_intermediate_size, 2048);
  EXPECT_EQ(c.shared_expert_intermediate_size, 2048);
  EXPECT_FALSE(c.shared_expert_gated);
  EXPECT_EQ(c.dense_intermediate_size, 18432);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_TRUE(c.router.sigmoid);
  EXPECT_TRUE(c.router.correction_bias);
  EXPECT_TRUE(c.router.group_top2_sum);
  EXPECT_EQ(c.router.n_group, 8);
  EXPECT_EQ(c.router.topk_group, 4);
  EXPECT_DOUBLE_EQ(c.router.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  ASSERT_EQ(c.layer_is_moe.size(), 61u);
  EXPECT_FALSE(c.layer_is_moe[0]);
  EXPECT_FALSE(c.layer_is_moe[2]);
  EXPECT_TRUE(c.layer_is_moe[3]);
  EXPECT_TRUE(c.layer_is_moe[60]);
  EXPECT_EQ(MoeLayerIndices(c).size(), 58u);
  EXPECT_EQ(c.rope_scaling.type, "yarn");
  EXPECT_EQ(c.rope_scaling.mscale_all_dim, 1.0);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{1});
  // The cache row: the 512-wide latent and the 64-wide rotary key, no separate value.
  const KvRowShape row = KvRowShapeFor(c);
  EXPECT_EQ(row.k_dim, 576);
  EXPECT_EQ(row.v_dim, 0);
}

TEST(DeepseekConfig, KimiK2IsDeepseekV3UnderItsOwnModelType) {
  const ModelConfig c = MustParse(kKimiK2);
  EXPECT_EQ(c.arch, Arch::kDeepseekV3);
  EXPECT_EQ(c.model_type, "kimi_k2");
  EXPECT_EQ(c.num_experts, 384);
  EXPECT_EQ(c.router.n_group, 1);
  EXPECT_EQ(c.router.topk_group, 1);
  EXPECT_DOUBLE_EQ(c.router.routed_scaling_factor, 2.827);
  EXPECT_EQ(MoeLayerIndices(c).size(), 60u);
  EXPECT_EQ(ModelConfigToJson(c)["model_type"], "kimi_k2");
  // Other model types still must match the architecture.
  EXPECT_EQ(ParseError(kKimiK2, {{"model_type", "qwen3_moe"}}).code(),
            StatusCode::kInvalidArgument);
}

TEST(DeepseekConfig, DeepseekV2Lite) {
  const ModelConfig c = MustParse(kDeepseekV2Lite);
  EXPECT_EQ(c.arch, Arch::kDeepseekV2);
  EXPECT_EQ(c.mla.q_lora_rank, 0);  // null: q_proj straight from the hidden state
  EXPECT_FALSE(c.router.sigmoid);
  EXPECT_FALSE(c.router.correction_bias);
  EXPECT_EQ(c.router.n_group, 1);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_EQ(c.shared_expert_intermediate_size, 2 * 1408);
  EXPECT_EQ(MoeLayerIndices(c).size(), 26u);
  // group_limited_greedy (DeepSeek-V2 proper): groups scored by their best expert.
  const ModelConfig g = MustParse(
      Patched(kDeepseekV2Lite,
              {{"topk_method", "group_limited_greedy"}, {"n_group", 8}, {"topk_group", 3}}));
  EXPECT_EQ(g.router.n_group, 8);
  EXPECT_EQ(g.router.topk_group, 3);
  EXPECT_FALSE(g.router.group_top2_sum);
  // greedy ignores the group fields.
  const ModelConfig greedy = MustParse(Patched(kDeepseekV2Lite, {{"n_group", 8}}));
  EXPECT_EQ(greedy.router.n_group, 1);
  // moe_layer_freq 2: MoE on the even layers from first_k_dense_replace on.
  const ModelConfig freq = MustParse(Patched(kDeepseekV2Lite, {{"moe_layer_freq", 2}}));
  EXPECT_FALSE(freq.layer_is_moe[1]);
  EXPECT_TRUE(freq.layer_is_moe[2]);
  EXPECT_FALSE(freq.layer_is_moe[3]);
}

TEST(DeepseekConfig, Glm45Air) {
  const ModelConfig c = MustParse(kGlm45Air);
  EXPECT_EQ(c.arch, Arch::kGlm4Moe);
  EXPECT_FALSE(IsMla(c));
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_DOUBLE_EQ(c.partial_rotary_factor, 0.5);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.o_bias);
  EXPECT_EQ(c.qk_norm, QkNorm::kNone);
  EXPECT_TRUE(c.router.sigmoid);
  EXPECT_TRUE(c.router.correction_bias);
  EXPECT_EQ(c.shared_expert_intermediate_size, 1408);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{151329, 151336, 151338}));
  EXPECT_EQ(KvRowShapeFor(c).k_dim, 8 * 128);
  EXPECT_EQ(KvRowShapeFor(c).v_dim, 8 * 128);
  EXPECT_EQ(MustParse(Patched(kGlm45Air, {{"use_qk_norm", true}})).qk_norm, QkNorm::kPerHead);
  // Glm4MoeConfig's default rotary fraction is a half.
  json no_factor = json::parse(kGlm45Air);
  no_factor.erase("partial_rotary_factor");
  EXPECT_DOUBLE_EQ(MustParse(no_factor.dump()).partial_rotary_factor, 0.5);
}

TEST(DeepseekConfig, ErrorsNameTheField) {
  struct Case {
    const char* base;
    json patch;
    StatusCode code;
    const char* needle;
  };
  const Case cases[] = {
      {kDeepseekV3, {{"topk_method", "aux_loss"}}, StatusCode::kUnimplemented, "topk_method"},
      {kDeepseekV3, {{"scoring_func", "softmax"}}, StatusCode::kUnimplemented, "scoring_func"},
      {kDeepseekV2Lite, {{"topk_method", "noaux_tc"}}, StatusCode::kUnimplemented, "topk_method"},
      {kDeepseekV3, {{"n_group", 7}}, StatusCode::kInvalidArgument, "n_group"},
      {kDeepseekV3, {{"topk_group", 9}}, StatusCode::kInvalidArgument, "topk_group"},
      {kDeepseekV3, {{"topk_group", 0}}, StatusCode::kInvalidArgument, "topk_group"},
      {kDeepseekV3, {{"kv_lora_rank", 0}}, StatusCode::kInvalidArgument, "kv_lora_rank"},
      {kDeepseekV3, {{"qk_rope_head_dim", 63}}, StatusCode::kInvalidArgument, "qk_rope_head_dim"},
      {kDeepseekV3, {{"attention_bias", true}}, StatusCode::kUnimplemented, "attention_bias"},
      {kDeepseekV3,
       {{"first_k_dense_replace", 62}},
       StatusCode::kInvalidArgument,
       "first_k_dense_replace"},
      {kDeepseekV3, {{"n_routed_experts", 0}}, StatusCode::kInvalidArgument, "n_routed_experts"},
      {kDeepseekV3,
       {{"routed_scaling_factor", 0}},
       StatusCode::kInvalidArgument,
       "routed_scaling_factor"},
      // 8 groups of 2 experts, 1 eligible: fewer than the 8 choices.
      {kDeepseekV3,
       {{"n_routed_experts", 16}, {"topk_group", 1}},
       StatusCode::kInvalidArgument,
       "num_experts_per_tok"},
  };
  for (const Case& c : cases) {
    const Status s = ParseError(c.base, c.patch);
    EXPECT_EQ(s.code(), c.code) << c.patch.dump() << ": " << s.ToString();
    EXPECT_NE(s.message().find(c.needle), std::string::npos)
        << c.patch.dump() << ": " << s.ToString();
  }
}

TEST(DeepseekConfig, RoundTrips) {
  for (const char* text : {kDeepseekV3, kKimiK2, kDeepseekV2Lite, kGlm45Air}) {
    const ModelConfig c = MustParse(text);
    EXPECT_EQ(MustParse(ModelConfigToJson(c).dump()), c) << text;
  }
  const ModelConfig v2 =
      MustParse(Patched(kDeepseekV2Lite, {{"topk_method", "group_limited_greedy"},
                                          {"n_group", 8},
                                          {"topk_group", 3},
                                          {"q_lora_rank", 1536}}));
  EXPECT_EQ(MustParse(ModelConfigToJson(v2).dump()), v2);
  const ModelConfig v3 = MustParse(Patched(kDeepseekV3, {{"rope_interleave", false}}));
  EXPECT_FALSE(v3.mla.rope_interleave);
  EXPECT_EQ(MustParse(ModelConfigToJson(v3).dump()), v3);
}

}  // namespace
}  // namespace sy
