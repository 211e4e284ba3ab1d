// sy::cpu::ref for the latent-attention ops: plain scalar loops following the definitions in
// latent_ops.h; single-threaded (the pool argument is ignored), slow.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/latent_ops.h"
#include "kernels/cpu/ops.h"
#include "kernels/kv_rows.h"

namespace sy::cpu::ref {

void head_matmul(const float* x, const void* w, DType w_dtype, float* y, int64_t m, int64_t heads,
                 int64_t n, int64_t k, ThreadPool* pool) {
  // Each (row, head) is an ordinary one-row matmul with head h's n rows of w.
  const size_t head_bytes = static_cast<size_t>(n) * dtype_row_bytes(w_dtype, k);
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const void* w_head = static_cast<const uint8_t*>(w) + h * head_bytes;
      ref::matmul(x + (t * heads + h) * k, w_head, w_dtype, nullptr, y + (t * heads + h) * n, 1, n,
                  k, pool);
    }
  }
}

void latent_kv_write(const float* latent, const float* rope, int64_t tokens, int64_t latent_dim,
                     int64_t rope_dim, const int64_t* slots, void* cache, DType cache_dtype) {
  const int64_t row = latent_dim + rope_dim;
  const size_t row_bytes = dtype_row_bytes(cache_dtype, row);
  std::vector<float> values(row);
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] < 0) continue;
    for (int64_t d = 0; d < latent_dim; ++d) values[d] = latent[t * latent_dim + d];
    for (int64_t d = 0; d < rope_dim; ++d) values[latent_dim + d] = rope[t * rope_dim + d];
    write_kv_row(values.data(), row, cache_dtype,
                 static_cast<uint8_t*>(cache) + slots[t] * row_bytes);
  }
}

void latent_attention(const LatentAttentionArgs& a, ThreadPool* /*pool*/) {
  const int64_t latent_dim = a.latent_dim;
  const int64_t rope_dim = a.rope_dim;
  const size_t row_bytes = dtype_row_bytes(a.cache_dtype, latent_dim + rope_dim);
  std::vector<float> scores;
  for (int64_t t = 0; t < a.tokens; ++t) {
    const int64_t seq = a.token_seq[t];
    const int64_t ctx = std::max<int64_t>(a.ctx_len[t], 0);
    // Element d of the cache row of position p, through the sequence's block table.
    auto cache_value = [&](int64_t p, int64_t d) {
      const int64_t block = a.block_tables[seq * a.max_blocks_per_seq + p / a.block_size];
      const int64_t slot = block * a.block_size + p % a.block_size;
      return kv_row_value(static_cast<const uint8_t*>(a.cache) + slot * row_bytes, a.cache_dtype,
                          d);
    };
    for (int64_t h = 0; h < a.n_heads; ++h) {
      const float* q_latent = a.q_latent + (t * a.n_heads + h) * latent_dim;
      const float* q_rope = a.q_rope + (t * a.n_heads + h) * rope_dim;
      float* out = a.out + (t * a.n_heads + h) * latent_dim;
      scores.assign(ctx, 0.0f);
      float max_score = -INFINITY;
      for (int64_t p = 0; p < ctx; ++p) {
        float dot = 0.0f;
        for (int64_t d = 0; d < latent_dim; ++d) dot += q_latent[d] * cache_value(p, d);
        for (int64_t d = 0; d < rope_dim; ++d) dot += q_rope[d] * cache_value(p, latent_dim + d);
        scores[p] = dot * a.scale;
        max_score = std::max(max_score, scores[p]);
      }
      float total = 0.0f;
      for (float& s : scores) {
        s = std::exp(s - max_score);
        total += s;
      }
      for (int64_t d = 0; d < latent_dim; ++d) out[d] = 0.0f;
      for (int64_t p = 0; p < ctx; ++p) {
        for (int64_t d = 0; d < latent_dim; ++d) out[d] += scores[p] / total * cache_value(p, d);
      }
    }
  }
}

}  // namespace sy::cpu::ref
