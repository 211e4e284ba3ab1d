#include "engine/model/weight_names.h"

namespace sy {
namespace {

FfnNames Ffn(const std::string& p, bool mixtral_expert) {
  if (mixtral_expert) return {p + "w1.weight", p + "w3.weight", p + "w2.weight"};
  return {p + "gate_proj.weight", p + "up_proj.weight", p + "down_proj.weight"};
}

}  // namespace

ModelWeightNames WeightNamesFor(const ModelConfig& c) {
  ModelWeightNames m;
  if (!c.tie_word_embeddings) m.lm_head = "lm_head.weight";
  const bool mixtral = c.arch == Arch::kMixtral;
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeightNames l;
    l.input_norm = p + "input_layernorm.weight";
    l.post_attn_norm = p + "post_attention_layernorm.weight";
    const std::string a = p + "self_attn.";
    l.o = a + "o_proj.weight";
    if (IsMla(c)) {
      if (c.mla.q_lora_rank > 0) {
        l.q_a = a + "q_a_proj.weight";
        l.q_a_norm = a + "q_a_layernorm.weight";
        l.q_b = a + "q_b_proj.weight";
      } else {
        l.q = a + "q_proj.weight";
      }
      l.kv_a = a + "kv_a_proj_with_mqa.weight";
      l.kv_a_norm = a + "kv_a_layernorm.weight";
      l.kv_b = a + "kv_b_proj.weight";
    } else {
      l.q = a + "q_proj.weight";
      l.k = a + "k_proj.weight";
      l.v = a + "v_proj.weight";
    }
    if (c.qkv_bias) {
      l.q_bias = a + "q_proj.bias";
      l.k_bias = a + "k_proj.bias";
      l.v_bias = a + "v_proj.bias";
    }
    if (c.o_bias) l.o_bias = a + "o_proj.bias";
    if (c.qk_norm != QkNorm::kNone) {
      l.q_norm = a + "q_norm.weight";
      l.k_norm = a + "k_norm.weight";
    }
    if (c.layer_is_moe[i]) {
      const std::string moe = p + (mixtral ? "block_sparse_moe." : "mlp.");
      l.router = moe + "gate.weight";
      for (int64_t e = 0; e < c.num_experts; ++e) {
        l.experts.push_back(Ffn(moe + "experts." + std::to_string(e) + ".", mixtral));
      }
      if (c.router.correction_bias) l.router_bias = moe + "gate.e_score_correction_bias";
      if (c.shared_expert_intermediate_size > 0 && c.shared_expert_gated) {
        l.shared_expert = Ffn(moe + "shared_expert.", false);
        l.shared_expert_gate = moe + "shared_expert_gate.weight";
      } else if (c.shared_expert_intermediate_size > 0) {
        l.shared_expert = Ffn(moe + "shared_experts.", false);
      }
    } else {
      l.dense = Ffn(p + "mlp.", false);
    }
    m.layers.push_back(std::move(l));
  }
  return m;
}

void UseFusedExperts(const ModelConfig& c, int64_t layer, LayerWeightNames* l) {
  if (l->router.empty()) return;
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  // transformers 5 renames Mixtral's block_sparse_moe to mlp along with fusing its experts.
  l->router = p + "mlp.gate.weight";
  l->experts.assign(c.num_experts,
                    FfnNames{p + "mlp.experts.gate_up_proj", "", p + "mlp.experts.down_proj", 0});
  for (int64_t e = 0; e < c.num_experts; ++e) l->experts[e].fused_expert = e;
}

std::vector<WeightSpec> ListWeights(const ModelConfig& c, ExpertLayout layout) {
  ModelWeightNames m = WeightNamesFor(c);
  if (layout == ExpertLayout::kFused) {
    for (size_t i = 0; i < m.layers.size(); ++i) {
      UseFusedExperts(c, static_cast<int64_t>(i), &m.layers[i]);
    }
  }
  const int64_t h = c.hidden_size;
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  const bool full_norm = c.qk_norm == QkNorm::kFull;
  std::vector<WeightSpec> out;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    if (!name.empty()) out.push_back({name, std::move(shape)});
  };
  auto add_ffn = [&](const FfnNames& f, int64_t inter) {
    if (f.gate.empty()) return;
    add(f.gate, {inter, h});
    add(f.up, {inter, h});
    add(f.down, {h, inter});
  };
  const MlaConfig& mla = c.mla;
  const int64_t q_lora = mla.q_lora_rank;
  const int64_t latent = mla.kv_lora_rank;
  add(m.embed, {c.vocab_size, h});
  for (const LayerWeightNames& l : m.layers) {
    add(l.input_norm, {h});
    add(l.q_a, {q_lora, h});
    add(l.q_a_norm, {q_lora});
    add(l.q_b, {q_dim, q_lora});
    add(l.kv_a, {latent + mla.qk_rope_head_dim, h});
    add(l.kv_a_norm, {latent});
    add(l.kv_b, {c.num_heads * (mla.qk_nope_head_dim + mla.v_head_dim), latent});
    add(l.q, {q_dim, h});
    add(l.k, {kv_dim, h});
    add(l.v, {kv_dim, h});
    add(l.q_bias, {q_dim});
    add(l.k_bias, {kv_dim});
    add(l.v_bias, {kv_dim});
    add(l.q_norm, {full_norm ? q_dim : c.head_dim});
    add(l.k_norm, {full_norm ? kv_dim : c.head_dim});
    add(l.o, {h, IsMla(c) ? c.num_heads * mla.v_head_dim : q_dim});
    add(l.o_bias, {h});
    add(l.post_attn_norm, {h});
    add(l.router, {c.num_experts, h});
    add(l.router_bias, {c.num_experts});
    if (!l.experts.empty() && l.experts[0].fused_expert >= 0) {
      const int64_t inter = c.moe_intermediate_size;
      add(l.experts[0].gate, {c.num_experts, 2 * inter, h});
      add(l.experts[0].down, {c.num_experts, h, inter});
    } else {
      for (const FfnNames& e : l.experts) add_ffn(e, c.moe_intermediate_size);
    }
    add_ffn(l.shared_expert, c.shared_expert_intermediate_size);
    add(l.shared_expert_gate, {1, h});
    add_ffn(l.dense, c.dense_intermediate_size);
  }
  add(m.final_norm, {h});
  add(m.lm_head, {c.vocab_size, h});
  return out;
}

}  // namespace sy
