// ModelConfig: the hyper-parameters of a supported MoE decoder, read from (and written back to)
// a Hugging Face config.json with each architecture's own field names and defaults.
// Plain value type with no shared state: thread-compatible.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"
#include "engine/model/quant_config.h"

namespace sy {

enum class Arch { kMixtral, kQwen2Moe, kQwen3Moe, kOlmoe, kDeepseekV2, kDeepseekV3, kGlm4Moe };

enum class QkNorm {
  kNone,
  kPerHead,  // Qwen3: RMSNorm over each head's head_dim, weight [head_dim]
  kFull,     // OLMoE: RMSNorm over all of q (n_heads*head_dim) and k (n_kv_heads*head_dim)
};

struct RopeScaling {
  std::string type = "default";  // default, linear, dynamic, yarn, llama3
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;                    // 0: not given
  double beta_fast = 32;                                           // yarn
  double beta_slow = 1;                                            // yarn
  std::optional<double> attention_factor, mscale, mscale_all_dim;  // yarn
  double low_freq_factor = 1;                                      // llama3
  double high_freq_factor = 4;                                     // llama3
  bool truncate = true;                                            // yarn

  friend bool operator==(const RopeScaling&, const RopeScaling&) = default;
};

// Multi-head latent attention (DeepSeek-V2/V3, Kimi K2): queries through an optional low-rank
// projection; keys and values expand from one compressed latent per token, which is all the KV
// cache holds (kv_lora_rank + qk_rope_head_dim values per token per layer).
struct MlaConfig {
  int64_t q_lora_rank = 0;   // 0: q_proj straight from the hidden state (V2-Lite)
  int64_t kv_lora_rank = 0;  // 0: not MLA
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;  // the decoupled rotary part, one key shared by all heads
  int64_t v_head_dim = 0;
  bool rope_interleave = true;  // rotate pairs (2i, 2i+1) (DeepSeek) instead of halves

  friend bool operator==(const MlaConfig&, const MlaConfig&) = default;
};

// How a token's experts are chosen beyond plain softmax top-k (DeepSeek, GLM-4.5).
struct RouterConfig {
  bool sigmoid = false;          // scores = sigmoid(logits) (V3, GLM), else softmax
  bool correction_bias = false;  // e_score_correction_bias: added to choose, never to weigh
  int64_t n_group = 1;           // experts in n_group equal groups, ...
  int64_t topk_group = 1;        // ... of which each token's topk_group best are eligible
  bool group_top2_sum = false;   // a group's score: the sum of its top 2 (V3, GLM), else its max
  double routed_scaling_factor = 1.0;  // multiplies the routing weights

  friend bool operator==(const RouterConfig&, const RouterConfig&) = default;
};

struct ModelConfig {
  Arch arch = Arch::kMixtral;
  std::string architecture;  // e.g. "MixtralForCausalLM"
  std::string model_type;    // e.g. "mixtral"

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;

  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double partial_rotary_factor = 1.0;

  int64_t sliding_window = 0;                   // 0: no sliding window anywhere
  std::vector<bool> layer_uses_sliding_window;  // [num_layers]

  bool qkv_bias = false;  // bias on q_proj, k_proj, v_proj
  bool o_bias = false;    // bias on o_proj (Qwen3Moe and OLMoE attention_bias)
  QkNorm qk_norm = QkNorm::kNone;
  std::optional<double> clip_qkv;  // OLMoE: clamp q, k, v to [-clip_qkv, clip_qkv]

  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;            // per routed expert
  bool norm_topk_prob = false;                  // renormalise the top-k routing weights to sum to 1
  int64_t shared_expert_intermediate_size = 0;  // Qwen2Moe, DeepSeek (n_shared * expert size), GLM
  bool shared_expert_gated = false;             // Qwen2Moe: scaled by sigmoid(shared_expert_gate)
  int64_t dense_intermediate_size = 0;          // MLP size of non-MoE layers (Qwen2/3Moe)
  std::vector<bool> layer_is_moe;               // [num_layers]
  RouterConfig router;
  MlaConfig mla;
  int64_t num_nextn_predict_layers = 0;  // MTP layers stored after the decoder's (not run)

  std::optional<int32_t> bos_token_id;
  std::vector<int32_t> eos_token_ids;
  std::string torch_dtype;                 // "bfloat16", "float32", ...; empty when not given
  QuantizationConfig quantization_config;  // how the checkpoint stores its weights

  friend bool operator==(const ModelConfig&, const ModelConfig&) = default;
};

// "MixtralForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "OlmoeForCausalLM",
// "DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "Glm4MoeForCausalLM".
std::string_view ArchName(Arch arch);

// Parses config.json text. The architecture comes from architectures[0], else model_type:
// Unimplemented "unsupported architecture 'X' (supported: ...)" for others. InvalidArgument
// naming the field for a missing or ill-typed field or an inconsistent value. Sliding windows
// per layer follow transformers' current rule: Mixtral and Qwen3Moe use the window on every
// layer when set; Qwen2Moe uses `layer_types` when given, else even layers below
// max_window_layers when use_sliding_window is true.
StatusOr<ModelConfig> ParseModelConfig(std::string_view json_text);

// Reads <model_dir>/config.json: NotFound if it is missing.
StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// An HF-format config.json (architectures, model_type and the architecture's own field names,
// rope in the rope_theta + rope_scaling form every transformers version reads) that
// ParseModelConfig turns back into `config`.
nlohmann::json ModelConfigToJson(const ModelConfig& config);

// The layers with routed experts (layer_is_moe), ascending: the layers an expert placement
// covers.
std::vector<int32_t> MoeLayerIndices(const ModelConfig& config);

inline bool IsMla(const ModelConfig& c) { return c.mla.kv_lora_rank > 0; }

// What one token stores in one layer of the KV cache: a key row of k_dim values and a value row
// of v_dim (0 for MLA, whose single latent row serves as both).
struct KvRowShape {
  int64_t k_dim = 0;
  int64_t v_dim = 0;
};
KvRowShape KvRowShapeFor(const ModelConfig& config);

}  // namespace sy
