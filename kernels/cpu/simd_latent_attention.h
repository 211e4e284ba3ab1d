// The latent-attention kernel (DeepSeek MLA, absorbed form) over a vector type V, included after
// simd_kernels.h by each ISA's file. Same rules as simd_kernels.h: templates on V only.
//
// All heads of a token share every cache row (c_p, k_pe_p), so a span walks the keys once, in
// chunks, and every head visits each chunk while its rows are in L1/L2: the scores of a pair of
// heads against four keys at a time (six loads feed eight FMAs), then each head's online softmax
// and its weighted sum of the chunk's latents. A head's arithmetic never depends on the other
// heads of the span or on which thread runs it.
#pragma once

#include <cstdint>

#include "kernels/cpu/simd_kernels.h"

namespace sy::cpu::simd {

inline constexpr int kLatentKeysPerChunk = 16;  // 16 rows of 576 floats: 36 KiB
inline constexpr int kLatentHeadsPerPass = 16;  // heads whose scores of a chunk are held at once

// Offsets (in floats) of the cache rows of positions [p0, p0 + keys).
template <class V>
inline void latent_row_offsets(const LatentAttentionArgs& a, const int32_t* blocks, int64_t p0,
                               int keys, int64_t* offsets) {
  const int64_t row = static_cast<int64_t>(a.latent_dim) + a.rope_dim;
  int64_t block = p0 / a.block_size;
  int64_t within = p0 % a.block_size;
  for (int c = 0; c < keys; ++c) {
    offsets[c] = (static_cast<int64_t>(blocks[block]) * a.block_size + within) * row;
    if (++within == a.block_size) {
      within = 0;
      ++block;
    }
  }
}

// scores[h][c] = scale * (q_latent_h . c + q_rope_h . k_pe) for kHeads heads and kKeys keys: one
// accumulator per (head, key), lanes summing over the latent then the rope dimensions.
template <class V, int kHeads, int kKeys>
inline void latent_score_tile(const float* const* q_latent, const float* const* q_rope,
                              const float* cache, const int64_t* offsets, int64_t latent_dim,
                              int64_t rope_dim, float scale, float (*scores)[kLatentKeysPerChunk],
                              int c0) {
  typename V::F acc[kHeads][kKeys];
#pragma GCC unroll 4
  for (int h = 0; h < kHeads; ++h) {
#pragma GCC unroll 4
    for (int c = 0; c < kKeys; ++c) acc[h][c] = V::zero();
  }
  const float* rows[kKeys];
  for (int c = 0; c < kKeys; ++c) rows[c] = cache + offsets[c0 + c];
  auto segment = [&](const float* const* q, int64_t begin, int64_t n) {
    for_each_vector<V>(n, [&](int64_t d, int lanes) {
      typename V::F kv[kKeys];
#pragma GCC unroll 4
      for (int c = 0; c < kKeys; ++c) kv[c] = load_n<V>(rows[c] + begin + d, lanes);
#pragma GCC unroll 4
      for (int h = 0; h < kHeads; ++h) {
        const typename V::F qv = load_n<V>(q[h] + d, lanes);
#pragma GCC unroll 4
        for (int c = 0; c < kKeys; ++c) acc[h][c] = V::fmadd(qv, kv[c], acc[h][c]);
      }
    });
  };
  segment(q_latent, 0, latent_dim);
  segment(q_rope, latent_dim, rope_dim);
  for (int h = 0; h < kHeads; ++h) {
    for (int c = 0; c < kKeys; ++c) scores[h][c0 + c] = V::reduce_add(acc[h][c]) * scale;
  }
}

// Scores of `heads` (<= kLatentHeadsPerPass) heads against the chunk's `keys` rows.
template <class V>
inline void latent_scores(const float* const* q_latent, const float* const* q_rope, int heads,
                          const float* cache, const int64_t* offsets, int keys, int64_t latent_dim,
                          int64_t rope_dim, float scale, float (*scores)[kLatentKeysPerChunk]) {
  int h = 0;
  for (; h + 2 <= heads; h += 2) {
    int c = 0;
    for (; c + 4 <= keys; c += 4) {
      latent_score_tile<V, 2, 4>(q_latent + h, q_rope + h, cache, offsets, latent_dim, rope_dim,
                                 scale, scores + h, c);
    }
    for (; c < keys; ++c) {
      latent_score_tile<V, 2, 1>(q_latent + h, q_rope + h, cache, offsets, latent_dim, rope_dim,
                                 scale, scores + h, c);
    }
  }
  if (h < heads) {
    int c = 0;
    for (; c + 4 <= keys; c += 4) {
      latent_score_tile<V, 1, 4>(q_latent + h, q_rope + h, cache, offsets, latent_dim, rope_dim,
                                 scale, scores + h, c);
    }
    for (; c < keys; ++c) {
      latent_score_tile<V, 1, 1>(q_latent + h, q_rope + h, cache, offsets, latent_dim, rope_dim,
                                 scale, scores + h, c);
    }
  }
}

template <class V>
void latent_attention_span(const LatentAttentionArgs& a, const detail::LatentSpan& span) {
  const int64_t latent_dim = a.latent_dim;
  const int64_t rope_dim = a.rope_dim;
  const int heads = span.h_end - span.h_begin;
  const int32_t* blocks =
      a.block_tables + static_cast<int64_t>(a.token_seq[span.token]) * a.max_blocks_per_seq;
  for_each_vector<V>(heads * latent_dim,
                     [&](int64_t d, int lanes) { store_n<V>(span.out + d, V::zero(), lanes); });
  for (int h = 0; h < heads; ++h) {
    span.max[h] = -__builtin_inff();
    span.denom[h] = 0.0f;
  }
  auto chunk_keys = [&](int64_t p0) {
    return span.p_end - p0 > kLatentKeysPerChunk ? kLatentKeysPerChunk
                                                 : static_cast<int>(span.p_end - p0);
  };
  float scores[kLatentHeadsPerPass][kLatentKeysPerChunk];
  const float* q_latent[kLatentHeadsPerPass];
  const float* q_rope[kLatentHeadsPerPass];
  int64_t offsets[2][kLatentKeysPerChunk];  // this chunk's and the next chunk's
  if (span.p_begin < span.p_end) {
    latent_row_offsets<V>(a, blocks, span.p_begin, chunk_keys(span.p_begin), offsets[0]);
  }
  for (int64_t p0 = span.p_begin, chunk = 0; p0 < span.p_end; p0 += kLatentKeysPerChunk, ++chunk) {
    const int keys = chunk_keys(p0);
    const int64_t* offs = offsets[chunk % 2];
    const int64_t p1 = p0 + kLatentKeysPerChunk;
    if (p1 < span.p_end) {
      int64_t* next = offsets[(chunk + 1) % 2];
      latent_row_offsets<V>(a, blocks, p1, chunk_keys(p1), next);
      prefetch_rows<V>(a.cache, next, chunk_keys(p1), latent_dim + rope_dim);
    }
    for (int h0 = 0; h0 < heads; h0 += kLatentHeadsPerPass) {
      const int pass = heads - h0 > kLatentHeadsPerPass ? kLatentHeadsPerPass : heads - h0;
      for (int h = 0; h < pass; ++h) {
        const int64_t head_row = span.token * a.n_heads + span.h_begin + h0 + h;
        q_latent[h] = a.q_latent + head_row * latent_dim;
        q_rope[h] = a.q_rope + head_row * rope_dim;
      }
      latent_scores<V>(q_latent, q_rope, pass, a.cache, offs, keys, latent_dim, rope_dim, a.scale,
                       scores);
      for (int h = 0; h < pass; ++h) {
        const int r = h0 + h;
        float* s = scores[h];
        float* out = span.out + r * latent_dim;
        float chunk_max = -__builtin_inff();
        for (int c = 0; c < keys; ++c) chunk_max = s[c] > chunk_max ? s[c] : chunk_max;
        const float new_max = chunk_max > span.max[r] ? chunk_max : span.max[r];
        if (new_max > span.max[r] && span.denom[r] > 0.0f) {
          const float correction = exp_scalar<V>(span.max[r] - new_max);
          span.denom[r] *= correction;
          scale_in_place<V>(out, latent_dim, correction);
        }
        span.max[r] = new_max;
        span.denom[r] += exp_shifted_sum<V>(s, keys, new_max);
        accumulate_value_rows<V>(out, a.cache, offs, s, keys, latent_dim);
      }
    }
  }
}

}  // namespace sy::cpu::simd
