// Instruction-set detection (cpuid via the compiler's builtins) and the active kernel table.
// AVX2 needs FMA and F16C beside it; AVX-512 needs F, BW and VL (masked 16-bit loads).
#include "kernels/cpu/isa.h"

#include <atomic>

#include "kernels/cpu/kernel_table.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace sy::cpu {
namespace {

Isa detect_isa() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  if (avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    return Isa::kAvx512;
  }
  if (avx2) return Isa::kAvx2;
#endif
  return Isa::kScalar;
}

std::atomic<Isa>& active() {
  static std::atomic<Isa> isa{best_isa()};
  return isa;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "?";
}

Isa best_isa() {
  static const Isa best = detect_isa();
  return best;
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (isa <= best_isa()) isas.push_back(isa);
  }
  return isas;
}

Isa active_isa() { return active().load(std::memory_order_relaxed); }

void set_active_isa(Isa isa) {
  active().store(isa < best_isa() ? isa : best_isa(), std::memory_order_relaxed);
}

namespace detail {

#if defined(__x86_64__)
bool has_avx512_vnni() {
  static const bool vnni = best_isa() == Isa::kAvx512 && __builtin_cpu_supports("avx512vnni");
  return vnni;
}
#endif

const KernelTable* active_kernels() {
  switch (active_isa()) {
#if defined(__x86_64__)
    case Isa::kAvx512:
      return &kAvx512Kernels;
    case Isa::kAvx2:
      return &kAvx2Kernels;
#endif
    default:
      return nullptr;
  }
}

}  // namespace detail
}  // namespace sy::cpu
