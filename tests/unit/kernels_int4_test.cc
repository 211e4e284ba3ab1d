// Int4 weights (DType::kI4G32/64/128): the row layout and quantizer, the reference against an f32
// matmul over the dequantized weights, and the fast kernels (which quantize x to int8 per group)
// against the reference within a bound on that activation rounding, on every instruction set
// (AVX-512 with VNNI included where present), odd sizes and partial groups.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cpu/thread_pool.h"

namespace sy::cpu {
namespace {

constexpr DType kInt4Types[] = {DType::kI4G32, DType::kI4G64, DType::kI4G128};

std::vector<float> dequantize(const Weights& w, int64_t rows, int64_t cols) {
  std::vector<float> out(rows * cols);
  const size_t row_bytes = dtype_row_bytes(w.dtype, cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      out[r * cols + c] = int4_row_value(w.dtype, w.i8.data() + r * row_bytes, cols, c);
    }
  }
  return out;
}

TEST(KernelsInt4, RowLayout) {
  EXPECT_EQ(int4_group_size(DType::kI4G64), 64);
  EXPECT_EQ(int4_groups(DType::kI4G128, 300), 3);
  EXPECT_EQ(int4_padded_cols(DType::kI4G32, 33), 64);
  EXPECT_EQ(int4_padded_cols(DType::kI4G128, 129), 256);
  // 3 groups x 4 header bytes, then 384 / 2 packed bytes.
  EXPECT_EQ(dtype_row_bytes(DType::kI4G128, 300), 12u + 192u);
  EXPECT_EQ(dtype_row_bytes(DType::kI4G32, 4096), 128u * 4 + 2048);
  EXPECT_EQ(dtype_name(DType::kI4G32), "int4g32");
  // Element 0 and 16 share byte 0 (low, high nibble); 32 starts the next 16 bytes.
  EXPECT_EQ(int4_byte_of(0), 0u);
  EXPECT_EQ(int4_byte_of(16), 0u);
  EXPECT_TRUE(int4_is_high(16));
  EXPECT_EQ(int4_byte_of(17), 1u);
  EXPECT_EQ(int4_byte_of(32), 16u);
  EXPECT_EQ(int4_byte_of(63), 31u);
  EXPECT_TRUE(int4_is_high(63));
}

// Every value is within half a step of its original (plus the f16 rounding of scale and min),
// the group's smallest value maps to q 0 and its largest to 15, padding nibbles stay 0, and a
// constant group is exact.
TEST(KernelsInt4, QuantizeRowRoundsToTheNearestStep) {
  for (DType t : kInt4Types) {
    for (int64_t n : {1, 31, 100, 128, 300}) {
      std::vector<float> x = random_floats(n, -0.3f, 0.7f, 11);
      std::vector<uint8_t> row(dtype_row_bytes(t, n), 0xff);
      quantize_i4_row(t, x.data(), n, row.data());
      const int64_t group = int4_group_size(t);
      for (int64_t g = 0; g < int4_groups(t, n); ++g) {
        const int64_t end = std::min(n, (g + 1) * group);
        const auto [lo, hi] = std::minmax_element(x.begin() + g * group, x.begin() + end);
        const float scale = int4_row_scale(row.data(), g);
        EXPECT_NEAR(scale, (*hi - *lo) / 15.0f, 1e-3 * scale) << dtype_name(t) << " g" << g;
        EXPECT_NEAR(int4_row_min(row.data(), g), *lo, 1e-3 * std::fabs(*lo));
        for (int64_t c = g * group; c < end; ++c) {
          // Half a step, and min's f16 rounding (a relative 2^-11).
          ASSERT_LE(std::fabs(int4_row_value(t, row.data(), n, c) - x[c]),
                    scale * 0.51f + std::fabs(*lo) * 5e-4f)
              << dtype_name(t) << " n=" << n << " c=" << c;
          if (n > 1 && x[c] == *lo) {
            EXPECT_EQ(int4_row_q(t, row.data(), n, c), 0);
          }
          if (n > 1 && x[c] == *hi) {
            EXPECT_EQ(int4_row_q(t, row.data(), n, c), 15);
          }
        }
      }
      for (int64_t c = n; c < int4_padded_cols(t, n); ++c) {
        ASSERT_EQ(int4_row_q(t, row.data(), n, c), 0) << dtype_name(t) << " n=" << n << " " << c;
      }
    }
    const std::vector<float> constant(40, -0.25f);
    std::vector<uint8_t> row(dtype_row_bytes(t, 40));
    quantize_i4_row(t, constant.data(), 40, row.data());
    EXPECT_EQ(int4_row_scale(row.data(), 0), 0.0f);
    for (int64_t c = 0; c < 40; ++c) EXPECT_EQ(int4_row_value(t, row.data(), 40, c), -0.25f);
  }
}

TEST(KernelsInt4, ReferenceMatchesFloatMatmulOfDequantizedWeights) {
  for (DType t : kInt4Types) {
    for (int64_t k : {17, 200, 1023}) {
      const int64_t m = 3, n = 11;
      const Weights w = random_weight_matrix(t, n, k, -0.05f, 0.05f, 21);
      const std::vector<float> dq = dequantize(w, n, k);
      const std::vector<float> x = random_floats(m * k, -1, 1, 22);
      const std::vector<float> bias = random_floats(n, -1, 1, 23);
      std::vector<float> want(m * n), got(m * n);
      poison(got);
      ref::matmul(x.data(), dq.data(), DType::kF32, bias.data(), want.data(), m, n, k, nullptr);
      ref::matmul(x.data(), w.data(), t, bias.data(), got.data(), m, n, k, nullptr);
      EXPECT_EQ(compare_close(got.data(), want.data(), got.size(), {1e-6, 1e-6}, n), "")
          << dtype_name(t) << " k=" << k;
    }
  }
}

class KernelsInt4Fast : public testing::Test {
 protected:
  ThreadPool pool2_{2};
  ThreadPool pool3_{3};
};

// The fast kernels see x rounded to int8 per group (scale max|x_g| / 127) against the centred
// weights s_g * (q - 8) only (mins and the centre meet exact x), so each output may differ from
// the reference by at most sum_g (scale_g / 2) * sum_{c in g} |s_g * (q_c - 8)|, plus f32
// rounding. A wrong nibble or a missing min term breaks this by far (BoundCatches...).
TEST_F(KernelsInt4Fast, MatchesReferenceWithinActivationRounding) {
  if (vector_isas().empty()) GTEST_SKIP() << "no vector instruction set on this processor";
  uint32_t seed = 100;
  for (DType t : kInt4Types) {
    const int64_t group = int4_group_size(t);
    for (int64_t k : {1, 3, 17, 32, 33, 64, 100, 127, 129, 300, 1023, 4096 + 5}) {
      for (int64_t m : {1, 3, 5, 9, 64}) {
        for (int64_t n : {1, 7, 37}) {
          const std::vector<float> x = random_floats(m * k, -1, 1, ++seed);
          const Weights w = random_weight_matrix(t, n, k, -1, 1, ++seed);
          const std::vector<float> dq = dequantize(w, n, k);
          const std::vector<float> bias = random_floats(n, -1, 1, ++seed);
          const float* b = seed % 2 == 0 ? bias.data() : nullptr;
          std::vector<float> want(m * n);
          ref::matmul(x.data(), w.data(), t, b, want.data(), m, n, k, nullptr);
          std::vector<double> bound(m * n, 0.0);
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t j = 0; j < n; ++j) {
              for (int64_t g0 = 0; g0 < k; g0 += group) {
                const uint8_t* row = w.i8.data() + j * dtype_row_bytes(t, k);
                double max_abs = 0.0, w_abs = 0.0;
                for (int64_t c = g0; c < std::min(k, g0 + group); ++c) {
                  max_abs = std::max(max_abs, std::fabs(static_cast<double>(x[i * k + c])));
                  w_abs +=
                      std::fabs(int4_row_scale(row, g0 / group) * (int4_row_q(t, row, k, c) - 8.0));
                }
                bound[i * n + j] += max_abs / 127.0 / 2.0 * w_abs;
              }
              bound[i * n + j] += 2e-6 * k + 1e-5 * std::fabs(want[i * n + j]);
            }
          }
          for (Isa isa : vector_isas()) {
            const IsaScope scope(isa);
            for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2_, &pool3_}) {
              std::vector<float> got(m * n);
              poison(got);
              matmul(x.data(), w.data(), t, b, got.data(), m, n, k, pool);
              for (int64_t e = 0; e < m * n; ++e) {
                ASSERT_LE(std::fabs(static_cast<double>(got[e]) - want[e]), bound[e])
                    << dtype_name(t) << " m=" << m << " n=" << n << " k=" << k << " isa=" << isa
                    << " element " << e << " got " << got[e] << " want " << want[e];
              }
            }
          }
        }
      }
    }
  }
}

