#include "engine/model/config.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/core/bounded_json.h"
#include "engine/core/file_util.h"
#include "engine/core/json_fields.h"
#include "engine/model/config_deepseek.h"

namespace sy {
namespace {

using nlohmann::json;

constexpr int kMaxJsonDepth = 64;
constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxLayers = int64_t{1} << 16;

struct ArchInfo {
  Arch arch;
  std::string_view name;
  std::string_view model_type;
};

constexpr std::array<ArchInfo, 7> kArchs = {{
    {Arch::kMixtral, "MixtralForCausalLM", "mixtral"},
    {Arch::kQwen2Moe, "Qwen2MoeForCausalLM", "qwen2_moe"},
    {Arch::kQwen3Moe, "Qwen3MoeForCausalLM", "qwen3_moe"},
    {Arch::kOlmoe, "OlmoeForCausalLM", "olmoe"},
    {Arch::kDeepseekV2, "DeepseekV2ForCausalLM", "deepseek_v2"},
    {Arch::kDeepseekV3, "DeepseekV3ForCausalLM", "deepseek_v3"},
    {Arch::kGlm4Moe, "Glm4MoeForCausalLM", "glm4_moe"},
}};

const ArchInfo& InfoFor(Arch arch) {
  for (const ArchInfo& info : kArchs) {
    if (info.arch == arch) return info;
  }
  return kArchs[0];
}

// Defaults of transformers' config classes for the optional fields.
struct ArchDefaults {
  int64_t num_kv_heads;  // 0: same as num_attention_heads
  int64_t max_position_embeddings;
  double rms_norm_eps;
  double rope_theta;
  int64_t num_experts_per_tok;
  std::optional<int32_t> bos;
  std::optional<int32_t> eos;
};

ArchDefaults DefaultsFor(Arch arch) {
  switch (arch) {
    case Arch::kMixtral:
      return {8, 4096 * 32, 1e-5, 1e6, 2, 1, 2};
    case Arch::kQwen2Moe:
      return {16, 32768, 1e-6, 10000.0, 4, std::nullopt, std::nullopt};
    case Arch::kQwen3Moe:
      return {4, 32768, 1e-6, 10000.0, 8, std::nullopt, std::nullopt};
    case Arch::kOlmoe:
      return {0, 4096, 1e-5, 10000.0, 8, std::nullopt, 50279};
    case Arch::kDeepseekV2:  // num_experts_per_tok has no default there: 0 fails the range check
      return {0, 2048, 1e-6, 10000.0, 0, 1, 2};
    case Arch::kDeepseekV3:
      return {0, 4096, 1e-6, 10000.0, 8, 0, 1};
    case Arch::kGlm4Moe:
      return {8, 131072, 1e-5, 10000.0, 8, std::nullopt, std::nullopt};
  }
  return {};
}

Status Invalid(const std::string& what) { return Status::InvalidArgument("config.json: " + what); }

using json_fields::Fields;

// The top-level fields; `path` names a nested object.
Fields ConfigFields(const json& obj, std::string path = "") {
  json_fields::Options options;
  options.context = "config.json: ";
  return Fields(obj, std::move(path), std::move(options));
}

Status ParseArch(const json& root, ModelConfig* c) {
  const Fields f = ConfigFields(root);
  std::string model_type;
  SY_RETURN_IF_ERROR(f.String("model_type", "", &model_type));
  std::string wanted;
  bool by_model_type = false;
  if (const json* archs = f.Find("architectures")) {
    if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
      return f.Bad("architectures", "a non-empty list of strings", *archs);
    }
    wanted = (*archs)[0].get<std::string>();
  } else if (!model_type.empty()) {
    wanted = model_type;
    by_model_type = true;
  } else {
    return Invalid("neither 'architectures' nor 'model_type' is given");
  }
  for (const ArchInfo& info : kArchs) {
    if ((by_model_type ? info.model_type : info.name) != wanted) continue;
    // Kimi K2 names its own model_type over the DeepSeek-V3 architecture.
    const bool alias = info.arch == Arch::kDeepseekV3 && model_type == "kimi_k2";
    if (!model_type.empty() && model_type != info.model_type && !alias) {
      return Invalid("model_type '" + model_type + "' does not match architecture " +
                     std::string(info.name));
    }
    c->arch = info.arch;
    c->architecture = info.name;
    c->model_type = alias ? model_type : std::string(info.model_type);
    return Status::Ok();
  }
  std::string supported;
  for (const ArchInfo& info : kArchs) {
    supported += (supported.empty() ? "" : ", ") + std::string(info.name);
  }
  return Status::Unimplemented("unsupported architecture '" + wanted +
                               "' (supported: " + supported + ")");
}

// A token id: a non-negative integer that fits int32.
Status TokenId(const Fields& f, const char* key, const json& v, int32_t* out) {
  int64_t id = 0;
  if (!f.ToInt(key, v, &id).ok() || id < 0 || id > kMaxDim) {
    return f.Bad(key, "a token id (or a list of them)", v);
  }
  *out = static_cast<int32_t>(id);
  return Status::Ok();
}

Status ParseTokens(const Fields& f, const ArchDefaults& d, ModelConfig* c) {
  c->bos_token_id = f.Present("bos_token_id") ? std::nullopt : d.bos;
  if (const json* v = f.Find("bos_token_id")) {
    int32_t id = 0;
    SY_RETURN_IF_ERROR(TokenId(f, "bos_token_id", *v, &id));
    c->bos_token_id = id;
  }
  c->eos_token_ids.clear();
  if (!f.Present("eos_token_id") && d.eos.has_value()) c->eos_token_ids.push_back(*d.eos);
  if (const json* v = f.Find("eos_token_id")) {
    const json list = v->is_array() ? *v : json::array({*v});
    for (const json& item : list) {
      int32_t id = 0;
      SY_RETURN_IF_ERROR(TokenId(f, "eos_token_id", item, &id));
      c->eos_token_ids.push_back(id);
    }
  }
  return Status::Ok();
}

// The fields each rope type uses; transformers ignores the others, and so do we.
Status ParseRopeScaling(const Fields& s, RopeScaling* r) {
  SY_RETURN_IF_ERROR(
      s.String(s.Find("rope_type") != nullptr ? "rope_type" : "type", "default", &r->type));
  static const std::set<std::string> kTypes = {"default", "linear", "dynamic", "yarn", "llama3"};
  if (kTypes.count(r->type) == 0) {
    return Status::Unimplemented("config.json: unsupported rope type '" + r->type +
                                 "' (supported: default, linear, dynamic, yarn, llama3)");
  }
  if (r->type == "default") return Status::Ok();
  SY_RETURN_IF_ERROR(s.Double("factor", &r->factor));
  SY_RETURN_IF_ERROR(s.Positive("factor", r->factor));
  if (r->type == "linear") return Status::Ok();
  const char* orig = "original_max_position_embeddings";
  const bool llama3 = r->type == "llama3";
  if (llama3 && s.Find(orig) == nullptr) return s.Missing(orig);
  SY_RETURN_IF_ERROR(s.Int(orig, 0, &r->original_max_position_embeddings));
  SY_RETURN_IF_ERROR(
      s.Range(orig, r->original_max_position_embeddings, 0, std::numeric_limits<int64_t>::max()));
  if (r->type == "yarn") {
    // transformers reads `get("beta_fast") or 32`, `get("beta_slow") or 1` and
    // `get("truncate", True)`: a zero beta means its default, an explicit null truncate false.
    SY_RETURN_IF_ERROR(s.Double("beta_fast", 32, &r->beta_fast));
    SY_RETURN_IF_ERROR(s.Double("beta_slow", 1, &r->beta_slow));
    if (r->beta_fast == 0) r->beta_fast = 32;
    if (r->beta_slow == 0) r->beta_slow = 1;
    SY_RETURN_IF_ERROR(s.OptDouble("attention_factor", &r->attention_factor));
    SY_RETURN_IF_ERROR(s.OptDouble("mscale", &r->mscale));
    SY_RETURN_IF_ERROR(s.OptDouble("mscale_all_dim", &r->mscale_all_dim));
    SY_RETURN_IF_ERROR(s.Bool("truncate", true, &r->truncate));
    if (s.Present("truncate") && s.Find("truncate") == nullptr) r->truncate = false;
  }
  if (llama3) {
    SY_RETURN_IF_ERROR(s.Double("low_freq_factor", &r->low_freq_factor));
    SY_RETURN_IF_ERROR(s.Double("high_freq_factor", &r->high_freq_factor));
  }
  return Status::Ok();
}

Status ParseRope(const json& root, const ArchDefaults& d, ModelConfig* c) {
  const Fields top = ConfigFields(root);
  SY_RETURN_IF_ERROR(top.Double("rope_theta", d.rope_theta, &c->rope_theta));
  SY_RETURN_IF_ERROR(top.Double("partial_rotary_factor", 1.0, &c->partial_rotary_factor));
  // transformers 5 writes "rope_parameters" (theta inside); earlier versions "rope_scaling".
  const char* key = top.Find("rope_parameters") != nullptr ? "rope_parameters" : "rope_scaling";
  c->rope_scaling = RopeScaling();
  if (const json* obj = top.Find(key)) {
    if (!obj->is_object()) return top.Bad(key, "an object or null", *obj);
    const Fields s = ConfigFields(*obj, key);
    SY_RETURN_IF_ERROR(s.Double("rope_theta", c->rope_theta, &c->rope_theta));
    SY_RETURN_IF_ERROR(
        s.Double("partial_rotary_factor", c->partial_rotary_factor, &c->partial_rotary_factor));
    SY_RETURN_IF_ERROR(ParseRopeScaling(s, &c->rope_scaling));
  }
  SY_RETURN_IF_ERROR(top.Positive("rope_theta", c->rope_theta));
  if (!(c->partial_rotary_factor > 0 && c->partial_rotary_factor <= 1)) {
    return Invalid("field 'partial_rotary_factor' must be in (0, 1], got " +
                   std::to_string(c->partial_rotary_factor));
  }
  return Status::Ok();
}

// decoder_sparse_step and mlp_only_layers (Qwen2Moe, Qwen3Moe).
Status ParseSparseLayers(const Fields& f, ModelConfig* c) {
  int64_t step = 1;
  SY_RETURN_IF_ERROR(f.Int("decoder_sparse_step", 1, &step));
  SY_RETURN_IF_ERROR(f.Range("decoder_sparse_step", step, 1, kMaxLayers));
  std::set<int64_t> dense;
  if (const json* v = f.Find("mlp_only_layers")) {
    const std::string expected = "a list of layer indices below num_hidden_layers";
    if (!v->is_array()) return f.Bad("mlp_only_layers", expected, *v);
    for (const json& item : *v) {
      int64_t layer = -1;
      if (!f.ToInt("mlp_only_layers", item, &layer).ok() || layer < 0 || layer >= c->num_layers) {
        return f.Bad("mlp_only_layers", expected, *v);
      }
      dense.insert(layer);
    }
  }
  c->layer_is_moe.assign(static_cast<size_t>(c->num_layers), false);
  for (int64_t i = 0; i < c->num_layers; ++i) {
    c->layer_is_moe[static_cast<size_t>(i)] = dense.count(i) == 0 && (i + 1) % step == 0;
  }
  return Status::Ok();
}

// The window of Qwen2Moe / Qwen3Moe: use_sliding_window gates sliding_window (default 4096).
Status ParseQwenWindow(const Fields& f, int64_t* window) {
  bool use = false;
  SY_RETURN_IF_ERROR(f.Bool("use_sliding_window", false, &use));
  SY_RETURN_IF_ERROR(f.Int("sliding_window", f.Present("sliding_window") ? 0 : 4096, window));
  SY_RETURN_IF_ERROR(f.Range("sliding_window", *window, 0, std::numeric_limits<int64_t>::max()));
  if (!use) *window = 0;
  return Status::Ok();
}

Status ParseQwen2MoeWindow(const Fields& f, ModelConfig* c) {
  SY_RETURN_IF_ERROR(ParseQwenWindow(f, &c->sliding_window));
  int64_t max_window_layers = 28;
  SY_RETURN_IF_ERROR(f.Int("max_window_layers", 28, &max_window_layers));
  const size_t n = static_cast<size_t>(c->num_layers);
  std::vector<bool> sliding(n, false);
  if (const json* types = f.Find("layer_types")) {
    const std::string expected =
        "a list of num_hidden_layers \"full_attention\" or "
        "\"sliding_attention\"";
    if (!types->is_array() || types->size() != n) return f.Bad("layer_types", expected, *types);
    for (size_t i = 0; i < n; ++i) {
      const json& t = (*types)[i];
      if (t != "full_attention" && t != "sliding_attention") {
        return f.Bad("layer_types", expected, *types);
      }
      sliding[i] = t == "sliding_attention";
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      sliding[i] = i % 2 == 0 && static_cast<int64_t>(i) < max_window_layers;
    }
  }
  if (c->sliding_window == 0) sliding.assign(n, false);
  // A window no layer uses is no window.
  if (std::find(sliding.begin(), sliding.end(), true) == sliding.end()) c->sliding_window = 0;
  c->layer_uses_sliding_window = std::move(sliding);
  return Status::Ok();
}

// The expert count under its canonical name, or the alias transformers maps onto it.
Status ExpertCount(const Fields& f, const char* name, const char* alias, int64_t* out) {
  if (f.Find(name) == nullptr && f.Find(alias) != nullptr) return f.Int(alias, out);
  return f.Int(name, out);
}

// The fields whose names differ per architecture: experts, MLP sizes, attention extras.
Status ParseArchFields(const Fields& f, ModelConfig* c) {
  const size_t n = static_cast<size_t>(c->num_layers);
  c->layer_is_moe.assign(n, true);
  c->layer_uses_sliding_window.assign(n, false);
  c->sliding_window = 0;
  switch (c->arch) {
    case Arch::kMixtral:
      SY_RETURN_IF_ERROR(ExpertCount(f, "num_local_experts", "num_experts", &c->num_experts));
      SY_RETURN_IF_ERROR(f.Int("intermediate_size", &c->moe_intermediate_size));
      c->norm_topk_prob = true;
      SY_RETURN_IF_ERROR(f.Int("sliding_window", 0, &c->sliding_window));
      SY_RETURN_IF_ERROR(
          f.Range("sliding_window", c->sliding_window, 0, std::numeric_limits<int64_t>::max()));
      c->layer_uses_sliding_window.assign(n, c->sliding_window > 0);
      return Status::Ok();
    case Arch::kQwen2Moe:
    case Arch::kQwen3Moe: {
      const bool qwen2 = c->arch == Arch::kQwen2Moe;
      SY_RETURN_IF_ERROR(ExpertCount(f, "num_experts", "num_local_experts", &c->num_experts));
      SY_RETURN_IF_ERROR(f.Int("moe_intermediate_size", &c->moe_intermediate_size));
      SY_RETURN_IF_ERROR(f.Bool("norm_topk_prob", false, &c->norm_topk_prob));
      SY_RETURN_IF_ERROR(ParseSparseLayers(f, c));
      const bool any_dense =
          std::find(c->layer_is_moe.begin(), c->layer_is_moe.end(), false) != c->layer_is_moe.end();
      if (any_dense && f.Find("intermediate_size") == nullptr) {
        return f.Missing("intermediate_size");
      }
      SY_RETURN_IF_ERROR(
          f.Int("intermediate_size", qwen2 ? 5632 : 6144, &c->dense_intermediate_size));
      SY_RETURN_IF_ERROR(f.Range("intermediate_size", c->dense_intermediate_size, 1, kMaxDim));
      if (qwen2) {
        c->shared_expert_gated = true;
        SY_RETURN_IF_ERROR(
            f.Int("shared_expert_intermediate_size", &c->shared_expert_intermediate_size));
        SY_RETURN_IF_ERROR(f.Range("shared_expert_intermediate_size",
                                   c->shared_expert_intermediate_size, 1, kMaxDim));
        SY_RETURN_IF_ERROR(f.Bool("qkv_bias", true, &c->qkv_bias));
        return ParseQwen2MoeWindow(f, c);
      }
      SY_RETURN_IF_ERROR(f.Bool("attention_bias", false, &c->qkv_bias));
      c->o_bias = c->qkv_bias;
      c->qk_norm = QkNorm::kPerHead;
      SY_RETURN_IF_ERROR(ParseQwenWindow(f, &c->sliding_window));
      c->layer_uses_sliding_window.assign(n, c->sliding_window > 0);
      return Status::Ok();
    }
    case Arch::kOlmoe:
      SY_RETURN_IF_ERROR(ExpertCount(f, "num_experts", "num_local_experts", &c->num_experts));
      SY_RETURN_IF_ERROR(f.Int("intermediate_size", &c->moe_intermediate_size));
      SY_RETURN_IF_ERROR(f.Bool("norm_topk_prob", false, &c->norm_topk_prob));
      SY_RETURN_IF_ERROR(f.Bool("attention_bias", false, &c->qkv_bias));
      c->o_bias = c->qkv_bias;
      c->qk_norm = QkNorm::kFull;
      SY_RETURN_IF_ERROR(f.OptDouble("clip_qkv", &c->clip_qkv));
      if (c->clip_qkv.has_value()) SY_RETURN_IF_ERROR(f.Positive("clip_qkv", *c->clip_qkv));
      return Status::Ok();
    case Arch::kDeepseekV2:
    case Arch::kDeepseekV3:
    case Arch::kGlm4Moe:
      return ParseDeepseekFamilyFields(f, c);
  }
  return Status::Ok();
}

Status ParseConfig(const json& root, ModelConfig* c) {
  if (!root.is_object()) return Invalid("not a JSON object");
  SY_RETURN_IF_ERROR(ParseArch(root, c));
  const ArchDefaults d = DefaultsFor(c->arch);
  const Fields f = ConfigFields(root);
  SY_RETURN_IF_ERROR(f.IntIn("vocab_size", 1, kMaxDim, &c->vocab_size));
  SY_RETURN_IF_ERROR(f.IntIn("hidden_size", 1, kMaxDim, &c->hidden_size));
  SY_RETURN_IF_ERROR(f.IntIn("num_hidden_layers", 1, kMaxLayers, &c->num_layers));
  SY_RETURN_IF_ERROR(f.IntIn("num_attention_heads", 1, c->hidden_size, &c->num_heads));
  const bool kv_default = !f.Present("num_key_value_heads") && d.num_kv_heads > 0;
  SY_RETURN_IF_ERROR(
      f.Int("num_key_value_heads", kv_default ? d.num_kv_heads : c->num_heads, &c->num_kv_heads));
  SY_RETURN_IF_ERROR(f.Range("num_key_value_heads", c->num_kv_heads, 1, c->num_heads));
  if (c->num_heads % c->num_kv_heads != 0) {
    return Invalid("num_attention_heads (" + std::to_string(c->num_heads) +
                   ") must be a multiple of num_key_value_heads (" +
                   std::to_string(c->num_kv_heads) + ")");
  }
  const int64_t derived_head_dim = c->hidden_size / c->num_heads;
  SY_RETURN_IF_ERROR(f.Int("head_dim", derived_head_dim, &c->head_dim));
  SY_RETURN_IF_ERROR(f.Range("head_dim", c->head_dim, 1, kMaxDim));
  if (c->arch == Arch::kOlmoe && c->head_dim * c->num_heads != c->hidden_size) {
    return Invalid("OLMoE needs hidden_size (" + std::to_string(c->hidden_size) +
                   ") = num_attention_heads * head_dim (" + std::to_string(c->num_heads) + " * " +
                   std::to_string(c->head_dim) + ")");
  }
  SY_RETURN_IF_ERROR(
      f.Int("max_position_embeddings", d.max_position_embeddings, &c->max_position_embeddings));
  SY_RETURN_IF_ERROR(f.Range("max_position_embeddings", c->max_position_embeddings, 1,
                             std::numeric_limits<int64_t>::max()));
  SY_RETURN_IF_ERROR(f.Double("rms_norm_eps", d.rms_norm_eps, &c->rms_norm_eps));
  SY_RETURN_IF_ERROR(f.Positive("rms_norm_eps", c->rms_norm_eps));
  SY_RETURN_IF_ERROR(f.Bool("tie_word_embeddings", false, &c->tie_word_embeddings));
  std::string act;
  SY_RETURN_IF_ERROR(f.String("hidden_act", "silu", &act));
  if (act != "silu" && act != "swish") {
    return Status::Unimplemented("config.json: unsupported hidden_act '" + act +
                                 "' (supported: silu)");
  }
  SY_RETURN_IF_ERROR(ParseRope(root, d, c));
  SY_RETURN_IF_ERROR(ParseArchFields(f, c));
  const bool deepseek_family =
      c->arch == Arch::kDeepseekV2 || c->arch == Arch::kDeepseekV3 || c->arch == Arch::kGlm4Moe;
  SY_RETURN_IF_ERROR(f.Range(c->arch == Arch::kMixtral ? "num_local_experts"
                             : deepseek_family         ? "n_routed_experts"
                                                       : "num_experts",
                             c->num_experts, 1, kMaxDim));
  const char* expert_size = c->arch == Arch::kMixtral || c->arch == Arch::kOlmoe
                                ? "intermediate_size"
                                : "moe_intermediate_size";
  SY_RETURN_IF_ERROR(f.Range(expert_size, c->moe_intermediate_size, 1, kMaxDim));
  SY_RETURN_IF_ERROR(f.Int("num_experts_per_tok", d.num_experts_per_tok, &c->num_experts_per_tok));
  SY_RETURN_IF_ERROR(f.Range("num_experts_per_tok", c->num_experts_per_tok, 1, c->num_experts));
  if (deepseek_family) SY_RETURN_IF_ERROR(ParseDeepseekFamilyRouter(f, c));
  SY_RETURN_IF_ERROR(ParseTokens(f, d, c));
  if (const json* q = f.Find("quantization_config"); q != nullptr) {
    SY_ASSIGN_OR_RETURN(c->quantization_config, ParseQuantizationConfig(*q));
  }
  const char* dtype_key = f.Find("torch_dtype") != nullptr ? "torch_dtype" : "dtype";
  return f.String(dtype_key, "", &c->torch_dtype);
}

std::vector<int64_t> DenseLayers(const ModelConfig& c) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < c.layer_is_moe.size(); ++i) {
    if (!c.layer_is_moe[i]) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

json RopeScalingToJson(const RopeScaling& r) {
  if (r.type == "default") return nullptr;
  json j = {{"rope_type", r.type}, {"factor", r.factor}};
  if (r.type != "linear" && r.original_max_position_embeddings > 0) {
    j["original_max_position_embeddings"] = r.original_max_position_embeddings;
  }
  if (r.type == "yarn") {
    j["beta_fast"] = r.beta_fast;
    j["beta_slow"] = r.beta_slow;
    if (r.attention_factor) j["attention_factor"] = *r.attention_factor;
    if (r.mscale) j["mscale"] = *r.mscale;
    if (r.mscale_all_dim) j["mscale_all_dim"] = *r.mscale_all_dim;
    if (!r.truncate) j["truncate"] = false;
  }
  if (r.type == "llama3") {
    j["low_freq_factor"] = r.low_freq_factor;
    j["high_freq_factor"] = r.high_freq_factor;
  }
  return j;
}

void AddArchFields(const ModelConfig& c, json* j) {
  const bool any_sliding =
      std::find(c.layer_uses_sliding_window.begin(), c.layer_uses_sliding_window.end(), true) !=
      c.layer_uses_sliding_window.end();
  const json window = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
  switch (c.arch) {
    case Arch::kMixtral:
      (*j)["num_local_experts"] = c.num_experts;
      (*j)["intermediate_size"] = c.moe_intermediate_size;
      (*j)["sliding_window"] = window;
      return;
    case Arch::kQwen2Moe:
    case Arch::kQwen3Moe:
      (*j)["num_experts"] = c.num_experts;
      (*j)["moe_intermediate_size"] = c.moe_intermediate_size;
      (*j)["intermediate_size"] = c.dense_intermediate_size;
      (*j)["norm_topk_prob"] = c.norm_topk_prob;
      (*j)["decoder_sparse_step"] = 1;
      (*j)["mlp_only_layers"] = DenseLayers(c);
      (*j)["use_sliding_window"] = c.sliding_window > 0 && any_sliding;
      (*j)["sliding_window"] = window;
      if (c.arch == Arch::kQwen3Moe) {
        (*j)["attention_bias"] = c.qkv_bias;
        return;
      }
      (*j)["shared_expert_intermediate_size"] = c.shared_expert_intermediate_size;
      (*j)["qkv_bias"] = c.qkv_bias;
      (*j)["max_window_layers"] = c.num_layers;
      if (c.sliding_window > 0 && any_sliding) {
        json types = json::array();
        for (bool s : c.layer_uses_sliding_window) {
          types.push_back(s ? "sliding_attention" : "full_attention");
        }
        (*j)["layer_types"] = types;
      }
      return;
    case Arch::kOlmoe:
      (*j)["num_experts"] = c.num_experts;
      (*j)["intermediate_size"] = c.moe_intermediate_size;
      (*j)["norm_topk_prob"] = c.norm_topk_prob;
      (*j)["attention_bias"] = c.qkv_bias;
      (*j)["clip_qkv"] = c.clip_qkv ? json(*c.clip_qkv) : json(nullptr);
      return;
    case Arch::kDeepseekV2:
    case Arch::kDeepseekV3:
    case Arch::kGlm4Moe:
      AddDeepseekFamilyFields(c, j);
      return;
  }
}

}  // namespace

