// Hugging Face tensor names of an MoE decoder's weights, per architecture: the one place that
// knows them, shared by the weight loader and by make-model, which writes checkpoints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model/config.h"

namespace sy {

struct FfnNames {
  std::string gate, up, down;  // gate/up: [inter, hidden]; down: [hidden, inter]
  // >= 0: routed expert number fused_expert of a layer that stores its experts fused (see
  // ExpertLayout); gate then names gate_up_proj, down names down_proj, and up is empty.
  int64_t fused_expert = -1;
};

// How a layer's routed experts are stored. kPerExpert: one tensor per expert and projection
// (`experts.{e}.gate_proj.weight`, ...; Mixtral `block_sparse_moe.experts.{e}.w1.weight`, ...).
// kFused: transformers 5's MoE parameters, one tensor per layer for all experts:
// `mlp.experts.gate_up_proj` [experts, 2 * inter, hidden] (each expert's gate rows, then its up
// rows) and `mlp.experts.down_proj` [experts, hidden, inter]; for Mixtral under `mlp.` too, its
// router then `mlp.gate.weight`.
enum class ExpertLayout { kPerExpert, kFused };

struct LayerWeightNames {
  std::string input_norm, post_attn_norm;
  std::string q, k, v, o;              // projection weights
  std::string q_bias, k_bias, v_bias;  // empty without qkv bias
  std::string o_bias;                  // empty without an o_proj bias
  std::string q_norm, k_norm;          // empty without q/k norm
  // MLA (then k and v are empty, and q is set only without a query LoRA).
  std::string q_a, q_a_norm, q_b;     // query LoRA: [q_lora, hidden], [q_lora], [H*qk, q_lora]
  std::string kv_a, kv_a_norm, kv_b;  // [L + R, hidden], [L], [H*(nope + v), L]
  std::string router;                 // empty in a dense layer
  std::string router_bias;            // e_score_correction_bias; empty without one
  std::vector<FfnNames> experts;
  FfnNames shared_expert;          // gate empty without a shared expert
  std::string shared_expert_gate;  // empty unless the shared expert is gated (Qwen2Moe)
  FfnNames dense;                  // gate empty in an MoE layer
};

struct ModelWeightNames {
  std::string embed = "model.embed_tokens.weight";
  std::string final_norm = "model.norm.weight";
  std::string lm_head;  // empty when tied to the embedding
  std::vector<LayerWeightNames> layers;
};

ModelWeightNames WeightNamesFor(const ModelConfig& config);

// Rewrites the names of MoE layer `layer` (from WeightNamesFor: kPerExpert) to kFused: its
// router's and its routed experts'. Leaves a dense layer alone.
void UseFusedExperts(const ModelConfig& config, int64_t layer, LayerWeightNames* names);

// Every weight of the model as (name, shape), in checkpoint order.
struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
};
// With kFused, each MoE layer's routed experts are the two fused tensors.
std::vector<WeightSpec> ListWeights(const ModelConfig& config,
                                    ExpertLayout layout = ExpertLayout::kPerExpert);

}  // namespace sy
