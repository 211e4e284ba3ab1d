// AVX2 + FMA + F16C vector primitives for the kernel templates in simd_kernels.h (8 f32 lanes).
// Include only from kernels_avx2.cc, which is the one file compiled with AVX2 enabled.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace sy::cpu::simd {

struct Avx2 {
  using F = __m256;
  static constexpr int kWidth = 8;
  // Matmul register tile: 4 x rows times 3 weight rows = 12 accumulators, 3 weight vectors and
  // one x vector: all 16 registers, no spills.
  static constexpr int kMatmulRows = 4;
  static constexpr int kMatmulCols = 3;

  // Row n of this table, read from offset 8 - n, enables the first n lanes.
  static constexpr int32_t kLaneMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  static __m256i first(int n) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLaneMask + 8 - n));
  }

  static F zero() { return _mm256_setzero_ps(); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  // Lanes at and past n read as zero (and are not touched in memory).
  static F load_partial(const float* p, int n) { return _mm256_maskload_ps(p, first(n)); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void store_partial(float* p, F v, int n) { _mm256_maskstore_ps(p, first(n), v); }

  // 16-bit loads have no masked form in AVX2: copy the tail into a zeroed block first.
  static __m128i load_u16_partial(const uint16_t* p, int n) {
    alignas(16) uint16_t block[8] = {};
    for (int i = 0; i < n; ++i) block[i] = p[i];
    return _mm_load_si128(reinterpret_cast<const __m128i*>(block));
  }
  static F widen_bf16(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static F load_bf16(const uint16_t* p) {
    return widen_bf16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_bf16_partial(const uint16_t* p, int n) {
    return widen_bf16(load_u16_partial(p, n));
  }
  static F load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_f16_partial(const uint16_t* p, int n) {
    return _mm256_cvtph_ps(load_u16_partial(p, n));
  }

  static F widen_i8(__m128i b) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)); }
  static F load_i8(const int8_t* p) {
    return widen_i8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  // No masked byte loads in AVX2: copy the tail into a zeroed block first.
  static F load_i8_partial(const int8_t* p, int n) {
    alignas(16) int8_t block[16] = {};
    for (int i = 0; i < n; ++i) block[i] = p[i];
    return widen_i8(_mm_load_si128(reinterpret_cast<const __m128i*>(block)));
  }

  // Int4 matmul (simd_int4.h) register tile, and its integer dot product: 32 unsigned 4-bit
  // weights times 32 int8 x values, pairs summed into 16-bit lanes (|sum| <= 2 * 15 * 127, and
  // at most 4 products per group add up before dot_finish widens them to 32 bits).
  static constexpr int kInt4Rows = 2;
  static constexpr int kInt4Cols = 2;
  static __m256i dot_u4_i8(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi16(acc, _mm256_maddubs_epi16(u, s));
  }
  static __m256i dot_finish(__m256i acc) { return _mm256_madd_epi16(acc, _mm256_set1_epi16(1)); }
  // e4m3fn bytes as f16 bit patterns: byte b becomes ((b & 0x80) << 8) | ((b & 0x7f) << 7),
  // whose f16 value is exactly e4m3fn(b) * 2^-8 (subnormals included; NaN codes read as 480).
  static F widen_e4m3(__m128i b) {
    const __m128i high = _mm_unpacklo_epi8(_mm_setzero_si128(), b);  // b << 8 per u16 lane
    const __m128i h = _mm_and_si128(_mm_srai_epi16(high, 1), _mm_set1_epi16(-16385));  // ~0x4000
    return _mm256_cvtph_ps(h);
  }
  static F load_e4m3(const uint8_t* p) {
    return widen_e4m3(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_e4m3_partial(const uint8_t* p, int n) {
    alignas(16) uint8_t block[16] = {};
    for (int i = 0; i < n; ++i) block[i] = p[i];
    return widen_e4m3(_mm_load_si128(reinterpret_cast<const __m128i*>(block)));
  }

  static void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
  static void prefetch_l2(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }

  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }  // a * b + c
  // A fixed tree (halves, then quarters, ...): the same order on every call.
  static float reduce_add(F v) {
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }
  static float reduce_max(F v) {
    __m128 q = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_max_ps(q, _mm_movehl_ps(q, q));
    q = _mm_max_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }

  // exp(x) to ~2 ulp: 2^n * p(r) with n = round(x / ln2) and r = x - n ln2 (Cody-Waite split).
  // Below -86.6 it returns 0 (the true value is under 2.4e-38); above ln(FLT_MAX), +inf.
  static F exp(F x) {
    const F clamped = _mm256_min_ps(_mm256_max_ps(x, set1(-86.6f)), set1(88.72283935546875f));
    const F n = _mm256_round_ps(_mm256_mul_ps(clamped, set1(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    F r = _mm256_fnmadd_ps(n, set1(0.693359375f), clamped);
    r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    F p = set1(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, set1(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, set1(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, set1(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, set1(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, set1(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, set1(1.0f)));
    // 2^(n-1) keeps the exponent field in range for n = 128; the factor 2 goes into p.
    const __m256i bits =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
    F result = _mm256_mul_ps(_mm256_add_ps(p, p), _mm256_castsi256_ps(bits));
    result = _mm256_blendv_ps(result, zero(), _mm256_cmp_ps(x, set1(-86.6f), _CMP_LT_OQ));
    result = _mm256_blendv_ps(result, set1(__builtin_inff()),
                              _mm256_cmp_ps(x, set1(88.72283935546875f), _CMP_GT_OQ));
    return _mm256_blendv_ps(result, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  }
};

}  // namespace sy::cpu::simd
