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
// Int4Activations), the first sum over lanes of f32 accumulators reduced by a fixed tree, the
// others in group order, then the bias: the same operations whatever the tile shape or batch. The
// integer dot products are exact, so their order does not matter.

template <class V>
inline float int4_reduce(__m256 v) {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

template <class V>
inline float int4_half(const uint8_t* p) {
  uint16_t h;
  __builtin_memcpy(&h, p, sizeof h);
  return _cvtsh_ss(h);
}

// Weight rows w + j * ldw (header at the start, packed values at w + header), x rows q + i *
// padded_k. kGroup >= 64: one integer accumulator per group; kGroup == 32: each 64-element block
// spans two groups, lanes 0-3 the first and 4-7 the second.
template <class V, int kGroup, int kRows, int kCols>
void matmul_i4_tile(const Int4Activations& xa, int64_t i0, const uint8_t* w, int64_t ldw,
                    int64_t header, const char* prefetch, const float* bias, float* y,
                    int64_t ldy) {
  constexpr int64_t kGroupsPerStep = kGroup == 32 ? 2 : 1;
  constexpr int64_t kStepElements = kGroup == 32 ? 64 : kGroup;
  constexpr int64_t kStepBytes = kCols * (kStepElements / 2 + 4 * kGroupsPerStep);
  const __m256i low_nibbles = _mm256_set1_epi8(0x0f);
  __m256 acc[kRows][kCols];
  float min_sum[kRows][kCols];
#pragma GCC unroll 8
  for (int i = 0; i < kRows; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < kCols; ++j) {
      acc[i][j] = _mm256_setzero_ps();
      min_sum[i][j] = 0.0f;
    }
  }
  const int64_t steps = xa.padded_k / kStepElements;
  for (int64_t s = 0; s < steps; ++s) {
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
    // The groups of this step: g0 (and g0 + 1 for kGroup == 32, absent past the last group).
    const int64_t g0 = s * kGroupsPerStep;
    const bool second = kGroupsPerStep == 2 && g0 + 1 < xa.groups;
#pragma GCC unroll 8
    for (int j = 0; j < kCols; ++j) {
      const uint8_t* h = w + j * ldw + g0 * 4;
      const float scale0 = int4_half<V>(h), min0 = int4_half<V>(h + 2);
      const float scale1 = second ? int4_half<V>(h + 4) : 0.0f;
      const float min1 = second ? int4_half<V>(h + 6) : 0.0f;
#pragma GCC unroll 8
      for (int i = 0; i < kRows; ++i) {
        const float* x_scale = xa.scale + (i0 + i) * xa.groups + g0;
        const float* x_sum = xa.sum + (i0 + i) * xa.groups + g0;
        const float* x_residual = xa.residual + (i0 + i) * xa.groups + g0;
        __m256 factor;
        if constexpr (kGroupsPerStep == 2) {
          const float f1 = second ? scale1 * x_scale[1] : 0.0f;
          factor = _mm256_set_m128(_mm_set1_ps(f1), _mm_set1_ps(scale0 * x_scale[0]));
        } else {
          factor = _mm256_set1_ps(scale0 * x_scale[0]);
        }
        acc[i][j] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(V::dot_finish(dot[i][j])), factor, acc[i][j]);
        min_sum[i][j] = __builtin_fmaf(min0, x_sum[0], min_sum[i][j]);
        min_sum[i][j] = __builtin_fmaf(8.0f * scale0, x_residual[0], min_sum[i][j]);
        if (second) {
          min_sum[i][j] = __builtin_fmaf(min1, x_sum[1], min_sum[i][j]);
          min_sum[i][j] = __builtin_fmaf(8.0f * scale1, x_residual[1], min_sum[i][j]);
        }
      }
    }
  }
  for (int i = 0; i < kRows; ++i) {
    for (int j = 0; j < kCols; ++j) {
      float sum = int4_reduce<V>(acc[i][j]) + min_sum[i][j];
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
