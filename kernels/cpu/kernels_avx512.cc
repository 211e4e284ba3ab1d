// The AVX-512 kernel table: simd_kernels.h instantiated over simd::Avx512. This file alone is
// compiled with AVX-512 enabled (see CMakeLists.txt); it runs only where isa.cc detected it.
#include "kernels/cpu/simd_avx512.h"
#include "kernels/cpu/simd_kernels.h"
#include "kernels/cpu/simd_latent_attention.h"

namespace sy::cpu::detail {

extern const KernelTable kAvx512Kernels = simd::make_kernel_table<simd::Avx512>();

}  // namespace sy::cpu::detail
