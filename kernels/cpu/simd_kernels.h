// Kernel bodies written once over a vector type V (simd::Avx512 or simd::Avx2) and instantiated
// by the one translation unit compiled for that instruction set (kernels_avx512.cc, ...).
//
// Every function here is a template on V, so each instantiation is private to its ISA's object
// file. Do not call non-template inline code (std::min, std::exp, helpers in other headers) from
// here: a copy compiled with AVX-512 could be the one the linker keeps for the whole program.
#pragma once

#include <cstdint>

#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/simd_int4.h"

namespace sy::cpu::simd {

enum class WeightType { kF32, kBf16, kF16, kI8, kF8 };

template <WeightType kW>
struct WeightElement {
  using type = uint16_t;
};
template <>
struct WeightElement<WeightType::kF32> {
  using type = float;
};
template <>
struct WeightElement<WeightType::kI8> {
  using type = int8_t;
};
template <>
struct WeightElement<WeightType::kF8> {
  using type = uint8_t;
};

// Elements before a weight row's values: kI8 rows start with their f32 scale, kF8 rows with one
// f32 scale per 128 columns (kernels/dtype.h).
template <WeightType kW>
inline constexpr int64_t row_header(int64_t k) {
  if constexpr (kW == WeightType::kI8) return 4;
  if constexpr (kW == WeightType::kF8) return (k + 127) / 128 * 4;
  return 0;
}

// Loads n <= kWidth lanes (n == kWidth: a plain load; the branch folds away for constant n).
template <class V>
inline typename V::F load_n(const float* p, int n) {
  return n == V::kWidth ? V::load(p) : V::load_partial(p, n);
}

template <class V>
inline void store_n(float* p, typename V::F v, int n) {
  if (n == V::kWidth) {
    V::store(p, v);
  } else {
    V::store_partial(p, v, n);
  }
}

template <class V, WeightType kW>
inline typename V::F load_weights_n(const typename WeightElement<kW>::type* p, int n) {
  if constexpr (kW == WeightType::kF32) {
    return load_n<V>(p, n);
  } else if constexpr (kW == WeightType::kBf16) {
    return n == V::kWidth ? V::load_bf16(p) : V::load_bf16_partial(p, n);
  } else if constexpr (kW == WeightType::kI8) {
    return n == V::kWidth ? V::load_i8(p) : V::load_i8_partial(p, n);
  } else if constexpr (kW == WeightType::kF8) {
    // e4m3fn values times 2^-8 (V::load_e4m3's f16 reinterpretation); the scale brings the 2^8.
    return n == V::kWidth ? V::load_e4m3(p) : V::load_e4m3_partial(p, n);
  } else {
    return n == V::kWidth ? V::load_f16(p) : V::load_f16_partial(p, n);
  }
}

// Calls body(i, lanes) over [0, n) in whole vectors, then once for the remainder.
template <class V, class Body>
inline void for_each_vector(int64_t n, const Body& body) {
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) body(i, V::kWidth);
  if (i < n) body(i, static_cast<int>(n - i));
}

template <class V>
inline float dot(const float* a, const float* b, int64_t n) {
  typename V::F acc = V::zero();
  for_each_vector<V>(n, [&](int64_t i, int lanes) {
    acc = V::fmadd(load_n<V>(a + i, lanes), load_n<V>(b + i, lanes), acc);
  });
  return V::reduce_add(acc);
}

// x[i] = exp(x[i] - shift) for i < n; returns their sum.
template <class V>
inline float exp_shifted_sum(float* x, int64_t n, float shift) {
  typename V::F sum = V::zero();
  const typename V::F s = V::set1(shift);
  for_each_vector<V>(n, [&](int64_t i, int lanes) {
    store_n<V>(x + i, V::exp(V::sub(load_n<V>(x + i, lanes), s)), lanes);
    sum = V::add(sum, load_n<V>(x + i, lanes));  // reloads so that lanes past n add zero
  });
  return V::reduce_add(sum);
}

template <class V>
inline float exp_scalar(float x) {
  float out[V::kWidth];
  V::store(out, V::exp(V::set1(x)));
  return out[0];
}

