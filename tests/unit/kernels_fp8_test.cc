// FP8 e4m3fn weights (DType::kF8): the scalar conversions against torch's float8_e4m3fn (tables
// made by torch, not by the code under test), the vector kernels' in-register decode of every
// code, per-block row quantization, and the reference against an f32 matmul of the dequantized
// weights. The fast matmul against the reference is in kernels_matmul_test.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"

namespace sy::cpu {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The value of every byte, from
//   torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()   (torch 2.9.1)
constexpr float kTorchE4M3[256] = {
    0.0f,         0.001953125f,  0.00390625f,  0.005859375f,  0.0078125f,   0.009765625f,
    0.01171875f,  0.013671875f,  0.015625f,    0.017578125f,  0.01953125f,  0.021484375f,
    0.0234375f,   0.025390625f,  0.02734375f,  0.029296875f,  0.03125f,     0.03515625f,
    0.0390625f,   0.04296875f,   0.046875f,    0.05078125f,   0.0546875f,   0.05859375f,
    0.0625f,      0.0703125f,    0.078125f,    0.0859375f,    0.09375f,     0.1015625f,
    0.109375f,    0.1171875f,    0.125f,       0.140625f,     0.15625f,     0.171875f,
    0.1875f,      0.203125f,     0.21875f,     0.234375f,     0.25f,        0.28125f,
    0.3125f,      0.34375f,      0.375f,       0.40625f,      0.4375f,      0.46875f,
    0.5f,         0.5625f,       0.625f,       0.6875f,       0.75f,        0.8125f,
    0.875f,       0.9375f,       1.0f,         1.125f,        1.25f,        1.375f,
    1.5f,         1.625f,        1.75f,        1.875f,        2.0f,         2.25f,
    2.5f,         2.75f,         3.0f,         3.25f,         3.5f,         3.75f,
    4.0f,         4.5f,          5.0f,         5.5f,          6.0f,         6.5f,
    7.0f,         7.5f,          8.0f,         9.0f,          10.0f,        11.0f,
    12.0f,        13.0f,         14.0f,        15.0f,         16.0f,        18.0f,
    20.0f,        22.0f,         24.0f,        26.0f,         28.0f,        30.0f,
    32.0f,        36.0f,         40.0f,        44.0f,         48.0f,        52.0f,
    56.0f,        60.0f,         64.0f,        72.0f,         80.0f,        88.0f,
    96.0f,        104.0f,        112.0f,       120.0f,        128.0f,       144.0f,
    160.0f,       176.0f,        192.0f,       208.0f,        224.0f,       240.0f,
    256.0f,       288.0f,        320.0f,       352.0f,        384.0f,       416.0f,
    448.0f,       kNaN,          -0.0f,        -0.001953125f, -0.00390625f, -0.005859375f,
    -0.0078125f,  -0.009765625f, -0.01171875f, -0.013671875f, -0.015625f,   -0.017578125f,
    -0.01953125f, -0.021484375f, -0.0234375f,  -0.025390625f, -0.02734375f, -0.029296875f,
    -0.03125f,    -0.03515625f,  -0.0390625f,  -0.04296875f,  -0.046875f,   -0.05078125f,
    -0.0546875f,  -0.05859375f,  -0.0625f,     -0.0703125f,   -0.078125f,   -0.0859375f,
    -0.09375f,    -0.1015625f,   -0.109375f,   -0.1171875f,   -0.125f,      -0.140625f,
    -0.15625f,    -0.171875f,    -0.1875f,     -0.203125f,    -0.21875f,    -0.234375f,
    -0.25f,       -0.28125f,     -0.3125f,     -0.34375f,     -0.375f,      -0.40625f,
    -0.4375f,     -0.46875f,     -0.5f,        -0.5625f,      -0.625f,      -0.6875f,
    -0.75f,       -0.8125f,      -0.875f,      -0.9375f,      -1.0f,        -1.125f,
    -1.25f,       -1.375f,       -1.5f,        -1.625f,       -1.75f,       -1.875f,
    -2.0f,        -2.25f,        -2.5f,        -2.75f,        -3.0f,        -3.25f,
    -3.5f,        -3.75f,        -4.0f,        -4.5f,         -5.0f,        -5.5f,
    -6.0f,        -6.5f,         -7.0f,        -7.5f,         -8.0f,        -9.0f,
    -10.0f,       -11.0f,        -12.0f,       -13.0f,        -14.0f,       -15.0f,
    -16.0f,       -18.0f,        -20.0f,       -22.0f,        -24.0f,       -26.0f,
    -28.0f,       -30.0f,        -32.0f,       -36.0f,        -40.0f,       -44.0f,
    -48.0f,       -52.0f,        -56.0f,       -60.0f,        -64.0f,       -72.0f,
    -80.0f,       -88.0f,        -96.0f,       -104.0f,       -112.0f,      -120.0f,
    -128.0f,      -144.0f,       -160.0f,      -176.0f,       -192.0f,      -208.0f,
    -224.0f,      -240.0f,       -256.0f,      -288.0f,       -320.0f,      -352.0f,
    -384.0f,      -416.0f,       -448.0f,      kNaN,
};

struct Encoding {
  float value;
  uint8_t code;
};

// Every tie between neighbouring positive codes and the next float above it, then tiny, at and
// past the largest value, encoded by
//   x.clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8)   (torch 2.9.1)
// The clamp is the saturation f32_to_e4m3 builds in (torch's bare cast gives NaN from 464 up).
constexpr Encoding kTorchEncodings[] = {
    {0.0009765625f, 0},
    {0.0009765626164153218f, 1},
    {0.0029296875f, 2},
    {0.0029296877328306437f, 2},
    {0.0048828125f, 2},
    {0.004882812965661287f, 3},
    {0.0068359375f, 4},
    {0.006835937965661287f, 4},
    {0.0087890625f, 4},
    {0.008789063431322575f, 5},
    {0.0107421875f, 6},
    {0.010742188431322575f, 6},
    {0.0126953125f, 6},
    {0.012695313431322575f, 7},
    {0.0146484375f, 8},
    {0.014648438431322575f, 8},
    {0.0166015625f, 8},
    {0.01660156436264515f, 9},
    {0.0185546875f, 10},
    {0.01855468936264515f, 10},
    {0.0205078125f, 10},
    {0.02050781436264515f, 11},
    {0.0224609375f, 12},
    {0.02246093936264515f, 12},
    {0.0244140625f, 12},
    {0.02441406436264515f, 13},
    {0.0263671875f, 14},
    {0.02636718936264515f, 14},
    {0.0283203125f, 14},
    {0.02832031436264515f, 15},
    {0.0302734375f, 16},
    {0.03027343936264515f, 16},
    {0.033203125f, 16},
    {0.0332031287252903f, 17},
    {0.037109375f, 18},
    {0.0371093787252903f, 18},
    {0.041015625f, 18},
    {0.0410156287252903f, 19},
    {0.044921875f, 20},
    {0.0449218787252903f, 20},
    {0.048828125f, 20},
    {0.0488281287252903f, 21},
    {0.052734375f, 22},
    {0.0527343787252903f, 22},
    {0.056640625f, 22},
    {0.0566406287252903f, 23},
    {0.060546875f, 24},
    {0.0605468787252903f, 24},
    {0.06640625f, 24},
    {0.0664062574505806f, 25},
    {0.07421875f, 26},
    {0.0742187574505806f, 26},
    {0.08203125f, 26},
    {0.0820312574505806f, 27},
    {0.08984375f, 28},
    {0.0898437574505806f, 28},
    {0.09765625f, 28},
    {0.0976562574505806f, 29},
    {0.10546875f, 30},
    {0.1054687574505806f, 30},
    {0.11328125f, 30},
    {0.1132812574505806f, 31},
    {0.12109375f, 32},
    {0.1210937574505806f, 32},
    {0.1328125f, 32},
    {0.1328125149011612f, 33},
    {0.1484375f, 34},
    {0.1484375149011612f, 34},
    {0.1640625f, 34},
    {0.1640625149011612f, 35},
    {0.1796875f, 36},
    {0.1796875149011612f, 36},
    {0.1953125f, 36},
    {0.1953125149011612f, 37},
    {0.2109375f, 38},
    {0.2109375149011612f, 38},
    {0.2265625f, 38},
    {0.2265625149011612f, 39},
    {0.2421875f, 40},
    {0.2421875149011612f, 40},
    {0.265625f, 40},
    {0.2656250298023224f, 41},
    {0.296875f, 42},
    {0.2968750298023224f, 42},
    {0.328125f, 42},
    {0.3281250298023224f, 43},
    {0.359375f, 44},
    {0.3593750298023224f, 44},
    {0.390625f, 44},
    {0.3906250298023224f, 45},
    {0.421875f, 46},
    {0.4218750298023224f, 46},
    {0.453125f, 46},
    {0.4531250298023224f, 47},
    {0.484375f, 48},
    {0.4843750298023224f, 48},
    {0.53125f, 48},
    {0.5312500596046448f, 49},
    {0.59375f, 50},
    {0.5937500596046448f, 50},
    {0.65625f, 50},
    {0.6562500596046448f, 51},
    {0.71875f, 52},
    {0.7187500596046448f, 52},
    {0.78125f, 52},
    {0.7812500596046448f, 53},
    {0.84375f, 54},
    {0.8437500596046448f, 54},
    {0.90625f, 54},
    {0.9062500596046448f, 55},
    {0.96875f, 56},
    {0.9687500596046448f, 56},
    {1.0625f, 56},
    {1.0625001192092896f, 57},
    {1.1875f, 58},
    {1.1875001192092896f, 58},
    {1.3125f, 58},
    {1.3125001192092896f, 59},
    {1.4375f, 60},
    {1.4375001192092896f, 60},
    {1.5625f, 60},
    {1.5625001192092896f, 61},
    {1.6875f, 62},
    {1.6875001192092896f, 62},
    {1.8125f, 62},
    {1.8125001192092896f, 63},
    {1.9375f, 64},
    {1.9375001192092896f, 64},
    {2.125f, 64},
    {2.125000238418579f, 65},
    {2.375f, 66},
    {2.375000238418579f, 66},
    {2.625f, 66},
    {2.625000238418579f, 67},
    {2.875f, 68},
    {2.875000238418579f, 68},
    {3.125f, 68},
    {3.125000238418579f, 69},
    {3.375f, 70},
    {3.375000238418579f, 70},
    {3.625f, 70},
    {3.625000238418579f, 71},
    {3.875f, 72},
    {3.875000238418579f, 72},
    {4.25f, 72},
    {4.250000476837158f, 73},
    {4.75f, 74},
    {4.750000476837158f, 74},
    {5.25f, 74},
    {5.250000476837158f, 75},
    {5.75f, 76},
    {5.750000476837158f, 76},
    {6.25f, 76},
    {6.250000476837158f, 77},
    {6.75f, 78},
    {6.750000476837158f, 78},
    {7.25f, 78},
    {7.250000476837158f, 79},
    {7.75f, 80},
    {7.750000476837158f, 80},
    {8.5f, 80},
    {8.500000953674316f, 81},
    {9.5f, 82},
    {9.500000953674316f, 82},
    {10.5f, 82},
    {10.500000953674316f, 83},
    {11.5f, 84},
    {11.500000953674316f, 84},
    {12.5f, 84},
    {12.500000953674316f, 85},
    {13.5f, 86},
    {13.500000953674316f, 86},
    {14.5f, 86},
    {14.500000953674316f, 87},
    {15.5f, 88},
    {15.500000953674316f, 88},
    {17.0f, 88},
    {17.000001907348633f, 89},
    {19.0f, 90},
    {19.000001907348633f, 90},
    {21.0f, 90},
    {21.000001907348633f, 91},
    {23.0f, 92},
    {23.000001907348633f, 92},
    {25.0f, 92},
    {25.000001907348633f, 93},
    {27.0f, 94},
    {27.000001907348633f, 94},
    {29.0f, 94},
    {29.000001907348633f, 95},
    {31.0f, 96},
    {31.000001907348633f, 96},
    {34.0f, 96},
    {34.000003814697266f, 97},
    {38.0f, 98},
    {38.000003814697266f, 98},
    {42.0f, 98},
    {42.000003814697266f, 99},
    {46.0f, 100},
    {46.000003814697266f, 100},
    {50.0f, 100},
    {50.000003814697266f, 101},
    {54.0f, 102},
    {54.000003814697266f, 102},
    {58.0f, 102},
    {58.000003814697266f, 103},
    {62.0f, 104},
    {62.000003814697266f, 104},
    {68.0f, 104},
    {68.00000762939453f, 105},
    {76.0f, 106},
    {76.00000762939453f, 106},
    {84.0f, 106},
    {84.00000762939453f, 107},
    {92.0f, 108},
    {92.00000762939453f, 108},
    {100.0f, 108},
    {100.00000762939453f, 109},
    {108.0f, 110},
    {108.00000762939453f, 110},
    {116.0f, 110},
    {116.00000762939453f, 111},
    {124.0f, 112},
    {124.00000762939453f, 112},
    {136.0f, 112},
    {136.00001525878906f, 113},
    {152.0f, 114},
    {152.00001525878906f, 114},
    {168.0f, 114},
    {168.00001525878906f, 115},
    {184.0f, 116},
    {184.00001525878906f, 116},
    {200.0f, 116},
    {200.00001525878906f, 117},
    {216.0f, 118},
    {216.00001525878906f, 118},
    {232.0f, 118},
    {232.00001525878906f, 119},
    {248.0f, 120},
    {248.00001525878906f, 120},
    {272.0f, 120},
    {272.0000305175781f, 121},
    {304.0f, 122},
    {304.0000305175781f, 122},
    {336.0f, 122},
    {336.0000305175781f, 123},
    {368.0f, 124},
    {368.0000305175781f, 124},
    {400.0f, 124},
    {400.0000305175781f, 125},
    {432.0f, 126},
    {432.0000305175781f, 126},
    {9.999999960041972e-13f, 0},
    {448.0f, 126},
    {460.0f, 126},
    {463.989990234375f, 126},
    {1.0000000150474662e30f, 126},
};

TEST(KernelsFp8, DecodesEveryCodeAsTorch) {
  for (int b = 0; b < 256; ++b) {
    const float got = e4m3_to_f32(static_cast<uint8_t>(b));
    if (std::isnan(kTorchE4M3[b])) {
      EXPECT_TRUE(std::isnan(got)) << b;
    } else {
      EXPECT_EQ(got, kTorchE4M3[b]) << b;
      EXPECT_EQ(std::signbit(got), std::signbit(kTorchE4M3[b])) << b;
    }
  }
}

TEST(KernelsFp8, EncodesAsTorchRoundingTiesToEvenAndSaturating) {
  for (const Encoding& e : kTorchEncodings) {
    EXPECT_EQ(f32_to_e4m3(e.value), e.code) << e.value;
    EXPECT_EQ(f32_to_e4m3(-e.value), e.code | 0x80) << -e.value;
  }
  EXPECT_EQ(f32_to_e4m3(std::numeric_limits<float>::infinity()), 0x7e);
  EXPECT_EQ(f32_to_e4m3(-std::numeric_limits<float>::infinity()), 0xfe);
  EXPECT_EQ(f32_to_e4m3(kNaN) & 0x7f, 0x7f);
  EXPECT_EQ(f32_to_e4m3(-0.0f), 0x80);
}

// The vector kernels decode e4m3fn in registers (as f16 bit patterns): a one-row weight matrix
// holding every finite code, with scale 1, times the identity gives back each code's value.
TEST(KernelsFp8, VectorKernelsDecodeEveryFiniteCode) {
  if (vector_isas().empty()) GTEST_SKIP() << "no vector instruction set on this processor";
  constexpr int64_t kCodes = 256;
  std::vector<uint8_t> row(dtype_row_bytes(DType::kF8, kCodes));
  const float one = 1.0f;
  for (int64_t b = 0; b < 2; ++b) std::memcpy(row.data() + 4 * b, &one, sizeof one);
  uint8_t* q = row.data() + f8_row_scale_bytes(kCodes);
  for (int c = 0; c < kCodes; ++c) q[c] = (c & 0x7f) == 0x7f ? 0 : static_cast<uint8_t>(c);
  std::vector<float> identity(kCodes * kCodes, 0.0f);
  for (int64_t i = 0; i < kCodes; ++i) identity[i * kCodes + i] = 1.0f;
  for (Isa isa : vector_isas()) {
    const IsaScope scope(isa);
    std::vector<float> y(kCodes);
    poison(y);
    matmul(identity.data(), row.data(), DType::kF8, nullptr, y.data(), kCodes, 1, kCodes, nullptr);
    for (int c = 0; c < kCodes; ++c) {
      if ((c & 0x7f) == 0x7f) continue;
      EXPECT_EQ(y[c], kTorchE4M3[c]) << "code " << c << " isa=" << isa_name(isa);
    }
  }
}

// Each 128-column block gets max|x| / 448: its largest magnitude becomes 448 (exact), every
// other value is within half an e4m3 step (2^-4 relative) of the original; a zero block is zero.
TEST(KernelsFp8, QuantizeRowScalesEachBlockByItsLargestValue) {
  constexpr int64_t kCols = 300;  // blocks of 128, 128 and 44
  std::vector<float> x = random_floats(kCols, -0.3f, 0.7f, 31);
  for (int64_t c = 128; c < 256; ++c) x[c] *= 100.0f;  // blocks with different ranges
  std::vector<uint8_t> row(dtype_row_bytes(DType::kF8, kCols));
  ASSERT_EQ(row.size(), 300u + 3u * 4u);
  quantize_f8_row(x.data(), kCols, row.data());
  const uint8_t* q = f8_row_values(row.data(), kCols);
  for (int64_t b = 0; b < 3; ++b) {
    float max_abs = 0.0f;
    for (int64_t c = b * 128; c < std::min<int64_t>(kCols, (b + 1) * 128); ++c) {
      max_abs = std::max(max_abs, std::fabs(x[c]));
    }
    const float scale = f8_row_scale(row.data(), b);
    EXPECT_FLOAT_EQ(scale, max_abs / 448.0f) << b;
    for (int64_t c = b * 128; c < std::min<int64_t>(kCols, (b + 1) * 128); ++c) {
      const float v = scale * kTorchE4M3[q[c]];
      // Normal e4m3 values carry 3 mantissa bits; subnormals are 2^-9 apart.
      const float tolerance = std::max(std::fabs(x[c]) / 16.0f, scale * 0.001953125f / 2.0f);
      ASSERT_LE(std::fabs(v - x[c]), tolerance * 1.0001f) << c;
      if (std::fabs(x[c]) == max_abs) {
        EXPECT_EQ(q[c] & 0x7f, 0x7e) << c;
      }
    }
  }
  const std::vector<float> zeros(5, 0.0f);
  quantize_f8_row(zeros.data(), 5, row.data());
  EXPECT_EQ(f8_row_scale(row.data(), 0), 0.0f);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(f8_row_values(row.data(), 5)[i], 0);
}

// The fp8 reference computes x . dequantize(w)^T: the same as an f32 matmul over the dequantized
// matrix (block scale * torch's e4m3 value per element), up to f32 summation order.
TEST(KernelsFp8, ReferenceMatchesFloatMatmulOfDequantizedWeights) {
  struct Shape {
    int64_t m, n, k;
  };
  for (const Shape& s : {Shape{1, 7, 17}, Shape{5, 37, 1023}, Shape{3, 19, 4096 + 5}}) {
    const Weights w = random_weight_matrix(DType::kF8, s.n, s.k, -0.05f, 0.05f, 41);
    const size_t row_bytes = dtype_row_bytes(DType::kF8, s.k);
    std::vector<float> dequantized(s.n * s.k);
    for (int64_t j = 0; j < s.n; ++j) {
      const uint8_t* row = w.i8.data() + j * row_bytes;
      for (int64_t kk = 0; kk < s.k; ++kk) {
        dequantized[j * s.k + kk] =
            f8_row_scale(row, kk / 128) * kTorchE4M3[f8_row_values(row, s.k)[kk]];
      }
    }
    const std::vector<float> x = random_floats(s.m * s.k, -1, 1, 42);
    const std::vector<float> bias = random_floats(s.n, -1, 1, 43);
    std::vector<float> want(s.m * s.n), got(s.m * s.n);
    poison(got);
    ref::matmul(x.data(), dequantized.data(), DType::kF32, bias.data(), want.data(), s.m, s.n, s.k,
                nullptr);
    ref::matmul(x.data(), w.data(), DType::kF8, bias.data(), got.data(), s.m, s.n, s.k, nullptr);
    const Tolerance tolerance{1e-5 * std::sqrt(static_cast<double>(s.k)), 1e-5};
    EXPECT_EQ(compare_close(got.data(), want.data(), got.size(), tolerance, s.n), "")
        << "m=" << s.m << " n=" << s.n << " k=" << s.k;
  }
}

}  // namespace
}  // namespace sy::cpu
