// The fast matmul against the reference over many shapes, every weight dtype (int8, fp8 too),
// instruction set and thread count; batch invariance: one row's output is bit-identical alone or
// in any batch; and the int8 reference against a float matmul over the dequantized weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cpu/thread_pool.h"

namespace sy::cpu {
namespace {

// Both sides accumulate k products in f32, in different orders, so the error grows like sqrt(k)
// for inputs in [-1, 1]. The tolerance is the same for every weight dtype: bf16 and f16 weights
// widen to f32 exactly, so both sides multiply by identical values; int8 sums x * q (|q| <= 127)
// and both sides scale the finished sum by the same per-row factor, ~1/127 here.
Tolerance matmul_tolerance(int64_t k) { return {1e-5 * std::sqrt(static_cast<double>(k)), 1e-5}; }

struct Shape {
  int64_t m, n, k;
};

std::vector<Shape> shapes() {
  std::vector<Shape> list;
  for (int64_t k : {1, 3, 17, 64, 1023, 4096 + 5}) {
    for (int64_t m : {1, 3, 5, 64}) {
      for (int64_t n : {1, 7, 37}) list.push_back({m, n, k});
    }
  }
  for (int64_t m : {2, 4, 7, 8, 9, 16, 33, 65, 128, 300}) list.push_back({m, 19, 130});
  list.push_back({2, 203, 96});  // many column panels, uneven thread split
  list.push_back({17, 500, 33});
  return list;
}

class KernelsMatmul : public testing::Test {
 protected:
  ThreadPool pool2_{2};
  ThreadPool pool3_{3};
  std::vector<ThreadPool*> pools() { return {nullptr, &pool2_, &pool3_}; }
};

TEST_F(KernelsMatmul, MatchesReference) {
  if (vector_isas().empty()) GTEST_SKIP() << "no vector instruction set on this processor";
  uint32_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16, DType::kI8, DType::kF8}) {
    for (const Shape& s : shapes()) {
      const std::vector<float> x = random_floats(s.m * s.k, -1, 1, ++seed);
      const Weights w = random_weight_matrix(dtype, s.n, s.k, -1, 1, ++seed);
      const std::vector<float> bias = random_floats(s.n, -1, 1, ++seed);
      const float* b = seed % 2 == 0 ? bias.data() : nullptr;
      std::vector<float> want(s.m * s.n);
      poison(want);
      ref::matmul(x.data(), w.data(), dtype, b, want.data(), s.m, s.n, s.k, nullptr);
      for (Isa isa : vector_isas()) {
        const IsaScope scope(isa);
        for (ThreadPool* pool : pools()) {
          std::vector<float> got(want.size());
          poison(got);
          matmul(x.data(), w.data(), dtype, b, got.data(), s.m, s.n, s.k, pool);
          ASSERT_EQ(compare_close(got.data(), want.data(), got.size(), matmul_tolerance(s.k), s.n),
                    "")
              << dtype_name(dtype) << " m=" << s.m << " n=" << s.n << " k=" << s.k
              << " bias=" << (b != nullptr) << " isa=" << isa_name(isa)
              << " threads=" << (pool != nullptr ? pool->size() : 1);
        }
      }
    }
  }
}