// ---------------------------------------------------------------------------------------------
// Matmul. Output element (i, j) is always computed the same way, whatever m, the tile shape
// around it or the thread: lane l sums x[i,kk] * w[j,kk] over kk = l (mod kWidth) in increasing
// kk with FMAs, the lanes are then added by V::reduce_add's fixed tree, then the bias. For int8
// weights the lanes sum x * q (q converted to f32 in registers) and the row's scale multiplies
// the reduced sum once, before the bias. For fp8 weights each weight vector is decoded and
// multiplied by its block's scale (times 2^8) in registers, so the lanes sum x * (s * e4m3(q))
// with exactly the products the reference forms.

// The weight rows of a tile are contiguous, so a tile reads one linear region. `prefetch` (or
// null) runs kPrefetchBytes ahead in that region at the rate it is consumed: short rows defeat the
// hardware prefetcher, and one linear stream keeps DRAM pages open (measured on a Zen 4 core: m=1
// bf16 weight reads went from ~12 to ~20 GB/s; 8 KiB ahead beat 2, 4, 16 and 32 KiB).
inline constexpr int64_t kPrefetchBytes = 8 << 10;

// Weight row j of a tile starts at w + j * ldw; its values at row_header<kW>(k) past that.
template <class V, WeightType kW, int kRows, int kCols>
void matmul_tile(const float* x, const typename WeightElement<kW>::type* w, int64_t ldw,
                 const char* prefetch, const float* bias, float* y, int64_t ldy, int64_t k) {
  const int64_t header = row_header<kW>(k);
  using T = typename WeightElement<kW>::type;
  constexpr int64_t kStepBytes = kCols * V::kWidth * static_cast<int64_t>(sizeof(T));
  typename V::F acc[kRows][kCols];
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < kCols; ++j) acc[i][j] = V::zero();
  }
  typename V::F block_scale[kCols];  // kF8: each row's current block scale times 2^8
#pragma GCC unroll 8
  for (int j = 0; j < kCols; ++j) block_scale[j] = V::zero();  // set at kk = 0
  for_each_vector<V>(k, [&](int64_t kk, int lanes) {
    if constexpr (kW == WeightType::kF8) {
      // kWidth divides 128, so a vector never spans two blocks. The scale times 2^8 is exact.
      if (kk % 128 == 0) {
#pragma GCC unroll 8
        for (int j = 0; j < kCols; ++j) {
          float s;
          __builtin_memcpy(&s, w + j * ldw + kk / 128 * 4, sizeof(float));
          block_scale[j] = V::set1(s * 256.0f);
        }
      }
    }
    if (prefetch != nullptr) {
      const char* ahead = prefetch + kk / V::kWidth * kStepBytes;
#pragma GCC unroll 8
      for (int64_t line = 0; line < kStepBytes; line += 64) V::prefetch(ahead + line);
    }
    typename V::F wv[kCols];
#pragma GCC unroll 8
    for (int j = 0; j < kCols; ++j) {
      wv[j] = load_weights_n<V, kW>(w + j * ldw + header + kk, lanes);
      if constexpr (kW == WeightType::kF8) wv[j] = V::mul(wv[j], block_scale[j]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
      const typename V::F xv = load_n<V>(x + i * k + kk, lanes);
#pragma GCC unroll 8
      for (int j = 0; j < kCols; ++j) acc[i][j] = V::fmadd(xv, wv[j], acc[i][j]);
    }
  });
  float scale[kCols];
  for (int j = 0; j < kCols; ++j) {
    scale[j] = 1.0f;
    if constexpr (kW == WeightType::kI8) __builtin_memcpy(&scale[j], w + j * ldw, sizeof(float));
  }
  for (int i = 0; i < kRows; ++i) {
    for (int j = 0; j < kCols; ++j) {
      float sum = V::reduce_add(acc[i][j]);
      if constexpr (kW == WeightType::kI8) {
        sum *= scale[j];
        // Opaque to the optimiser: the product is rounded before the bias is added in every
        // tile shape (contracting the two into one FMA in some shapes only would break batch
        // invariance).
        __asm__("" : "+x"(sum));
      }
      y[i * ldy + j] = bias != nullptr ? sum + bias[j] : sum;
    }
  }
}

