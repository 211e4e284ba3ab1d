// Element types shared by every backend, and scalar conversions between them.
// Header-only; kernels/ depends on nothing but the standard library and CUDA.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace sy {

// kI8: a weight matrix quantized to int8, symmetric per row (per output channel): each row is
// its f32 scale followed by cols int8 values q, and element c of the row is scale * q[c].
enum class DType : uint8_t { kF32, kF16, kBF16, kI32, kI64, kI8 };

inline constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kI64:
      return 8;
    case DType::kI8:
      return 1;
  }
  return 0;
}

// Bytes before each kI8 row's int8 values: its f32 scale.
inline constexpr size_t kI8RowScaleBytes = sizeof(float);

// Bytes one row of `cols` elements takes (kI8 rows carry their scale).
inline constexpr size_t dtype_row_bytes(DType t, int64_t cols) {
  return static_cast<size_t>(cols) * dtype_size(t) + (t == DType::kI8 ? kI8RowScaleBytes : 0);
}

inline constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    case DType::kI32:
      return "i32";
    case DType::kI64:
      return "i64";
    case DType::kI8:
      return "int8";
  }
  return "?";
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Round to nearest even with overflow to infinity and gradual underflow.
inline uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to infinity
  if (abs < 0x38800000u) {                        // subnormal or zero in f16
    if (abs < 0x33000000u) return sign;           // below half the smallest subnormal
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(abs >> 23);  // 14..24
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return sign | static_cast<uint16_t>(half);
  }
  uint32_t half = ((abs >> 13) - ((127 - 15) << 10));
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return sign | static_cast<uint16_t>(half);
}

// The scale of a kI8 row (the row's bytes start with it; it may be unaligned).
inline float i8_row_scale(const void* row) {
  float scale;
  std::memcpy(&scale, row, sizeof scale);
  return scale;
}

// The int8 values of a kI8 row.
inline const int8_t* i8_row_values(const void* row) {
  return static_cast<const int8_t*>(row) + kI8RowScaleBytes;
}

// Quantizes n values into one kI8 row at `row` (dtype_row_bytes(kI8, n) bytes): scale =
// max|x| / 127, q = round(x / scale) (ties away from zero), so |q| <= 127 and the row's largest
// value is exact. An all-zero row gets scale 0.
inline void quantize_i8_row(const float* x, int64_t n, void* row) {
  float max_abs = 0.0f;
  for (int64_t i = 0; i < n; ++i)
    max_abs = x[i] > max_abs ? x[i] : (-x[i] > max_abs ? -x[i] : max_abs);
  const float scale = max_abs / 127.0f;
  const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
  std::memcpy(row, &scale, sizeof scale);
  int8_t* q = static_cast<int8_t*>(row) + kI8RowScaleBytes;
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i] * inverse;
    v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
    q[i] = static_cast<int8_t>(v >= 0.0f ? v + 0.5f : v - 0.5f);
  }
}

// Reads element i of a weight array stored as f32, bf16 or f16.
inline float load_as_f32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(p)[i];
    case DType::kBF16:
      return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16:
      return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    default:
      return 0.0f;
  }
}

}  // namespace sy
