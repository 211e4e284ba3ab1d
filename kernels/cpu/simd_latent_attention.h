// The latent-attention kernel (DeepSeek MLA, absorbed form) over a vector type V, included after
// simd_kernels.h by each ISA's file. Same rules as simd_kernels.h: templates on V only.
//
// All heads of a token share every cache row (c_p, k_pe_p), so a span walks the keys once, in
// chunks, and every head visits each chunk while its rows are in L1/L2: the scores of four heads
// against several keys at a time, each head's online softmax, then the weighted sums of the
// chunk's latents for two heads at a time. A head's arithmetic never depends on the other
// heads of the span or on which thread runs it.
#pragma once

#include <cstdint>

#include "kernels/cpu/simd_kernels.h"

namespace sy::cpu::simd {

inline constexpr int kLatentKeysPerChunk = 16;  // 16 rows of 576 floats: 36 KiB
inline constexpr int kLatentHeadsPerPass = 16;  // heads whose scores of a chunk are held at once

// Offsets (in cache elements) of the values of the cache rows of positions [p0, p0 + keys).
template <class V, WeightType kC>
inline void latent_row_offsets(const LatentAttentionArgs& a, const int32_t* blocks, int64_t p0,
                               int keys, int64_t* offsets) {
  const int64_t row = CacheRows<kC>::row_elements(static_cast<int64_t>(a.latent_dim) + a.rope_dim);
  int64_t block = p0 / a.block_size;
  int64_t within = p0 % a.block_size;
  for (int c = 0; c < keys; ++c) {
    offsets[c] = (static_cast<int64_t>(blocks[block]) * a.block_size + within) * row +
                 CacheRows<kC>::kHeader;
    if (++within == a.block_size) {
      within = 0;
      ++block;
    }
  }
}

// scores[h][c] = scale * (q_latent_h . c + q_rope_h . k_pe) (* row_scale[c] for scaled caches)
// for kHeads heads and kKeys keys: one accumulator per (head, key), lanes summing over the latent
// then the rope dimensions.
template <class V, WeightType kC, int kHeads, int kKeys>
inline void latent_score_tile(const float* const* q_latent, const float* const* q_rope,
                              const typename CacheRows<kC>::T* cache, const int64_t* offsets,
                              int64_t latent_dim, int64_t rope_dim, float scale,
                              const float* row_scale, float (*scores)[kLatentKeysPerChunk],
                              int c0) {
  using T = typename CacheRows<kC>::T;
  typename V::F acc[kHeads][kKeys];
#pragma GCC unroll 4
  for (int h = 0; h < kHeads; ++h) {
#pragma GCC unroll 4
    for (int c = 0; c < kKeys; ++c) acc[h][c] = V::zero();
  }
  const T* rows[kKeys];
  for (int c = 0; c < kKeys; ++c) rows[c] = cache + offsets[c0 + c];
  auto segment = [&](const float* const* q, int64_t begin, int64_t n) {
    for_each_vector<V>(n, [&](int64_t d, int lanes) {
      typename V::F kv[kKeys];
#pragma GCC unroll 4
      for (int c = 0; c < kKeys; ++c) kv[c] = load_weights_n<V, kC>(rows[c] + begin + d, lanes);
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
    for (int c = 0; c < kKeys; ++c) {
      scores[h][c0 + c] = V::reduce_add(acc[h][c]) * scale;
      if constexpr (CacheRows<kC>::kScaled) scores[h][c0 + c] *= row_scale[c0 + c];
    }
  }
}

// Scores of `heads` (<= kLatentHeadsPerPass) heads against the chunk's `keys` rows, in tiles of
// 4 heads by the matmul tile's width of keys (2:1 FMAs to loads).
template <class V, WeightType kC>
inline void latent_scores(const float* const* q_latent, const float* const* q_rope, int heads,
                          const typename CacheRows<kC>::T* cache, const int64_t* offsets, int keys,
                          int64_t latent_dim, int64_t rope_dim, float scale, const float* row_scale,
                          float (*scores)[kLatentKeysPerChunk]) {
  constexpr int kHeads = 4;
  constexpr int kKeys = V::kMatmulCols;
  int h = 0;
  for (; h + kHeads <= heads; h += kHeads) {
    int c = 0;
    for (; c + kKeys <= keys; c += kKeys) {
      latent_score_tile<V, kC, kHeads, kKeys>(q_latent + h, q_rope + h, cache, offsets, latent_dim,
                                              rope_dim, scale, row_scale, scores + h, c);
    }
    for (; c < keys; ++c) {
      latent_score_tile<V, kC, kHeads, 1>(q_latent + h, q_rope + h, cache, offsets, latent_dim,
                                          rope_dim, scale, row_scale, scores + h, c);
    }
  }
  for (; h < heads; ++h) {
    int c = 0;
    for (; c + kKeys <= keys; c += kKeys) {
      latent_score_tile<V, kC, 1, kKeys>(q_latent + h, q_rope + h, cache, offsets, latent_dim,
                                         rope_dim, scale, row_scale, scores + h, c);
    }
    for (; c < keys; ++c) {
      latent_score_tile<V, kC, 1, 1>(q_latent + h, q_rope + h, cache, offsets, latent_dim, rope_dim,
                                     scale, row_scale, scores + h, c);
    }
  }
}

// out[h][d] += p[h][c] * row_c[d] over the keys in order, for two heads and kVectors whole vectors
// from d = 0 (out, cache: already offset to the slice): each latent load feeds both heads.
template <class V, WeightType kC, int kVectors>
inline void accumulate_latent_pair(float* const* out, const typename CacheRows<kC>::T* cache,
                                   const int64_t* offsets, const float* const* p, int keys) {
  typename V::F acc[2][kVectors];
#pragma GCC unroll 8
  for (int j = 0; j < kVectors; ++j) {
    acc[0][j] = V::load(out[0] + j * V::kWidth);
    acc[1][j] = V::load(out[1] + j * V::kWidth);
  }
  for (int c = 0; c < keys; ++c) {
    const typename V::F p0 = V::set1(p[0][c]);
    const typename V::F p1 = V::set1(p[1][c]);
    const auto* row = cache + offsets[c];
#pragma GCC unroll 8
    for (int j = 0; j < kVectors; ++j) {
      const typename V::F v = load_weights_n<V, kC>(row + j * V::kWidth, V::kWidth);
      acc[0][j] = V::fmadd(p0, v, acc[0][j]);
      acc[1][j] = V::fmadd(p1, v, acc[1][j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < kVectors; ++j) {
    V::store(out[0] + j * V::kWidth, acc[0][j]);
    V::store(out[1] + j * V::kWidth, acc[1][j]);
  }
}

// Each head's weighted sum of the chunk's latents: heads in pairs over whole slices, the rest
// (an odd head, a partial slice) one head at a time. Per element the same FMAs in the same order
// either way.
template <class V, WeightType kC>
inline void accumulate_latents(float* const* out, const typename CacheRows<kC>::T* cache,
                               const int64_t* offsets, const float* const* p, int heads, int keys,
                               int64_t latent_dim) {
  constexpr int kVectors = V::kWidth >= 16 ? 8 : 4;  // 16 or 8 accumulators
  constexpr int64_t kSlice = kVectors * V::kWidth;
  const int64_t paired = latent_dim / kSlice * kSlice;
  int h = 0;
  for (; h + 2 <= heads; h += 2) {
    for (int64_t d0 = 0; d0 < paired; d0 += kSlice) {
      float* slice_out[2] = {out[h] + d0, out[h + 1] + d0};
      accumulate_latent_pair<V, kC, kVectors>(slice_out, cache + d0, offsets, p + h, keys);
    }
  }
  for (int r = 0; r < heads; ++r) {
    const int64_t from = r < h ? paired : 0;
    if (from < latent_dim) {
      accumulate_value_rows<V, kC>(out[r] + from, cache + from, offsets, p[r], keys,
                                   latent_dim - from);
    }
  }
}

template <class V, WeightType kC>
void latent_attention_rows(const LatentAttentionArgs& a, const detail::LatentSpan& span) {
  using T = typename CacheRows<kC>::T;
  const T* cache = static_cast<const T*>(a.cache);
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
  // Scaled caches: the chunk's row scales, and each head's softmax weights times them.
  float row_scale[kLatentKeysPerChunk];
  float weights[kLatentHeadsPerPass][kLatentKeysPerChunk];
  const float* q_latent[kLatentHeadsPerPass];
  const float* q_rope[kLatentHeadsPerPass];
  int64_t offsets[2][kLatentKeysPerChunk];  // this chunk's and the next chunk's
  if (span.p_begin < span.p_end) {
    latent_row_offsets<V, kC>(a, blocks, span.p_begin, chunk_keys(span.p_begin), offsets[0]);
  }
  for (int64_t p0 = span.p_begin, chunk = 0; p0 < span.p_end; p0 += kLatentKeysPerChunk, ++chunk) {
    const int keys = chunk_keys(p0);
    const int64_t* offs = offsets[chunk % 2];
    const int64_t p1 = p0 + kLatentKeysPerChunk;
    if (p1 < span.p_end) {
      int64_t* next = offsets[(chunk + 1) % 2];
      latent_row_offsets<V, kC>(a, blocks, p1, chunk_keys(p1), next);
      prefetch_rows<V>(cache, next, chunk_keys(p1), latent_dim + rope_dim);
    }
    if constexpr (CacheRows<kC>::kScaled) {
      row_scales<kC>(cache, offs, keys, CacheRows<kC>::kHeader, row_scale);
    }
    for (int h0 = 0; h0 < heads; h0 += kLatentHeadsPerPass) {
      const int pass = heads - h0 > kLatentHeadsPerPass ? kLatentHeadsPerPass : heads - h0;
      for (int h = 0; h < pass; ++h) {
        const int64_t head_row = span.token * a.n_heads + span.h_begin + h0 + h;
        q_latent[h] = a.q_latent + head_row * latent_dim;
        q_rope[h] = a.q_rope + head_row * rope_dim;
      }
      latent_scores<V, kC>(q_latent, q_rope, pass, cache, offs, keys, latent_dim, rope_dim, a.scale,
                           row_scale, scores);
      float* outs[kLatentHeadsPerPass];
      const float* probs[kLatentHeadsPerPass];
      for (int h = 0; h < pass; ++h) {
        const int r = h0 + h;
        float* s = scores[h];
        outs[h] = span.out + r * latent_dim;
        probs[h] = s;
        float chunk_max = -__builtin_inff();
        for (int c = 0; c < keys; ++c) chunk_max = s[c] > chunk_max ? s[c] : chunk_max;
        const float new_max = chunk_max > span.max[r] ? chunk_max : span.max[r];
        if (new_max > span.max[r] && span.denom[r] > 0.0f) {
          const float correction = exp_scalar<V>(span.max[r] - new_max);
          span.denom[r] *= correction;
          scale_in_place<V>(outs[h], latent_dim, correction);
        }
        span.max[r] = new_max;
        span.denom[r] += exp_shifted_sum<V>(s, keys, new_max);
        if constexpr (CacheRows<kC>::kScaled) {
          for (int c = 0; c < keys; ++c) weights[h][c] = s[c] * row_scale[c];
          probs[h] = weights[h];
        }
      }
      accumulate_latents<V, kC>(outs, cache, offs, probs, pass, keys, latent_dim);
    }
  }
}

// Latent attention over a cache of a.cache_dtype (kF32, kBF16 or kF8Row).
template <class V>
void latent_attention_span(const LatentAttentionArgs& a, const detail::LatentSpan& span) {
  if (a.cache_dtype == DType::kBF16) {
    latent_attention_rows<V, WeightType::kBf16>(a, span);
  } else if (a.cache_dtype == DType::kF8Row) {
    latent_attention_rows<V, WeightType::kF8>(a, span);
  } else {
    latent_attention_rows<V, WeightType::kF32>(a, span);
  }
}

}  // namespace sy::cpu::simd
