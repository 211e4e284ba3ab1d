// Rows of the paged KV cache in its element types (f32, bf16, kF8Row: e4m3fn + a scale per row),
// converted on write and read; shared by the reference and vector kernels (the same bits).
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/dtype.h"

namespace sy {

// The element types a KV cache may hold.
inline constexpr bool is_kv_cache_dtype(DType t) {
  return t == DType::kF32 || t == DType::kBF16 || t == DType::kF8Row;
}

// The largest finite e4m3fn magnitude: a kF8Row row's largest |x| is stored as +-448 exactly.
inline constexpr float kE4M3Max = 448.0f;

// The scale of a kF8Row row (its first 4 bytes; rows may be unaligned).
inline float kv_row_scale(const void* row) {
  float scale;
  std::memcpy(&scale, row, sizeof scale);
  return scale;
}

// Writes n f32 values as one cache row of `dtype` at `row` (dtype_row_bytes(dtype, n) bytes):
// f32 copied, bf16 rounded to nearest even, kF8Row with scale = max|x| / 448 and
// q = e4m3(x / scale), so the row's largest magnitude maps to 448 exactly. An all-zero row gets
// scale 0 and zeros; a NaN or infinity makes the scale NaN or infinite, so the row reads back
// non-finite, as it would from an f32 cache.
inline void write_kv_row(const float* x, int64_t n, DType dtype, void* row) {
  if (dtype == DType::kF32) {
    std::memcpy(row, x, static_cast<size_t>(n) * sizeof(float));
  } else if (dtype == DType::kBF16) {
    auto* out = static_cast<uint16_t*>(row);
    for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
  } else if (dtype == DType::kF8Row) {
    float max_abs = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      const float a = x[i] < 0.0f ? -x[i] : x[i];
      max_abs = a > max_abs || __builtin_isnan(a) ? a : max_abs;
    }
    const float scale = max_abs / kE4M3Max;
    std::memcpy(row, &scale, sizeof scale);
    uint8_t* q = static_cast<uint8_t*>(row) + sizeof(float);
    for (int64_t i = 0; i < n; ++i) q[i] = scale > 0.0f ? f32_to_e4m3(x[i] / scale) : 0;
  }
}

// Element i of a cache row of `dtype`, as f32 (kF8Row: scale * e4m3fn(q[i])).
inline float kv_row_value(const void* row, DType dtype, int64_t i) {
  if (dtype == DType::kF8Row) {
    return kv_row_scale(row) * e4m3_to_f32(static_cast<const uint8_t*>(row)[sizeof(float) + i]);
  }
  return load_as_f32(row, dtype, i);
}

}  // namespace sy