TEST_F(KernelsMatmul, RowIsBitIdenticalAloneOrInAnyBatch) {
  constexpr int64_t kM = 300;  // crosses the 256-row pass boundary
  constexpr int64_t kN = 45;
  constexpr int64_t kK = 1023;
  const std::vector<float> x = random_floats(kM * kK, -1, 1, 7);
  const std::vector<float> bias = random_floats(kN, -1, 1, 8);
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16, DType::kI8, DType::kI4G32,
                      DType::kI4G64, DType::kI4G128, DType::kF8}) {
    const Weights w = random_weight_matrix(dtype, kN, kK, -1, 1, 9);
    for (Isa isa : supported_isas()) {
      const IsaScope scope(isa);
      std::vector<float> batch(kM * kN);
      matmul(x.data(), w.data(), dtype, bias.data(), batch.data(), kM, kN, kK, &pool2_);
      // Row r alone, or rows [first, first + m) as a smaller batch, on other thread counts.
      struct Window {
        int64_t first, m;
        ThreadPool* pool;
      };
      for (const Window& win :
           {Window{0, 1, nullptr}, Window{5, 1, &pool3_}, Window{150, 1, &pool2_},
            Window{299, 1, nullptr}, Window{7, 3, &pool3_}, Window{100, 64, nullptr},
            Window{250, 50, &pool3_}}) {
        std::vector<float> part(win.m * kN);
        poison(part);
        matmul(x.data() + win.first * kK, w.data(), dtype, bias.data(), part.data(), win.m, kN, kK,
               win.pool);
        EXPECT_EQ(
            std::memcmp(part.data(), batch.data() + win.first * kN, part.size() * sizeof(float)), 0)
            << dtype_name(dtype) << " isa=" << isa_name(isa) << " rows " << win.first << ".."
            << win.first + win.m - 1;
      }
    }
  }
}

// Per-row symmetric quantization: the row's largest magnitude is exact, every other value is
// within half a step (scale / 2) of its original, and a zero row stays zero.
TEST(KernelsInt8, QuantizeRowRoundsToTheNearestStep) {
  const std::vector<float> row = random_floats(1000, -0.3f, 0.7f, 11);
  std::vector<uint8_t> q(dtype_row_bytes(DType::kI8, 1000));
  quantize_i8_row(row.data(), 1000, q.data());
  float max_abs = 0.0f;
  for (float v : row) max_abs = std::max(max_abs, std::fabs(v));
  const float scale = i8_row_scale(q.data());
  EXPECT_FLOAT_EQ(scale, max_abs / 127.0f);
  const int8_t* values = i8_row_values(q.data());
  for (int i = 0; i < 1000; ++i) {
    ASSERT_LE(std::fabs(scale * values[i] - row[i]), scale * 0.5f * 1.0001f) << i;
    ASSERT_GE(values[i], -127);
    if (std::fabs(row[i]) == max_abs) {
      EXPECT_EQ(std::abs(values[i]), 127);
    }
  }
  const std::vector<float> zeros(5, 0.0f);
  quantize_i8_row(zeros.data(), 5, q.data());
  EXPECT_EQ(i8_row_scale(q.data()), 0.0f);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(i8_row_values(q.data())[i], 0);
}

// The int8 reference computes x . dequantize(w)^T: the same as an f32 matmul over the
// dequantized matrix (scale * q per element), up to f32 summation order.
TEST(KernelsInt8, ReferenceMatchesFloatMatmulOfDequantizedWeights) {
  for (const Shape& s : {Shape{1, 7, 17}, Shape{5, 37, 1023}, Shape{3, 19, 4096 + 5}}) {
    const Weights w = random_weight_matrix(DType::kI8, s.n, s.k, -0.05f, 0.05f, 21);
    const size_t row_bytes = dtype_row_bytes(DType::kI8, s.k);
    std::vector<float> dequantized(s.n * s.k);
    for (int64_t j = 0; j < s.n; ++j) {
      const uint8_t* row = w.i8.data() + j * row_bytes;
      for (int64_t kk = 0; kk < s.k; ++kk) {
        dequantized[j * s.k + kk] = i8_row_scale(row) * static_cast<float>(i8_row_values(row)[kk]);
      }
    }
    const std::vector<float> x = random_floats(s.m * s.k, -1, 1, 22);
    const std::vector<float> bias = random_floats(s.n, -1, 1, 23);
    std::vector<float> want(s.m * s.n), got(s.m * s.n);
    poison(got);
    ref::matmul(x.data(), dequantized.data(), DType::kF32, bias.data(), want.data(), s.m, s.n, s.k,
                nullptr);
    ref::matmul(x.data(), w.data(), DType::kI8, bias.data(), got.data(), s.m, s.n, s.k, nullptr);
    EXPECT_EQ(compare_close(got.data(), want.data(), got.size(), matmul_tolerance(s.k), s.n), "")
        << "m=" << s.m << " n=" << s.n << " k=" << s.k;
  }
}

}  // namespace
}  // namespace sy::cpu
