// The AVX2 + FMA + F16C kernel table: simd_kernels.h instantiated over simd::Avx2. This file
// alone is compiled with AVX2 enabled (see CMakeLists.txt); it runs only where isa.cc found it.
#include "kernels/cpu/simd_avx2.h"
#include "kernels/cpu/simd_kernels.h"
#include "kernels/cpu/simd_latent_attention.h"

namespace sy::cpu::detail {

extern const KernelTable kAvx2Kernels = simd::make_kernel_table<simd::Avx2>();

}  // namespace sy::cpu::detail
