// Element types shared by every backend, and scalar conversions between them.
// Header-only; kernels/ depends on nothing but the standard library and CUDA.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace sy {

// kI8: a weight matrix quantized to int8, symmetric per row (per output channel): each row is
// its f32 scale followed by cols int8 values q, and element c of the row is scale * q[c].
// kI4G32, kI4G64, kI4G128: a weight matrix quantized to 4 bits in groups of 32, 64 or 128
// consecutive columns, asymmetric (element = q * scale + min, q in [0, 15]); the group size is
// part of the dtype so a row says everything about itself. Layout of one row (int4_* below):
//   groups x {f16 scale, f16 min}, groups = ceil(cols / G), then
//   int4_padded_cols / 2 bytes of packed values, 32 elements per 16 bytes: byte i of a 32-element
//   chunk holds element i in its low nibble and element 16 + i in its high nibble (llama.cpp's
//   Q4_0 order). Values past cols are 0; the packed part is padded to whole groups and to a
//   multiple of 64 elements so that the kernels can read it 32 bytes at a time.
enum class DType : uint8_t { kF32, kF16, kBF16, kI32, kI64, kI8, kI4G32, kI4G64, kI4G128 };

inline constexpr bool is_int4(DType t) {
  return t == DType::kI4G32 || t == DType::kI4G64 || t == DType::kI4G128;
}

// Columns per scale/min group of an int4 dtype (0 for any other dtype).
inline constexpr int64_t int4_group_size(DType t) {
  return t == DType::kI4G32 ? 32 : t == DType::kI4G64 ? 64 : t == DType::kI4G128 ? 128 : 0;
}

// Groups (scale/min pairs) in an int4 row of `cols` elements.
inline constexpr int64_t int4_groups(DType t, int64_t cols) {
  const int64_t g = int4_group_size(t);
  return (cols + g - 1) / g;
}

// Elements the packed part of an int4 row holds: cols rounded up to whole groups and to 64.
inline constexpr int64_t int4_padded_cols(DType t, int64_t cols) {
  const int64_t unit = int4_group_size(t) > 64 ? int4_group_size(t) : 64;
  return (cols + unit - 1) / unit * unit;
}

// Bytes of an int4 row's header: one f16 scale and one f16 min per group.
inline constexpr size_t int4_header_bytes(DType t, int64_t cols) {
  return static_cast<size_t>(int4_groups(t, cols)) * 4;
}

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
    case DType::kI4G32:  // half a byte: use dtype_row_bytes
    case DType::kI4G64:
    case DType::kI4G128:
      return 0;
  }
  return 0;
}

// Bytes before each kI8 row's int8 values: its f32 scale.
inline constexpr size_t kI8RowScaleBytes = sizeof(float);

// Bytes one row of `cols` elements takes (kI8 rows carry their scale).
inline constexpr size_t dtype_row_bytes(DType t, int64_t cols) {
  if (is_int4(t))
    return int4_header_bytes(t, cols) + static_cast<size_t>(int4_padded_cols(t, cols) / 2);
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
    case DType::kI4G32:
      return "int4g32";
    case DType::kI4G64:
      return "int4g64";
    case DType::kI4G128:
      return "int4g128";
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

// Byte offset, within an int4 row's packed part, of element c, and whether it is the high nibble.
inline constexpr size_t int4_byte_of(int64_t c) {
  return static_cast<size_t>(c / 32 * 16 + c % 16);
}
inline constexpr bool int4_is_high(int64_t c) { return c % 32 >= 16; }

// Group g's scale and min of an int4 row.
inline float int4_row_scale(const void* row, int64_t g) {
  uint16_t h;
  std::memcpy(&h, static_cast<const uint8_t*>(row) + g * 4, sizeof h);
  return f16_to_f32(h);
}
inline float int4_row_min(const void* row, int64_t g) {
  uint16_t h;
  std::memcpy(&h, static_cast<const uint8_t*>(row) + g * 4 + 2, sizeof h);
  return f16_to_f32(h);
}

// The packed values of an int4 row of `cols` elements.
inline const uint8_t* int4_row_values(DType t, const void* row, int64_t cols) {
  return static_cast<const uint8_t*>(row) + int4_header_bytes(t, cols);
}

// The 4-bit value q of element c (the element is q * scale + min of its group).
inline int int4_row_q(DType t, const void* row, int64_t cols, int64_t c) {
  const uint8_t byte = int4_row_values(t, row, cols)[int4_byte_of(c)];
  return int4_is_high(c) ? byte >> 4 : byte & 0xf;
}

// Element c of an int4 row as f32: q * scale + min.
inline float int4_row_value(DType t, const void* row, int64_t cols, int64_t c) {
  const int64_t g = c / int4_group_size(t);
  return static_cast<float>(int4_row_q(t, row, cols, c)) * int4_row_scale(row, g) +
         int4_row_min(row, g);
}

// Writes group g's scale and min, and element c's 4-bit value q, into an int4 row being built
// (zero-filled first: set_int4_q ors the nibble in).
inline void set_int4_group(void* row, int64_t g, float scale, float min) {
  const uint16_t h[2] = {f32_to_f16(scale), f32_to_f16(min)};
  std::memcpy(static_cast<uint8_t*>(row) + g * 4, h, sizeof h);
}
inline void set_int4_q(DType t, void* row, int64_t cols, int64_t c, int q) {
  uint8_t* byte = static_cast<uint8_t*>(row) + int4_header_bytes(t, cols) + int4_byte_of(c);
  *byte = static_cast<uint8_t>(*byte | (int4_is_high(c) ? q << 4 : q));
}

// Quantizes n values into one int4 row of dtype t at `row` (dtype_row_bytes(t, n) bytes),
// asymmetric per group: scale = (max - min) / 15 and min as f16, then q = round((x - min) /
// scale) with those rounded values, clamped to [0, 15]. A constant group gets scale 0.
inline void quantize_i4_row(DType t, const float* x, int64_t n, void* row) {
  std::memset(row, 0, dtype_row_bytes(t, n));
  const int64_t group = int4_group_size(t);
  for (int64_t g = 0; g * group < n; ++g) {
    const int64_t begin = g * group;
    const int64_t end = begin + group < n ? begin + group : n;
    float lo = x[begin], hi = x[begin];
    for (int64_t i = begin; i < end; ++i) {
      lo = x[i] < lo ? x[i] : lo;
      hi = x[i] > hi ? x[i] : hi;
    }
    set_int4_group(row, g, (hi - lo) / 15.0f, lo);
    const float scale = int4_row_scale(row, g);
    const float min = int4_row_min(row, g);
    const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int64_t i = begin; i < end; ++i) {
      float v = (x[i] - min) * inverse + 0.5f;
      v = v > 15.0f ? 15.0f : (v < 0.0f ? 0.0f : v);
      set_int4_q(t, row, n, i, static_cast<int>(v));
    }
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