// Runs the rows x cols edge tile with the largest instantiated shape that fits it exactly.
template <class V, WeightType kW, int kRows, int kCols>
void matmul_edge_tile(int rows, int cols, const float* x, const typename WeightElement<kW>::type* w,
                      int64_t ldw, const char* prefetch, const float* bias, float* y, int64_t ldy,
                      int64_t k) {
  if constexpr (kRows > 1) {
    if (rows < kRows) {
      return matmul_edge_tile<V, kW, kRows - 1, kCols>(rows, cols, x, w, ldw, prefetch, bias, y,
                                                       ldy, k);
    }
  }
  if constexpr (kCols > 1) {
    if (cols < kCols) {
      return matmul_edge_tile<V, kW, kRows, kCols - 1>(rows, cols, x, w, ldw, prefetch, bias, y,
                                                       ldy, k);
    }
  }
  matmul_tile<V, kW, kRows, kCols>(x, w, ldw, prefetch, bias, y, ldy, k);
}

// Weight rows of one panel (kept in L2 while every x row passes over it); also the unit in
// which threads split the output columns.
template <class V>
inline constexpr int64_t kPanelColumns = 4 * V::kMatmulCols;
// x rows per pass over the weights. Decode batches (m <= 256) stream the weights exactly once;
// bigger prefill batches re-read them from cache per block of rows instead of re-reading x.
inline constexpr int64_t kRowsPerPass = 256;

