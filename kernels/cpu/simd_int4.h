// The int4-weight matmul (DType::kI4G*) written once over a vector type V (simd::Avx2,
// simd::Avx512, simd::Avx512Vnni) and instantiated by that instruction set's file. Integer dot
// products of the 4-bit weights with x quantized to int8 per group (Int4Activations), on 256-bit
// vectors: 32 packed bytes are 64 weights, unpacked by one mask and one shift.
//
// As in simd_kernels.h, everything here is a template on V: a copy compiled for one instruction
// set must never be the one another set's code calls. Include after simd_avx2.h / simd_avx512.h
// (which bring the intrinsics in).
#pragma once

#include <cstdint>

#include "kernels/cpu/kernel_table.h"

namespace sy::cpu::simd {

using detail::Int4Activations;

// Output (i, j) = sum over groups g of (s_w[g] * s_x[g]) * (q_w . q_x over g) + min_w[g] *
// sum_x[g] + 8 * s_w[g] * residual_x[g] (the weights' centre times x's rounding, given back: see
// Int4Activations), each sum in f32 vector lanes reduced by a fixed tree, then the bias: the
// same operations whatever the tile shape or batch. The integer dot products are exact, so their
// order does not matter.

template <class V>
inline float int4_reduce(__m256 v) {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

// Scales and mins of groups [g0, g0 + n) (n <= 8) of a row's header as two f32 vectors, lanes
// from n on zero.
template <class V>
inline void int4_header_chunk(const uint8_t* h, int n, __m256* scales, __m256* mins) {
  __m256i pairs;
  if (n == 8) {
    pairs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h));
  } else {
    alignas(32) uint8_t block[32] = {};
    for (int b = 0; b < 4 * n; ++b) block[b] = h[b];
    pairs = _mm256_load_si256(reinterpret_cast<const __m256i*>(block));
  }
  // {scale, min} f16 pairs -> the scales in bytes 0-15, the mins in 16-31.
  const __m256i even_odd = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0,
                                            1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  const __m256i split =
      _mm256_permute4x64_epi64(_mm256_shuffle_epi8(pairs, even_odd), 0xd8);  // qwords 0, 2, 1, 3
  *scales = _mm256_cvtph_ps(_mm256_castsi256_si128(split));
  *mins = _mm256_cvtph_ps(_mm256_extracti128_si256(split, 1));
}

