// The int4 matmul with AVX512-VNNI: vpdpbusd multiplies and sums the 4-bit weights and int8 x
// in one instruction (on 256-bit vectors, AVX512-VL). This file alone is compiled with VNNI
// enabled (see CMakeLists.txt); ops.cc calls it only where has_avx512_vnni() says so.
#include "kernels/cpu/simd_avx512.h"
#include "kernels/cpu/simd_int4.h"

namespace sy::cpu {
namespace simd {

struct Avx512Vnni : Avx512 {
  static __m256i dot_u4_i8(__m256i acc, __m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(acc, u, s);
  }
  static __m256i dot_finish(__m256i acc) { return acc; }
};

}  // namespace simd

namespace detail {

void matmul_i4_avx512_vnni(const MatmulArgs& a, int64_t n_begin, int64_t n_end) {
  simd::matmul_i4_columns<simd::Avx512Vnni>(a, n_begin, n_end);
}

}  // namespace detail
}  // namespace sy::cpu