template <class V, WeightType kW>
void matmul_columns(const detail::MatmulArgs& a, int64_t n_begin, int64_t n_end) {
  constexpr int kRows = V::kMatmulRows;
  constexpr int kCols = V::kMatmulCols;
  const auto* w = static_cast<const typename WeightElement<kW>::type*>(a.w);
  const int64_t ldw = a.k + row_header<kW>(a.k);
  for (int64_t row0 = 0; row0 < a.m; row0 += kRowsPerPass) {
    const int64_t row1 = a.m - row0 > kRowsPerPass ? row0 + kRowsPerPass : a.m;
    for (int64_t p0 = n_begin; p0 < n_end; p0 += kPanelColumns<V>) {
      const int64_t p1 = n_end - p0 > kPanelColumns<V> ? p0 + kPanelColumns<V> : n_end;
      for (int64_t i = row0; i < row1; i += kRows) {
        const int rows = row1 - i > kRows ? kRows : static_cast<int>(row1 - i);
        for (int64_t j = p0; j < p1; j += kCols) {
          const int cols = p1 - j > kCols ? kCols : static_cast<int>(p1 - j);
          // Only the first pass over a panel reads weights from memory; later ones hit cache.
          // An empty inner dimension may come with no weights at all (w == nullptr).
          const char* prefetch = i == row0 && a.k > 0
                                     ? reinterpret_cast<const char*>(w + j * ldw) + kPrefetchBytes
                                     : nullptr;
          matmul_edge_tile<V, kW, kRows, kCols>(rows, cols, a.x + i * a.k, w + j * ldw, ldw,
                                                prefetch, a.bias != nullptr ? a.bias + j : nullptr,
                                                a.y + i * a.n + j, a.n, a.k);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Paged attention. A work item is a token and one of its KV heads: the query heads sharing that
// KV head (GQA) go over each chunk of keys together, so each K and V row comes from memory once
// per item and then from L1. Every head runs its own online softmax, its output row doubling as
// the accumulator; a head's arithmetic does not depend on which heads or tokens share the call.

inline constexpr int kKeysPerChunk = 64;
inline constexpr int kHeadsPerPass = 8;  // query heads sharing one pass over the keys

template <class V>
inline void scale_in_place(float* x, int64_t n, float factor) {
  const typename V::F f = V::set1(factor);
  for_each_vector<V>(n, [&](int64_t i, int lanes) {
    store_n<V>(x + i, V::mul(load_n<V>(x + i, lanes), f), lanes);
  });
}

// A KV cache of element kind kC (kF32, kBf16, or kF8: kF8Row rows) as the kernels read it: T
// elements, a row of `cols` values taking row_elements(cols) of them, its values after
// kHeader elements (kF8Row: the f32 scale). kF8 values load as e4m3 * 2^-8 (load_weights_n), so
// each row's scale is applied times 2^8: to a key's score, and to the softmax weight of a value.
template <WeightType kC>
struct CacheRows {
  using T = typename WeightElement<kC>::type;
  static constexpr int64_t kHeader = kC == WeightType::kF8 ? 4 : 0;
  static constexpr bool kScaled = kC == WeightType::kF8;
  static constexpr int64_t row_elements(int64_t cols) { return kHeader + cols; }
  // The scale times 2^8 of the row that starts at `row` (kScaled only).
  static float scale_of_row(const T* row) {
    float s;
    __builtin_memcpy(&s, row, sizeof s);
    return s * 256.0f;
  }
};

// Offsets (in cache elements) of the values of one KV head in the rows of positions
// [p0, p0 + keys).
template <class V, WeightType kC>
inline void key_offsets(const PagedAttentionArgs& a, const int32_t* blocks, int64_t kv_head,
                        int64_t p0, int keys, int64_t* offsets) {
  const int64_t slot_stride =
      CacheRows<kC>::row_elements(static_cast<int64_t>(a.n_kv_heads) * a.head_dim);
  int64_t block = p0 / a.block_size;
  int64_t within = p0 % a.block_size;
  for (int c = 0; c < keys; ++c) {
    const int64_t slot = static_cast<int64_t>(blocks[block]) * a.block_size + within;
    offsets[c] = slot * slot_stride + CacheRows<kC>::kHeader + kv_head * a.head_dim;
    if (++within == a.block_size) {
      within = 0;
      ++block;
    }
  }
}

// scales[c] = the scale times 2^8 of the row that starts `back` elements before
// cache + offsets[c] (kScaled caches only).
template <WeightType kC>
inline void row_scales(const typename CacheRows<kC>::T* cache, const int64_t* offsets, int keys,
                       int64_t back, float* scales) {
  for (int c = 0; c < keys; ++c) scales[c] = CacheRows<kC>::scale_of_row(cache + offsets[c] - back);
}

// q . row over n values of a cache row (dot<V>'s order).
template <class V, WeightType kC>
inline float dot_row(const float* q, const typename CacheRows<kC>::T* row, int64_t n) {
  typename V::F acc = V::zero();
  for_each_vector<V>(n, [&](int64_t i, int lanes) {
    acc = V::fmadd(load_n<V>(q + i, lanes), load_weights_n<V, kC>(row + i, lanes), acc);
  });
  return V::reduce_add(acc);
}

// scores[c] = (q . k_c) * scale (* key_scales[c] for scaled caches) for the rows at
// k + offsets[c]: four keys at a time share the loads of q; each dot product is still
// dot_row's (same order, same result).
template <class V, WeightType kC>
inline void attention_scores(const float* q, const typename CacheRows<kC>::T* k,
                             const int64_t* offsets, int keys, int64_t head_dim, float scale,
                             const float* key_scales, float* scores) {
  int c = 0;
  for (; c + 4 <= keys; c += 4) {
    const auto* k0 = k + offsets[c];
    const auto* k1 = k + offsets[c + 1];
    const auto* k2 = k + offsets[c + 2];
    const auto* k3 = k + offsets[c + 3];
    typename V::F acc0 = V::zero(), acc1 = V::zero(), acc2 = V::zero(), acc3 = V::zero();
    for_each_vector<V>(head_dim, [&](int64_t d, int lanes) {
      const typename V::F qv = load_n<V>(q + d, lanes);
      acc0 = V::fmadd(qv, load_weights_n<V, kC>(k0 + d, lanes), acc0);
      acc1 = V::fmadd(qv, load_weights_n<V, kC>(k1 + d, lanes), acc1);
      acc2 = V::fmadd(qv, load_weights_n<V, kC>(k2 + d, lanes), acc2);
      acc3 = V::fmadd(qv, load_weights_n<V, kC>(k3 + d, lanes), acc3);
    });
    scores[c] = V::reduce_add(acc0) * scale;
    scores[c + 1] = V::reduce_add(acc1) * scale;
    scores[c + 2] = V::reduce_add(acc2) * scale;
    scores[c + 3] = V::reduce_add(acc3) * scale;
  }
  for (; c < keys; ++c) scores[c] = dot_row<V, kC>(q, k + offsets[c], head_dim) * scale;
  if constexpr (CacheRows<kC>::kScaled) {
    for (c = 0; c < keys; ++c) scores[c] *= key_scales[c];
  }
}

// out[d] += p[c] * v_c[d] over c in order, for the kVectors vectors of out starting at `out`
// (the last one `last_lanes` wide). The accumulators stay in registers across all the keys.
template <class V, WeightType kC, int kVectors>
inline void accumulate_values(float* out, const typename CacheRows<kC>::T* v,
                              const int64_t* offsets, const float* p, int keys, int last_lanes) {
  typename V::F acc[kVectors];
#pragma GCC unroll 8
  for (int j = 0; j < kVectors; ++j) {
    acc[j] = load_n<V>(out + j * V::kWidth, j + 1 < kVectors ? V::kWidth : last_lanes);
  }
  for (int c = 0; c < keys; ++c) {
    const typename V::F pc = V::set1(p[c]);
    const auto* row = v + offsets[c];
#pragma GCC unroll 8
    for (int j = 0; j < kVectors; ++j) {
      const int lanes = j + 1 < kVectors ? V::kWidth : last_lanes;
      acc[j] = V::fmadd(pc, load_weights_n<V, kC>(row + j * V::kWidth, lanes), acc[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < kVectors; ++j) {
    store_n<V>(out + j * V::kWidth, acc[j], j + 1 < kVectors ? V::kWidth : last_lanes);
  }
}

// accumulate_values over a whole row of head_dim, in slices of at most 8 vectors.
template <class V, WeightType kC>
inline void accumulate_value_rows(float* out, const typename CacheRows<kC>::T* v,
                                  const int64_t* offsets, const float* p, int keys,
                                  int64_t head_dim) {
  constexpr int64_t kSlice = 8 * V::kWidth;
  for (int64_t d0 = 0; d0 < head_dim; d0 += kSlice) {
    const int64_t width = head_dim - d0 < kSlice ? head_dim - d0 : kSlice;
    const int vectors = static_cast<int>((width + V::kWidth - 1) / V::kWidth);
    const int last = static_cast<int>(width - (vectors - 1) * V::kWidth);
    switch (vectors) {
      case 1:
        accumulate_values<V, kC, 1>(out + d0, v + d0, offsets, p, keys, last);
        break;
      case 2:
        accumulate_values<V, kC, 2>(out + d0, v + d0, offsets, p, keys, last);
        break;
      case 3:
        accumulate_values<V, kC, 3>(out + d0, v + d0, offsets, p, keys, last);
        break;
      case 4:
        accumulate_values<V, kC, 4>(out + d0, v + d0, offsets, p, keys, last);
        break;
      case 5:
        accumulate_values<V, kC, 5>(out + d0, v + d0, offsets, p, keys, last);
        break;
      case 6:
        accumulate_values<V, kC, 6>(out + d0, v + d0, offsets, p, keys, last);
        break;
      case 7:
        accumulate_values<V, kC, 7>(out + d0, v + d0, offsets, p, keys, last);
        break;
      default:
        accumulate_values<V, kC, 8>(out + d0, v + d0, offsets, p, keys, last);
        break;
    }
  }
}

// K and V rows are strided (the other KV heads sit between them), which the hardware prefetcher
// does not follow: the next chunk's rows (n elements each) are requested into L2 while this
// chunk computes.
template <class V, class T>
inline void prefetch_rows(const T* cache, const int64_t* offsets, int keys, int64_t n) {
  const int64_t bytes = n * static_cast<int64_t>(sizeof(T));
  for (int c = 0; c < keys; ++c) {
    const char* row = reinterpret_cast<const char*>(cache + offsets[c]);
    for (int64_t byte = 0; byte < bytes; byte += 64) V::prefetch_l2(row + byte);
  }
}

template <class V, WeightType kC>
void paged_attention_rows(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  using T = typename CacheRows<kC>::T;
  const T* k_cache = static_cast<const T*>(a.k_cache);
  const T* v_cache = static_cast<const T*>(a.v_cache);
  const int64_t head_dim = a.head_dim;
  const int group = a.n_heads / a.n_kv_heads;
  float scores[kHeadsPerPass][kKeysPerChunk];
  float running_max[kHeadsPerPass];
  float denominator[kHeadsPerPass];
  int64_t offsets[2][kKeysPerChunk];  // this chunk's and the next chunk's
  // Scaled caches: the chunk's K and V row scales, and a head's softmax weights times V's.
  float key_scales[kKeysPerChunk];
  float value_scales[kKeysPerChunk];
  float weights[kKeysPerChunk];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t token = item / a.n_kv_heads;
    const int64_t kv_head = item % a.n_kv_heads;
    const int32_t* blocks =
        a.block_tables + static_cast<int64_t>(a.token_seq[token]) * a.max_blocks_per_seq;
    const int64_t ctx = a.ctx_len[token];
    const int64_t first =
        a.sliding_window > 0 && ctx > a.sliding_window ? ctx - a.sliding_window : 0;
    auto chunk_keys = [&](int64_t p0) {
      return ctx - p0 > kKeysPerChunk ? kKeysPerChunk : static_cast<int>(ctx - p0);
    };
    const int64_t back = CacheRows<kC>::kHeader + kv_head * head_dim;  // values to row start
    for (int h0 = 0; h0 < group; h0 += kHeadsPerPass) {
      const int heads = group - h0 > kHeadsPerPass ? kHeadsPerPass : group - h0;
      const int64_t row = (token * a.n_heads + kv_head * group + h0) * head_dim;
      const float* q = a.q + row;
      float* out = a.out + row;
      for_each_vector<V>(heads * head_dim,
                         [&](int64_t d, int lanes) { store_n<V>(out + d, V::zero(), lanes); });
      for (int h = 0; h < heads; ++h) {
        running_max[h] = -__builtin_inff();
        denominator[h] = 0.0f;
      }
      if (first < ctx) {
        key_offsets<V, kC>(a, blocks, kv_head, first, chunk_keys(first), offsets[0]);
      }
      for (int64_t p0 = first, chunk = 0; p0 < ctx; p0 += kKeysPerChunk, ++chunk) {
        const int keys = chunk_keys(p0);
        const int64_t* offs = offsets[chunk % 2];
        const int64_t p1 = p0 + kKeysPerChunk;
        if (p1 < ctx) {
          int64_t* next = offsets[(chunk + 1) % 2];
          key_offsets<V, kC>(a, blocks, kv_head, p1, chunk_keys(p1), next);
          prefetch_rows<V>(k_cache, next, chunk_keys(p1), head_dim);
          prefetch_rows<V>(v_cache, next, chunk_keys(p1), head_dim);
        }
        if constexpr (CacheRows<kC>::kScaled) {
          row_scales<kC>(k_cache, offs, keys, back, key_scales);
          row_scales<kC>(v_cache, offs, keys, back, value_scales);
        }
        for (int h = 0; h < heads; ++h) {
          float* s = scores[h];
          attention_scores<V, kC>(q + h * head_dim, k_cache, offs, keys, head_dim, a.scale,
                                  key_scales, s);
          float chunk_max = -__builtin_inff();
          for (int c = 0; c < keys; ++c) chunk_max = s[c] > chunk_max ? s[c] : chunk_max;
          const float new_max = chunk_max > running_max[h] ? chunk_max : running_max[h];
          if (new_max > running_max[h] && denominator[h] > 0.0f) {
            const float correction = exp_scalar<V>(running_max[h] - new_max);
            denominator[h] *= correction;
            scale_in_place<V>(out + h * head_dim, head_dim, correction);
          }
          running_max[h] = new_max;
          denominator[h] += exp_shifted_sum<V>(s, keys, new_max);
          const float* p = s;
          if constexpr (CacheRows<kC>::kScaled) {
            for (int c = 0; c < keys; ++c) weights[c] = s[c] * value_scales[c];
            p = weights;
          }
          accumulate_value_rows<V, kC>(out + h * head_dim, v_cache, offs, p, keys, head_dim);
        }
      }
      for (int h = 0; h < heads; ++h) {
        scale_in_place<V>(out + h * head_dim, head_dim,
                          denominator[h] > 0.0f ? 1.0f / denominator[h] : 0.0f);
      }
    }
  }
}

// Attention over a cache of a.cache_dtype (kF32, kBF16 or kF8Row).
template <class V>
void paged_attention_items(const PagedAttentionArgs& a, int64_t begin, int64_t end) {
  if (a.cache_dtype == DType::kBF16) {
    paged_attention_rows<V, WeightType::kBf16>(a, begin, end);
  } else if (a.cache_dtype == DType::kF8Row) {
    paged_attention_rows<V, WeightType::kF8>(a, begin, end);
  } else {
    paged_attention_rows<V, WeightType::kF32>(a, begin, end);
  }
}

// ---------------------------------------------------------------------------------------------
// Row-wise and elementwise kernels.

// y = x * inv_rms * w over one row, in Hugging Face's order of multiplication.
template <class V>
inline void scale_row(const float* x, const float* w, float* y, int64_t dim, float inv_rms) {
  const typename V::F s = V::set1(inv_rms);
  for_each_vector<V>(dim, [&](int64_t i, int lanes) {
    const typename V::F normed = V::mul(load_n<V>(x + i, lanes), s);
    store_n<V>(y + i, V::mul(normed, load_n<V>(w + i, lanes)), lanes);
  });
}

template <class V>
void rms_norm_rows(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    const float mean_square = dot<V>(xr, xr, dim) / static_cast<float>(dim);
    scale_row<V>(xr, w, y + r * dim, dim, 1.0f / __builtin_sqrtf(mean_square + eps));
  }
}

template <class V>
void add_rms_norm_rows(float* residual, const float* x, const float* w, float* y, int64_t rows,
                       int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    float* rr = residual + r * dim;
    const float* xr = x + r * dim;
    typename V::F squares = V::zero();
    for_each_vector<V>(dim, [&](int64_t i, int lanes) {
      const typename V::F sum = V::add(load_n<V>(rr + i, lanes), load_n<V>(xr + i, lanes));
      store_n<V>(rr + i, sum, lanes);
      squares = V::fmadd(sum, sum, squares);
    });
    const float mean_square = V::reduce_add(squares) / static_cast<float>(dim);
    scale_row<V>(rr, w, y + r * dim, dim, 1.0f / __builtin_sqrtf(mean_square + eps));
  }
}

template <class V>
void rope_token(float* x, const float* cos, const float* sin, int64_t heads, int64_t head_dim,
                int64_t half, int64_t count) {
  for (int64_t h = 0; h < heads; ++h) {
    float* lo = x + h * head_dim;
    float* hi = lo + half;
    for_each_vector<V>(count, [&](int64_t i, int lanes) {
      const typename V::F x1 = load_n<V>(lo + i, lanes);
      const typename V::F x2 = load_n<V>(hi + i, lanes);
      const typename V::F c = load_n<V>(cos + i, lanes);
      const typename V::F s = load_n<V>(sin + i, lanes);
      store_n<V>(lo + i, V::sub(V::mul(x1, c), V::mul(x2, s)), lanes);
      store_n<V>(hi + i, V::add(V::mul(x2, c), V::mul(x1, s)), lanes);
    });
  }
}

template <class V>
inline typename V::F sigmoid_vec(typename V::F x) {
  const typename V::F one = V::set1(1.0f);
  return V::div(one, V::add(one, V::exp(V::sub(V::zero(), x))));
}

template <class V>
void silu_mul_rows(const float* gate_up, float* out, int64_t rows, int64_t inter) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* gate = gate_up + r * 2 * inter;
    const float* up = gate + inter;
    float* o = out + r * inter;
    for_each_vector<V>(inter, [&](int64_t i, int lanes) {
      const typename V::F g = load_n<V>(gate + i, lanes);
      const typename V::F silu = V::mul(g, sigmoid_vec<V>(g));
      store_n<V>(o + i, V::mul(silu, load_n<V>(up + i, lanes)), lanes);
    });
  }
}

template <class V>
void softmax_rows(float* x, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * n;
    typename V::F vmax = V::set1(-__builtin_inff());
    int64_t i = 0;
    for (; i + V::kWidth <= n; i += V::kWidth) vmax = V::max(vmax, V::load(xr + i));
    float row_max = V::reduce_max(vmax);
    for (; i < n; ++i) row_max = xr[i] > row_max ? xr[i] : row_max;
    const typename V::F inverse = V::set1(1.0f / exp_shifted_sum<V>(xr, n, row_max));
    for_each_vector<V>(n, [&](int64_t j, int lanes) {
      store_n<V>(xr + j, V::mul(load_n<V>(xr + j, lanes), inverse), lanes);
    });
  }
}

template <class V>
void sigmoid(float* x, int64_t n) {
  for_each_vector<V>(n, [&](int64_t i, int lanes) {
    store_n<V>(x + i, sigmoid_vec<V>(load_n<V>(x + i, lanes)), lanes);
  });
}

template <class V>
void axpy(float a, const float* x, float* y, int64_t n) {
  const typename V::F va = V::set1(a);
  for_each_vector<V>(n, [&](int64_t i, int lanes) {
    store_n<V>(y + i, V::fmadd(va, load_n<V>(x + i, lanes), load_n<V>(y + i, lanes)), lanes);
  });
}

template <class V>
void add(const float* a, const float* b, float* y, int64_t n) {
  for_each_vector<V>(n, [&](int64_t i, int lanes) {
    store_n<V>(y + i, V::add(load_n<V>(a + i, lanes), load_n<V>(b + i, lanes)), lanes);
  });
}

template <class V, WeightType kW>
void convert_to_f32(const uint16_t* src, float* dst, int64_t n) {
  for_each_vector<V>(n, [&](int64_t i, int lanes) {
    store_n<V>(dst + i, load_weights_n<V, kW>(src + i, lanes), lanes);
  });
}

// Four independent accumulators keep enough loads in flight to saturate memory.
template <class V>
float sum(const float* x, int64_t n) {
  typename V::F acc[4] = {V::zero(), V::zero(), V::zero(), V::zero()};
  int64_t i = 0;
  for (; i + 4 * V::kWidth <= n; i += 4 * V::kWidth) {
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) acc[u] = V::add(acc[u], V::load(x + i + u * V::kWidth));
  }
  for_each_vector<V>(
      n - i, [&](int64_t j, int lanes) { acc[0] = V::add(acc[0], load_n<V>(x + i + j, lanes)); });
  return V::reduce_add(V::add(V::add(acc[0], acc[1]), V::add(acc[2], acc[3])));
}

// Defined in simd_latent_attention.h, which each ISA's file includes after this header.
template <class V>
void latent_attention_span(const LatentAttentionArgs& a, const detail::LatentSpan& span);

template <class V>
constexpr detail::KernelTable make_kernel_table() {
  return detail::KernelTable{
      .matmul_f32 = &matmul_columns<V, WeightType::kF32>,
      .matmul_bf16 = &matmul_columns<V, WeightType::kBf16>,
      .matmul_f16 = &matmul_columns<V, WeightType::kF16>,
      .matmul_i8 = &matmul_columns<V, WeightType::kI8>,
      .matmul_i4 = &matmul_i4_columns<V>,
      .matmul_f8 = &matmul_columns<V, WeightType::kF8>,
      .matmul_columns_per_unit = kPanelColumns<V>,
      .paged_attention = &paged_attention_items<V>,
      .rms_norm = &rms_norm_rows<V>,
      .add_rms_norm = &add_rms_norm_rows<V>,
      .rope = &rope_token<V>,
      .silu_mul = &silu_mul_rows<V>,
      .softmax = &softmax_rows<V>,
      .sigmoid = &sigmoid<V>,
      .axpy = &axpy<V>,
      .add = &add<V>,
      .bf16_to_f32 = &convert_to_f32<V, WeightType::kBf16>,
      .f16_to_f32 = &convert_to_f32<V, WeightType::kF16>,
      .sum = &sum<V>,
      .latent_attention_span = &latent_attention_span<V>,
  };
}

}  // namespace sy::cpu::simd