// Weight rows w + j * ldw (header at the start, packed values at w + header), x rows q + i *
// padded_k. Groups go in chunks of 8: their scales and mins are converted as vectors, the
// mins' and centre's terms accumulate per group lane, and each group's factor s_w * s_x waits in
// `factor` for its integer dot product. kGroup >= 64: one integer accumulator per group;
// kGroup == 32: each 64-element block spans two groups, lanes 0-3 the first and 4-7 the second.
template <class V, int kGroup, int kRows, int kCols>
void matmul_i4_tile(const Int4Activations& xa, int64_t i0, const uint8_t* w, int64_t ldw,
                    int64_t header, const char* prefetch, const float* bias, float* y,
                    int64_t ldy) {
  constexpr int64_t kGroupsPerStep = kGroup == 32 ? 2 : 1;
  constexpr int64_t kStepElements = kGroup == 32 ? 64 : kGroup;
  constexpr int64_t kStepBytes = kCols * (kStepElements / 2 + 4 * kGroupsPerStep);
  constexpr int64_t kChunkGroups = 8;
  const __m256i low_nibbles = _mm256_set1_epi8(0x0f);
  const __m256 eight = _mm256_set1_ps(8.0f);
  __m256 acc[kRows][kCols];
  __m256 min_acc[kRows][kCols];  // lane l: the mins' and centre's terms of groups l mod 8
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < kCols; ++j) {
      acc[i][j] = _mm256_setzero_ps();
      min_acc[i][j] = _mm256_setzero_ps();
    }
  }
  alignas(32) float factor[kRows][kCols][kChunkGroups];
  const int64_t steps = xa.padded_k / kStepElements;
  for (int64_t c0 = 0; c0 < xa.groups; c0 += kChunkGroups) {
    const int n = xa.groups - c0 < kChunkGroups ? static_cast<int>(xa.groups - c0) : kChunkGroups;
    __m256 w_scale[kCols], w_min[kCols];
#pragma GCC unroll 8
    for (int j = 0; j < kCols; ++j)
      int4_header_chunk<V>(w + j * ldw + c0 * 4, n, &w_scale[j], &w_min[j]);
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
      const int64_t at = (i0 + i) * xa.groups + c0;
      __m256 x_scale, x_sum, x_residual;
      if (n == kChunkGroups) {
        x_scale = _mm256_loadu_ps(xa.scale + at);
        x_sum = _mm256_loadu_ps(xa.sum + at);
        x_residual = _mm256_loadu_ps(xa.residual + at);
      } else {
        alignas(32) float block[3][kChunkGroups] = {};
        for (int g = 0; g < n; ++g) {
          block[0][g] = xa.scale[at + g];
          block[1][g] = xa.sum[at + g];
          block[2][g] = xa.residual[at + g];
        }
        x_scale = _mm256_load_ps(block[0]);
        x_sum = _mm256_load_ps(block[1]);
        x_residual = _mm256_load_ps(block[2]);
      }
#pragma GCC unroll 8
      for (int j = 0; j < kCols; ++j) {
        _mm256_store_ps(factor[i][j], _mm256_mul_ps(w_scale[j], x_scale));
        min_acc[i][j] = _mm256_fmadd_ps(w_min[j], x_sum, min_acc[i][j]);
        min_acc[i][j] =
            _mm256_fmadd_ps(_mm256_mul_ps(w_scale[j], eight), x_residual, min_acc[i][j]);
      }
    }
    const int64_t s_end =
        (c0 + kChunkGroups) / kGroupsPerStep < steps ? (c0 + kChunkGroups) / kGroupsPerStep : steps;
    for (int64_t s = c0 / kGroupsPerStep; s < s_end; ++s) {
      if (prefetch != nullptr) {
        const char* ahead = prefetch + s * kStepBytes;
        for (int64_t line = 0; line < kStepBytes; line += 64) V::prefetch(ahead + line);
      }
      __m256i dot[kRows][kCols];
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) {
#pragma GCC unroll 8
        for (int j = 0; j < kCols; ++j) dot[i][j] = _mm256_setzero_si256();
      }
#pragma GCC unroll 4
      for (int64_t b = 0; b < kStepElements / 64; ++b) {
        const int64_t e = s * kStepElements + b * 64;  // first element of this 64-element block
        __m256i lo[kCols], hi[kCols];
#pragma GCC unroll 8
        for (int j = 0; j < kCols; ++j) {
          const __m256i packed =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + j * ldw + header + e / 2));
          lo[j] = _mm256_and_si256(packed, low_nibbles);
          hi[j] = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibbles);
        }
#pragma GCC unroll 8
        for (int i = 0; i < kRows; ++i) {
          const int8_t* xq = xa.q + (i0 + i) * xa.padded_k + e;
          const __m256i x_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
          const __m256i x_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32));
#pragma GCC unroll 8
          for (int j = 0; j < kCols; ++j) {
            dot[i][j] = V::dot_u4_i8(dot[i][j], lo[j], x_lo);
            dot[i][j] = V::dot_u4_i8(dot[i][j], hi[j], x_hi);
          }
        }
      }
      // This step's groups within the chunk (for kGroup == 32 the second may lie past the last
      // group: its factor lane is zero, and so are its x values).
      const int64_t g = s * kGroupsPerStep - c0;
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) {
#pragma GCC unroll 8
        for (int j = 0; j < kCols; ++j) {
          __m256 f;
          if constexpr (kGroupsPerStep == 2) {
            f = _mm256_set_m128(_mm_broadcast_ss(&factor[i][j][g + 1]),
                                _mm_broadcast_ss(&factor[i][j][g]));
          } else {
            f = _mm256_broadcast_ss(&factor[i][j][g]);
          }
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(V::dot_finish(dot[i][j])), f, acc[i][j]);
        }
      }
    }
  }
  for (int i = 0; i < kRows; ++i) {
    for (int j = 0; j < kCols; ++j) {
      float sum = int4_reduce<V>(acc[i][j]) + int4_reduce<V>(min_acc[i][j]);
      // Rounded before the bias in every tile shape (see matmul_tile).
      __asm__("" : "+x"(sum));
      y[i * ldy + j] = bias != nullptr ? sum + bias[j] : sum;
    }
  }
}

