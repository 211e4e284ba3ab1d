// AVX-512 vector primitives for the kernel templates in simd_kernels.h (16 f32 lanes).
// Include only from kernels_avx512.cc, which is the one file compiled with AVX-512 enabled.
#pragma once

// GCC 12 wrongly flags _mm512_undefined_*() inside its own AVX-512 intrinsics as uninitialised
// (GCC bug 105593); the warning is silenced for those headers only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <cstdint>

namespace sy::cpu::simd {

struct Avx512 {
  using F = __m512;
  static constexpr int kWidth = 16;
  // Matmul register tile: kMatmulRows x rows times kMatmulCols weight rows of accumulators
  // (16 of 32 registers), so each weight vector loaded feeds 4 FMAs.
  static constexpr int kMatmulRows = 4;
  static constexpr int kMatmulCols = 4;

  static __mmask16 first(int n) { return static_cast<__mmask16>((1u << n) - 1u); }

  static F zero() { return _mm512_setzero_ps(); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  // Lanes at and past n read as zero (and are not touched in memory).
  static F load_partial(const float* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void store_partial(float* p, F v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }

  static F widen_bf16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static F load_bf16(const uint16_t* p) {
    return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load_bf16_partial(const uint16_t* p, int n) {
    return widen_bf16(_mm256_maskz_loadu_epi16(first(n), p));
  }
  static F load_f16(const uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load_f16_partial(const uint16_t* p, int n) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first(n), p));
  }

  static F widen_i8(__m128i b) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)); }
  static F load_i8(const int8_t* p) {
    return widen_i8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_i8_partial(const int8_t* p, int n) {
    return widen_i8(_mm_maskz_loadu_epi8(first(n), p));
  }

  // Int4 matmul (simd_int4.h) register tile, and its integer dot product: 32 unsigned 4-bit
  // weights times 32 int8 x values, pairs summed into 16-bit lanes (|sum| <= 2 * 15 * 127, and
  // at most 4 products per group add up before dot_finish widens them to 32 bits).
  static constexpr int kInt4Rows = 2;
  static constexpr int kInt4Cols = 4;
  static __m256i dot_u4_i8(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi16(acc, _mm256_maddubs_epi16(u, s));
  }
  static __m256i dot_finish(__m256i acc) { return _mm256_madd_epi16(acc, _mm256_set1_epi16(1)); }
  // e4m3fn bytes as f16 bit patterns: byte b becomes ((b & 0x80) << 8) | ((b & 0x7f) << 7),
  // whose f16 value is exactly e4m3fn(b) * 2^-8 (subnormals included; NaN codes read as 480).
  // Sign-extended and shifted left by 7, the sign lands in bits 15 and 14; the AND clears 14.
  static F widen_e4m3(__m128i b) {
    const __m256i shifted = _mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7);
    return _mm512_cvtph_ps(_mm256_and_si256(shifted, _mm256_set1_epi16(-16385)));  // ~0x4000
  }
  static F load_e4m3(const uint8_t* p) {
    return widen_e4m3(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_e4m3_partial(const uint8_t* p, int n) {
    return widen_e4m3(_mm_maskz_loadu_epi8(first(n), p));
  }

  static void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
  static void prefetch_l2(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }

  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }  // a * b + c
  static __m256 upper_half(F v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  }
  // A fixed tree (halves, then quarters, ...): the same order on every call.
  static float reduce_add(F v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), upper_half(v));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
  }
  static float reduce_max(F v) { return _mm512_reduce_max_ps(v); }

  // exp(x) to ~2 ulp: 2^n * p(r) with n = round(x / ln2) and r = x - n ln2 (Cody-Waite split).
  // Below -86.6 it returns 0 (the true value is under 2.4e-38); above ln(FLT_MAX), +inf.
  static F exp(F x) {
    const F clamped = _mm512_min_ps(_mm512_max_ps(x, set1(-86.6f)), set1(88.72283935546875f));
    const F n = _mm512_roundscale_ps(_mm512_mul_ps(clamped, set1(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    F r = _mm512_fnmadd_ps(n, set1(0.693359375f), clamped);
    r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    F p = set1(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, set1(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, set1(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, set1(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, set1(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, set1(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, set1(1.0f)));
    // 2^(n-1) keeps the exponent field in range for n = 128; the factor 2 goes into p.
    const __m512i bits =
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(126)), 23);
    F result = _mm512_mul_ps(_mm512_add_ps(p, p), _mm512_castsi512_ps(bits));
    result = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, set1(-86.6f), _CMP_LT_OQ), result, zero());
    result = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, set1(88.72283935546875f), _CMP_GT_OQ),
                                  result, set1(__builtin_inff()));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), result, x);
  }
};

}  // namespace sy::cpu::simd