// The bound above is tight enough to matter: dropping the mins' term (sum_g min_g * sum x_g),
// or reading the other nibble of each byte, exceeds it on most rows (and the test above fails
// on any one element).
TEST_F(KernelsInt4Fast, BoundCatchesABrokenDequantization) {
  const int64_t m = 1, n = 16, k = 1024;
  const DType t = DType::kI4G128;
  const std::vector<float> x = random_floats(m * k, -1, 1, 5);
  const Weights w = random_weight_matrix(t, n, k, -1, 1, 6);
  const std::vector<float> dq = dequantize(w, n, k);
  int64_t caught_min = 0, caught_swap = 0;
  for (int64_t j = 0; j < n; ++j) {
    const uint8_t* row = w.i8.data() + j * dtype_row_bytes(t, k);
    double exact = 0.0, no_min = 0.0, swapped = 0.0, bound = 0.0;
    for (int64_t c = 0; c < k; ++c) {
      const int64_t g = c / 128;
      const double q = int4_row_q(t, row, k, c);
      exact += x[c] * dq[j * k + c];
      no_min += x[c] * q * int4_row_scale(row, g);
      const double other = int4_row_q(t, row, k, c ^ 16);
      swapped += x[c] * (other * int4_row_scale(row, g) + int4_row_min(row, g));
      bound += std::fabs(int4_row_scale(row, g) * (q - 8)) / 127.0 / 2.0;  // max|x| <= 1
    }
    caught_min += std::fabs(no_min - exact) > bound;
    caught_swap += std::fabs(swapped - exact) > bound;
  }
  EXPECT_GE(caught_min, n * 3 / 4);
  EXPECT_GE(caught_swap, n / 2);
}