template <class V, int kGroup, int kRows, int kCols>
void matmul_i4_edge_tile(int rows, int cols, const Int4Activations& xa, int64_t i0,
                         const uint8_t* w, int64_t ldw, int64_t header, const char* prefetch,
                         const float* bias, float* y, int64_t ldy) {
  if constexpr (kRows > 1) {
    if (rows < kRows) {
      return matmul_i4_edge_tile<V, kGroup, kRows - 1, kCols>(rows, cols, xa, i0, w, ldw, header,
                                                              prefetch, bias, y, ldy);
    }
  }
  if constexpr (kCols > 1) {
    if (cols < kCols) {
      return matmul_i4_edge_tile<V, kGroup, kRows, kCols - 1>(rows, cols, xa, i0, w, ldw, header,
                                                              prefetch, bias, y, ldy);
    }
  }
  matmul_i4_tile<V, kGroup, kRows, kCols>(xa, i0, w, ldw, header, prefetch, bias, y, ldy);
}

// Output columns [n_begin, n_end): panels of weight rows as in matmul_columns.
template <class V, int kGroup>
void matmul_i4_group(const detail::MatmulArgs& a, int64_t n_begin, int64_t n_end) {
  constexpr int kRows = V::kInt4Rows;
  constexpr int kCols = V::kInt4Cols;
  constexpr int64_t kPanel = 4 * V::kMatmulCols;
  constexpr int64_t kPass = 256;
  constexpr int64_t kAheadBytes = 8 << 10;
  const Int4Activations& xa = *a.x_int4;
  const auto* w = static_cast<const uint8_t*>(a.w);
  const int64_t header = xa.groups * 4;
  const int64_t ldw = header + xa.padded_k / 2;
  for (int64_t row0 = 0; row0 < a.m; row0 += kPass) {
    const int64_t row1 = a.m - row0 > kPass ? row0 + kPass : a.m;
    for (int64_t p0 = n_begin; p0 < n_end; p0 += kPanel) {
      const int64_t p1 = n_end - p0 > kPanel ? p0 + kPanel : n_end;
      for (int64_t i = row0; i < row1; i += kRows) {
        const int rows = row1 - i > kRows ? kRows : static_cast<int>(row1 - i);
        for (int64_t j = p0; j < p1; j += kCols) {
          const int cols = p1 - j > kCols ? kCols : static_cast<int>(p1 - j);
          const char* prefetch = i == row0 && a.k > 0
                                     ? reinterpret_cast<const char*>(w + j * ldw) + kAheadBytes
                                     : nullptr;
          matmul_i4_edge_tile<V, kGroup, kRows, kCols>(
              rows, cols, xa, i, w + j * ldw, ldw, header, prefetch,
              a.bias != nullptr ? a.bias + j : nullptr, a.y + i * a.n + j, a.n);
        }
      }
    }
  }
}

template <class V>
void matmul_i4_columns(const detail::MatmulArgs& a, int64_t n_begin, int64_t n_end) {
  switch (a.x_int4->group_size) {
    case 32:
      return matmul_i4_group<V, 32>(a, n_begin, n_end);
    case 64:
      return matmul_i4_group<V, 64>(a, n_begin, n_end);
    default:
      return matmul_i4_group<V, 128>(a, n_begin, n_end);
  }
}

}  // namespace sy::cpu::simd
