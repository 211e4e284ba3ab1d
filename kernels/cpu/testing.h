// Helpers for kernel tests and benchmarks (header-only, no test framework): comparison against
// the reference as llm.c does it, NaN poisoning, seeded random data, and ISA selection scopes.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/dtype.h"

namespace sy::cpu {

struct Tolerance {
  double atol = 0.0;
  double rtol = 0.0;
};

// Returns "" when all n values are within tolerance, else the first mismatch (its index, and
// its row and column when row_len > 0) and how many values are off. NaN never matches.
inline std::string compare_close(const float* got, const float* want, int64_t n, Tolerance tol,
                                 int64_t row_len = 0) {
  int64_t bad = 0;
  int64_t first = -1;
  for (int64_t i = 0; i < n; ++i) {
    const double diff = std::fabs(static_cast<double>(got[i]) - want[i]);
    const bool exact = got[i] == want[i];  // also equal infinities
    if (!exact && !(diff <= tol.atol + tol.rtol * std::fabs(static_cast<double>(want[i])))) {
      if (bad++ == 0) first = i;
    }
  }
  if (bad == 0) return "";
  std::ostringstream out;
  out.precision(9);
  out << bad << " of " << n << " values differ; first at index " << first;
  if (row_len > 0) out << " (row " << first / row_len << ", col " << first % row_len << ")";
  out << ": got " << got[first] << ", want " << want[first] << " (atol " << tol.atol << ", rtol "
      << tol.rtol << ")";
  return out.str();
}

inline std::ostream& operator<<(std::ostream& os, Isa isa) { return os << isa_name(isa); }

// Fills with NaN so that any output element a kernel forgets to write fails the comparison.
inline void poison(std::vector<float>& v) {
  v.assign(v.size(), std::numeric_limits<float>::quiet_NaN());
}

inline std::vector<float> random_floats(size_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A weight matrix held in one dtype, with the exact f32 values it stands for.
struct Weights {
  DType dtype = DType::kF32;
  std::vector<float> f32;      // used when dtype == kF32
  std::vector<uint16_t> half;  // bf16 or f16 bits when dtype is one of those
  std::vector<uint8_t> i8;     // kI8, int4 (DType::kI4G*) or kF8 rows with their scales
  const void* data() const {
    if (dtype == DType::kI8 || is_int4(dtype) || dtype == DType::kF8) return i8.data();
    return dtype == DType::kF32 ? static_cast<const void*>(f32.data()) : half.data();
  }
};

inline Weights random_weights(DType dtype, size_t n, float lo, float hi, uint32_t seed) {
  Weights w{dtype, random_floats(n, lo, hi, seed), {}, {}};
  if (dtype != DType::kF32) {
    w.half.resize(n);
    for (size_t i = 0; i < n; ++i) {
      w.half[i] = dtype == DType::kBF16 ? f32_to_bf16(w.f32[i]) : f32_to_f16(w.f32[i]);
    }
    w.f32.clear();
  }
  return w;
}

// A [rows, cols] matrix of uniform values in `dtype`; kI8, int4 and kF8 quantize each row of them.
inline Weights random_weight_matrix(DType dtype, int64_t rows, int64_t cols, float lo, float hi,
                                    uint32_t seed) {
  if (dtype != DType::kI8 && !is_int4(dtype) && dtype != DType::kF8)
    return random_weights(dtype, static_cast<size_t>(rows * cols), lo, hi, seed);
  const std::vector<float> values = random_floats(static_cast<size_t>(rows * cols), lo, hi, seed);
  Weights w{dtype, {}, {}, std::vector<uint8_t>(rows * dtype_row_bytes(dtype, cols))};
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* row = w.i8.data() + r * dtype_row_bytes(dtype, cols);
    if (dtype == DType::kI8) {
      quantize_i8_row(values.data() + r * cols, cols, row);
    } else {
      if (dtype == DType::kF8) {
        quantize_f8_row(values.data() + r * cols, cols, row);
      } else {
        quantize_i4_row(dtype, values.data() + r * cols, cols, row);
      }
    }
  }
  return w;
}

// The vector instruction sets this processor runs (every one but kScalar, the reference).
inline std::vector<Isa> vector_isas() {
  std::vector<Isa> isas;
  for (Isa isa : supported_isas()) {
    if (isa != Isa::kScalar) isas.push_back(isa);
  }
  return isas;
}

// Makes the fast ops use one instruction set for the scope's lifetime.
class IsaScope {
 public:
  explicit IsaScope(Isa isa) : saved_(active_isa()) { set_active_isa(isa); }
  ~IsaScope() { set_active_isa(saved_); }
  IsaScope(const IsaScope&) = delete;
  IsaScope& operator=(const IsaScope&) = delete;

 private:
  Isa saved_;
};

}  // namespace sy::cpu
