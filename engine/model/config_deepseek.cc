#include "engine/model/config_deepseek.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <string>

namespace sy {
namespace {

using json_fields::Fields;
using nlohmann::json;

constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

Status Unsupported(const Fields& f, std::string_view key, const std::string& value,
                   const std::string& supported) {
  return Status::Unimplemented("config.json: unsupported " + f.PathOf(key) + " '" + value +
                               "' (supported: " + supported + ")");
}

// An optional dimension: absent or null gives 0.
Status OptionalDim(const Fields& f, std::string_view key, int64_t* out) {
  SY_RETURN_IF_ERROR(f.Int(key, 0, out));
  return f.Range(key, *out, 0, kMaxDim);
}

Status ParseMla(const Fields& f, ModelConfig* c) {
  MlaConfig& m = c->mla;
  SY_RETURN_IF_ERROR(OptionalDim(f, "q_lora_rank", &m.q_lora_rank));
  SY_RETURN_IF_ERROR(f.Int("kv_lora_rank", 512, &m.kv_lora_rank));
  SY_RETURN_IF_ERROR(f.Range("kv_lora_rank", m.kv_lora_rank, 1, kMaxDim));
  SY_RETURN_IF_ERROR(f.Int("qk_nope_head_dim", 128, &m.qk_nope_head_dim));
  SY_RETURN_IF_ERROR(f.Range("qk_nope_head_dim", m.qk_nope_head_dim, 1, kMaxDim));
  SY_RETURN_IF_ERROR(f.Int("qk_rope_head_dim", 64, &m.qk_rope_head_dim));
  SY_RETURN_IF_ERROR(f.Range("qk_rope_head_dim", m.qk_rope_head_dim, 2, kMaxDim));
  if (m.qk_rope_head_dim % 2 != 0) return f.Range("qk_rope_head_dim", m.qk_rope_head_dim, 2, 0);
  SY_RETURN_IF_ERROR(f.Int("v_head_dim", 128, &m.v_head_dim));
  SY_RETURN_IF_ERROR(f.Range("v_head_dim", m.v_head_dim, 1, kMaxDim));
  // V2 rotates interleaved pairs (complex multiplication); V3 does unless told otherwise.
  m.rope_interleave = true;
  if (c->arch == Arch::kDeepseekV3) {
    SY_RETURN_IF_ERROR(f.Bool("rope_interleave", true, &m.rope_interleave));
  }
  // The query/key head is nope + rope wide; the rotary tables cover the rope part only.
  c->head_dim = m.qk_nope_head_dim + m.qk_rope_head_dim;
  c->partial_rotary_factor = 1.0;
  bool attention_bias = false;
  SY_RETURN_IF_ERROR(f.Bool("attention_bias", false, &attention_bias));
  if (attention_bias) {
    return Status::Unimplemented("config.json: attention_bias true is not supported for MLA");
  }
  return Status::Ok();
}

}  // namespace

// V2: softmax scores; topk_method greedy (no groups) or group_limited_greedy (group max).
// V3 and GLM: sigmoid scores, the correction bias, groups scored by their top two.
Status ParseDeepseekFamilyRouter(const Fields& f, ModelConfig* c) {
  RouterConfig& r = c->router;
  SY_RETURN_IF_ERROR(f.Double("routed_scaling_factor", c->arch == Arch::kDeepseekV3 ? 2.5 : 1.0,
                              &r.routed_scaling_factor));
  SY_RETURN_IF_ERROR(f.Positive("routed_scaling_factor", r.routed_scaling_factor));
  const int64_t default_groups = c->arch == Arch::kDeepseekV3 ? 8 : 1;
  SY_RETURN_IF_ERROR(f.Int("n_group", default_groups, &r.n_group));
  SY_RETURN_IF_ERROR(f.Int("topk_group", c->arch == Arch::kDeepseekV3 ? 4 : 1, &r.topk_group));
  std::string method, scoring;
  SY_RETURN_IF_ERROR(f.String("topk_method", "", &method));
  SY_RETURN_IF_ERROR(f.String("scoring_func", "", &scoring));
  if (c->arch == Arch::kDeepseekV2) {
    if (method.empty()) method = "greedy";
    if (method != "greedy" && method != "group_limited_greedy") {
      return Unsupported(f, "topk_method", method, "greedy, group_limited_greedy");
    }
    if (!scoring.empty() && scoring != "softmax") {
      return Unsupported(f, "scoring_func", scoring, "softmax");
    }
    if (method == "greedy") r.n_group = r.topk_group = 1;
    // transformers' DeepseekV2 (like every published V2 config) does not renormalise.
    c->norm_topk_prob = false;
  } else {
    if (!method.empty() && method != "noaux_tc") {
      return Unsupported(f, "topk_method", method, "noaux_tc");
    }
    if (!scoring.empty() && scoring != "sigmoid") {
      return Unsupported(f, "scoring_func", scoring, "sigmoid");
    }
    r.sigmoid = true;
    r.correction_bias = true;
    r.group_top2_sum = true;
    SY_RETURN_IF_ERROR(f.Bool("norm_topk_prob", true, &c->norm_topk_prob));
  }
  SY_RETURN_IF_ERROR(f.Range("n_group", r.n_group, 1, c->num_experts));
  if (c->num_experts % r.n_group != 0) {
    return Status::InvalidArgument(
        "config.json: n_routed_experts (" + std::to_string(c->num_experts) +
        ") must be a multiple of n_group (" + std::to_string(r.n_group) + ")");
  }
  SY_RETURN_IF_ERROR(f.Range("topk_group", r.topk_group, 1, r.n_group));
  const int64_t eligible = r.topk_group * (c->num_experts / r.n_group);
  if (r.group_top2_sum && c->num_experts / r.n_group < 2 && r.n_group > 1) {
    return Status::InvalidArgument("config.json: groups need at least 2 experts each");
  }
  if (c->num_experts_per_tok > eligible) {
    return Status::InvalidArgument(
        "config.json: num_experts_per_tok (" + std::to_string(c->num_experts_per_tok) +
        ") exceeds the experts of topk_group groups (" + std::to_string(eligible) + ")");
  }
  return Status::Ok();
}

namespace {

// first_k_dense_replace dense layers, then an MoE layer every moe_layer_freq layers.
Status ParseLayers(const Fields& f, ModelConfig* c) {
  int64_t first_dense = 0, freq = 1;
  const int64_t default_dense = c->arch == Arch::kDeepseekV3 ? 3
                                : c->arch == Arch::kGlm4Moe  ? 1
                                                             : 0;
  SY_RETURN_IF_ERROR(f.Int("first_k_dense_replace", default_dense, &first_dense));
  SY_RETURN_IF_ERROR(f.Range("first_k_dense_replace", first_dense, 0, c->num_layers));
  SY_RETURN_IF_ERROR(f.Int("moe_layer_freq", 1, &freq));
  SY_RETURN_IF_ERROR(f.Range("moe_layer_freq", freq, 1, c->num_layers));
  c->layer_is_moe.assign(static_cast<size_t>(c->num_layers), false);
  bool any_dense = false;
  for (int64_t i = 0; i < c->num_layers; ++i) {
    const bool moe = i >= first_dense && i % freq == 0;
    c->layer_is_moe[static_cast<size_t>(i)] = moe;
    any_dense = any_dense || !moe;
  }
  const int64_t default_inter = c->arch == Arch::kDeepseekV3 ? 18432
                                : c->arch == Arch::kGlm4Moe  ? 10944
                                                             : 11008;
  if (any_dense) {
    SY_RETURN_IF_ERROR(f.Int("intermediate_size", default_inter, &c->dense_intermediate_size));
    SY_RETURN_IF_ERROR(f.Range("intermediate_size", c->dense_intermediate_size, 1, kMaxDim));
  }
  SY_RETURN_IF_ERROR(f.Int("num_nextn_predict_layers", 0, &c->num_nextn_predict_layers));
  return f.Range("num_nextn_predict_layers", c->num_nextn_predict_layers, 0, 1 << 16);
}

}  // namespace

Status ParseDeepseekFamilyFields(const Fields& f, ModelConfig* c) {
  const int64_t default_experts = c->arch == Arch::kDeepseekV3 ? 256
                                  : c->arch == Arch::kGlm4Moe  ? 128
                                                               : 64;
  SY_RETURN_IF_ERROR(f.Int("n_routed_experts", default_experts, &c->num_experts));
  SY_RETURN_IF_ERROR(f.Range("n_routed_experts", c->num_experts, 1, kMaxDim));
  const int64_t default_inter = c->arch == Arch::kDeepseekV3 ? 2048
                                : c->arch == Arch::kGlm4Moe  ? 1408
                                                             : 1407;
  SY_RETURN_IF_ERROR(f.Int("moe_intermediate_size", default_inter, &c->moe_intermediate_size));
  SY_RETURN_IF_ERROR(f.Range("moe_intermediate_size", c->moe_intermediate_size, 1, kMaxDim));
  int64_t shared = 0;
  SY_RETURN_IF_ERROR(f.Int("n_shared_experts", c->arch == Arch::kDeepseekV2 ? 2 : 1, &shared));
  SY_RETURN_IF_ERROR(f.Range("n_shared_experts", shared, 0, 1 << 16));
  c->shared_expert_intermediate_size = shared * c->moe_intermediate_size;
  c->shared_expert_gated = false;
  SY_RETURN_IF_ERROR(ParseLayers(f, c));
  if (c->arch == Arch::kGlm4Moe) {
    SY_RETURN_IF_ERROR(f.Bool("attention_bias", false, &c->qkv_bias));
    bool qk_norm = false;
    SY_RETURN_IF_ERROR(f.Bool("use_qk_norm", false, &qk_norm));
    c->qk_norm = qk_norm ? QkNorm::kPerHead : QkNorm::kNone;
    if (!f.Present("partial_rotary_factor")) c->partial_rotary_factor = 0.5;  // Glm4MoeConfig's
  } else {
    SY_RETURN_IF_ERROR(ParseMla(f, c));
  }
  return Status::Ok();
}

void AddDeepseekFamilyFields(const ModelConfig& c, json* j) {
  json& o = *j;
  o["n_routed_experts"] = c.num_experts;
  o["moe_intermediate_size"] = c.moe_intermediate_size;
  o["n_shared_experts"] =
      c.moe_intermediate_size > 0 ? c.shared_expert_intermediate_size / c.moe_intermediate_size : 0;
  int64_t first_dense = 0;
  while (first_dense < c.num_layers && !c.layer_is_moe[static_cast<size_t>(first_dense)]) {
    ++first_dense;
  }
  o["first_k_dense_replace"] = first_dense;
  o["intermediate_size"] = c.dense_intermediate_size;
  o["norm_topk_prob"] = c.norm_topk_prob;
  o["routed_scaling_factor"] = c.router.routed_scaling_factor;
  o["n_group"] = c.router.n_group;
  o["topk_group"] = c.router.topk_group;
  if (c.num_nextn_predict_layers > 0) o["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  if (c.arch == Arch::kDeepseekV2) {
    o["topk_method"] = c.router.n_group > 1 ? "group_limited_greedy" : "greedy";
  } else {
    o["topk_method"] = "noaux_tc";
    o["scoring_func"] = "sigmoid";
  }
  if (c.arch == Arch::kGlm4Moe) {
    o["attention_bias"] = c.qkv_bias;
    o["use_qk_norm"] = c.qk_norm == QkNorm::kPerHead;
    o["partial_rotary_factor"] = c.partial_rotary_factor;
    return;
  }
  const MlaConfig& m = c.mla;
  o["q_lora_rank"] = m.q_lora_rank > 0 ? json(m.q_lora_rank) : json(nullptr);
  o["kv_lora_rank"] = m.kv_lora_rank;
  o["qk_nope_head_dim"] = m.qk_nope_head_dim;
  o["qk_rope_head_dim"] = m.qk_rope_head_dim;
  o["v_head_dim"] = m.v_head_dim;
  o["head_dim"] = m.qk_rope_head_dim;  // what transformers' config classes store there
  o["attention_bias"] = false;
  if (c.arch == Arch::kDeepseekV3) o["rope_interleave"] = m.rope_interleave;
}

}  // namespace sy
