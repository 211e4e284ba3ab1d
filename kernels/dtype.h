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

// kF8: a weight matrix in FP8 e4m3fn with one f32 scale per 128-column block of each row: each
// row is its ceil(cols / 128) scales s followed by cols e4m3fn bytes q, and element c of the row
// is s[c / 128] * e4m3fn(q[c]). Rows are self-contained, like kI8 rows.
// kE4M3: plain e4m3fn bytes as a checkpoint stores them (safetensors F8_E4M3); read at load.
// kF8Row: FP8 e4m3fn rows with one f32 scale each (the fp8 KV cache, kernels/kv_rows.h): each
// row is its f32 scale s followed by cols e4m3fn bytes q, and element c is s * e4m3fn(q[c]).
enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kI32,
  kI64,
  kI8,
  kI4G32,
  kI4G64,
  kI4G128,
  kF8,
  kE4M3,
  kF8Row
};

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
    case DType::kF8:
    case DType::kE4M3:
    case DType::kF8Row:
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

// Columns that share one scale in a kF8 row.
inline constexpr int64_t kF8BlockColumns = 128;

// Bytes before each kF8 row's e4m3fn values: one f32 scale per block of 128 columns.
inline constexpr size_t f8_row_scale_bytes(int64_t cols) {
  return static_cast<size_t>((cols + kF8BlockColumns - 1) / kF8BlockColumns) * sizeof(float);
}

// Bytes one row of `cols` elements takes (kI8, kF8 and kF8Row rows carry their scales).
inline constexpr size_t dtype_row_bytes(DType t, int64_t cols) {
  if (is_int4(t))
    return int4_header_bytes(t, cols) + static_cast<size_t>(int4_padded_cols(t, cols) / 2);
  return static_cast<size_t>(cols) * dtype_size(t) + (t == DType::kI8 ? kI8RowScaleBytes : 0) +
         (t == DType::kF8 ? f8_row_scale_bytes(cols) : 0) +
         (t == DType::kF8Row ? sizeof(float) : 0);
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
    case DType::kF8:
      return "fp8";
    case DType::kE4M3:
      return "f8_e4m3";
    case DType::kF8Row:
      return "fp8_e4m3_row";
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

// The value of an e4m3fn byte (OCP FP8: sign, 4 exponent bits with bias 7, 3 mantissa bits; no
// infinities; 0x7f and 0xff are NaN; the largest finite magnitude is 448).
inline float e4m3_to_f32(uint8_t b) {
  const uint32_t sign = static_cast<uint32_t>(b & 0x80u) << 24;
  const uint32_t exp = (b >> 3) & 0xfu;
  const uint32_t mant = b & 0x7u;
  uint32_t bits;
  if ((b & 0x7fu) == 0x7fu) {
    bits = sign | 0x7fc00000u;
  } else if (exp == 0) {  // zero or subnormal: mant * 2^-9, exact in f32
    float f = static_cast<float>(mant) * (1.0f / 512.0f);
    std::memcpy(&bits, &f, sizeof bits);
    bits |= sign;
  } else {
    bits = sign | ((exp + 127 - 7) << 23) | (mant << 20);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// The e4m3fn byte nearest to f, ties to even, as torch's float8_e4m3fn cast; magnitudes beyond
// 448 (infinities included) saturate to +-448 (torch's cast gives NaN from 464 up, so quantizers
// clamp first; this is that clamp and cast in one). NaN becomes 0x7f (or 0xff).
inline uint8_t f32_to_e4m3(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7fu;
  if (abs >= 0x43e00000u) return sign | 0x7eu;  // >= 448
  if (abs < 0x3c800000u) {                      // below 2^-6: subnormal or zero in e4m3
    // Adding 2^14 (whose f32 ulp is e4m3's subnormal step 2^-9) makes f32's own round to
    // nearest even do the rounding; the low bits are then the step count (torch's trick).
    float shifted;
    std::memcpy(&shifted, &abs, sizeof shifted);
    shifted += 16384.0f;
    uint32_t sbits;
    std::memcpy(&sbits, &shifted, sizeof sbits);
    return sign | static_cast<uint8_t>(sbits - 0x46800000u);
  }
  const uint32_t mant_odd = (abs >> 20) & 1u;
  abs += (static_cast<uint32_t>(7 - 127) << 23) + 0x7ffffu + mant_odd;
  return sign | static_cast<uint8_t>(abs >> 20);
}

// The scale of block b of a kF8 row (the row's bytes start with the scales; may be unaligned).
inline float f8_row_scale(const void* row, int64_t block) {
  float scale;
  std::memcpy(&scale, static_cast<const uint8_t*>(row) + block * sizeof(float), sizeof scale);
  return scale;
}

// The e4m3fn values of a kF8 row of `cols` columns.
inline const uint8_t* f8_row_values(const void* row, int64_t cols) {
  return static_cast<const uint8_t*>(row) + f8_row_scale_bytes(cols);
}

// Quantizes n values into one kF8 row at `row` (dtype_row_bytes(kF8, n) bytes): each block of
// 128 gets scale = max|x| / 448 and q = e4m3(x / scale), so the block's largest magnitude maps
// to 448 exactly. An all-zero block gets scale 0 and zeros.
inline void quantize_f8_row(const float* x, int64_t n, void* row) {
  uint8_t* q = static_cast<uint8_t*>(row) + f8_row_scale_bytes(n);
  for (int64_t b0 = 0; b0 < n; b0 += kF8BlockColumns) {
    const int64_t b1 = n - b0 > kF8BlockColumns ? b0 + kF8BlockColumns : n;
    float max_abs = 0.0f;
    for (int64_t i = b0; i < b1; ++i)
      max_abs = x[i] > max_abs ? x[i] : (-x[i] > max_abs ? -x[i] : max_abs);
    const float scale = max_abs / 448.0f;
    std::memcpy(static_cast<uint8_t*>(row) + b0 / kF8BlockColumns * sizeof(float), &scale,
                sizeof scale);
    for (int64_t i = b0; i < b1; ++i) q[i] = scale > 0.0f ? f32_to_e4m3(x[i] / scale) : 0;
  }
}

// Reads element i of a weight array stored as f32, bf16, f16 or plain e4m3fn.
inline float load_as_f32(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(p)[i];
    case DType::kBF16:
      return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kF16:
      return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DType::kE4M3:
      return e4m3_to_f32(static_cast<const uint8_t*>(p)[i]);
    default:
      return 0.0f;
  }
}

}  // namespace sy