std::string_view ArchName(Arch arch) { return InfoFor(arch).name; }

StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text) {
  try {
    SY_ASSIGN_OR_RETURN(const json root, ParseBoundedJson(json_text, "config.json", kMaxJsonDepth));
    ModelConfig config;
    SY_RETURN_IF_ERROR(ParseConfig(root, &config));
    return config;
  } catch (const json::exception& e) {
    return Invalid(e.what());
  }
}

StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  if (!std::filesystem::exists(path)) {
    return Status::NotFound("config.json not found in " + model_dir);
  }
  SY_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  return ParseModelConfig(text);
}

json ModelConfigToJson(const ModelConfig& c) {
  json j = {
      {"architectures", {c.architecture.empty() ? ArchName(c.arch) : c.architecture}},
      {"model_type", c.model_type.empty() ? InfoFor(c.arch).model_type : c.model_type},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_heads},
      {"num_key_value_heads", c.num_kv_heads},
      {"head_dim", c.head_dim},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.rms_norm_eps},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"hidden_act", "silu"},
      {"rope_theta", c.rope_theta},
      {"rope_scaling", RopeScalingToJson(c.rope_scaling)},
      {"num_experts_per_tok", c.num_experts_per_tok},
      {"bos_token_id", c.bos_token_id ? json(*c.bos_token_id) : json(nullptr)},
  };
  if (c.partial_rotary_factor != 1.0) j["partial_rotary_factor"] = c.partial_rotary_factor;
  if (c.eos_token_ids.size() == 1) {
    j["eos_token_id"] = c.eos_token_ids[0];
  } else if (c.eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else {
    j["eos_token_id"] = c.eos_token_ids;
  }
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  if (c.quantization_config.method != QuantMethod::kNone) {
    j["quantization_config"] = QuantizationConfigToJson(c.quantization_config);
  }
  AddArchFields(c, &j);
  return j;
}

KvRowShape KvRowShapeFor(const ModelConfig& c) {
  if (IsMla(c)) return {c.mla.kv_lora_rank + c.mla.qk_rope_head_dim, 0};
  return {c.num_kv_heads * c.head_dim, c.num_kv_heads * c.head_dim};
}

std::vector<int32_t> MoeLayerIndices(const ModelConfig& c) {
  std::vector<int32_t> layers;
  for (size_t l = 0; l < c.layer_is_moe.size(); ++l) {
    if (c.layer_is_moe[l]) layers.push_back(static_cast<int32_t>(l));
  }
  return layers;
}

}  // namespace sy
