// Which instruction set the fast kernels use: detected once from the processor, and selectable
// by tests and benchmarks to check or compare every implementation on one machine.
#pragma once

#include <string_view>
#include <vector>

namespace sy::cpu {

namespace detail {
struct KernelTable;
}

enum class Isa { kScalar, kAvx2, kAvx512 };  // kScalar: the reference loops

std::string_view isa_name(Isa isa);

// The widest instruction set this processor and OS support.
Isa best_isa();

// Every instruction set this processor can run, narrowest first.
std::vector<Isa> supported_isas();

Isa active_isa();

// Makes the fast ops use `isa`, capped at best_isa(). For tests and benchmarks: not safe while
// kernels are running on other threads.
void set_active_isa(Isa isa);

namespace detail {
// The active instruction set's kernels; null for kScalar.
const KernelTable* active_kernels();
}  // namespace detail

}  // namespace sy::cpu
