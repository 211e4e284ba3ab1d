#include "tests/bench/decode_roofline.h"

#include "engine/kv/kv_cache.h"

namespace sy {
namespace {

// Absent optional weights (biases, norms a model lacks) have no data.
double Bytes(const Tensor& t) { return t.data == nullptr ? 0.0 : static_cast<double>(t.nbytes()); }

double Bytes(const FfnWeights& f) { return Bytes(f.gate_up) + Bytes(f.down); }

}  // namespace

double DecodeBytesPerToken(const ModelConfig& c, const ModelWeights& w, int64_t context,
                           DType kv_dtype) {
  double bytes = Bytes(w.embed) / static_cast<double>(w.embed.rows);
  const KvRowShape kv_row = KvRowShapeFor(c);
  // One layer's K and V of one position.
  const double kv_bytes =
      static_cast<double>(KvCache::BytesPerToken(1, kv_row.k_dim, kv_row.v_dim, kv_dtype));
  for (const LayerWeights& l : w.layers) {
    for (const Tensor* t : {&l.input_norm, &l.post_attn_norm,
                            &l.wq,         &l.wk,
                            &l.wv,         &l.wo,
                            &l.bq,         &l.bk,
                            &l.bv,         &l.bo,
                            &l.q_norm,     &l.k_norm,
                            &l.wq_a,       &l.q_a_norm,
                            &l.wq_nope,    &l.wq_rope,
                            &l.wkv_latent, &l.wkv_rope,
                            &l.kv_a_norm,  &l.w_uk_t,
                            &l.w_uv,       &l.router_bias}) {
      bytes += Bytes(*t);
    }
    if (l.is_moe) {
      bytes += Bytes(l.router);
      if (!l.experts.empty()) {
        bytes += static_cast<double>(c.num_experts_per_tok) * Bytes(l.experts[0]);
      }
      bytes += Bytes(l.shared_expert) + Bytes(l.shared_expert_gate);
    } else {
      bytes += Bytes(l.dense);
    }
    bytes += kv_bytes * static_cast<double>(context);
  }
  return bytes + Bytes(w.final_norm) + Bytes(w.lm_head);
}

}  // namespace sy