// Integer dot products are exact and the f32 steps are the same on every instruction set, so
// AVX2 (maddubs) and AVX-512 (maddubs or VNNI) agree bit for bit.
TEST_F(KernelsInt4Fast, InstructionSetsAgreeBitForBit) {
  const std::vector<Isa> isas = vector_isas();
  if (isas.size() < 2) GTEST_SKIP() << "needs two vector instruction sets";
  const int64_t m = 5, n = 29, k = 1000;
  const std::vector<float> x = random_floats(m * k, -1, 1, 31);
  for (DType t : kInt4Types) {
    const Weights w = random_weight_matrix(t, n, k, -1, 1, 32);
    std::vector<std::vector<float>> outputs;
    for (Isa isa : isas) {
      const IsaScope scope(isa);
      outputs.emplace_back(m * n);
      matmul(x.data(), w.data(), t, nullptr, outputs.back().data(), m, n, k, &pool2_);
    }
    for (size_t a = 1; a < outputs.size(); ++a) {
      EXPECT_EQ(std::memcmp(outputs[a].data(), outputs[0].data(), m * n * sizeof(float)), 0)
          << dtype_name(t) << " " << isa_name(isas[a]) << " vs " << isa_name(isas[0]);
    }
  }
}

}  // namespace
}  // namespace sy::cpu
