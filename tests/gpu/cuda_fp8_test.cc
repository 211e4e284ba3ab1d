// The CUDA FP8 matmuls of kernels/cuda/fp8_gemm.cu against sy::cpu::ref: fp8_matmul against
// ref::matmul with DType::kF8 weights (odd sizes, partial 128-column blocks, decode and prefill
// row counts) and batch invariance (a row alone or in any batch gives the same bits);
// fp8_grouped_expert_ffn is checked with the int8/int4 ones in cuda_quant_gemm_test. Weights are
// kernels/cpu/testing.h's random matrices quantized by quantize_f8_row. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cuda/ops.h"
#include "kernels/dtype.h"
#include "tests/gpu/gpu_testing.h"

namespace sy {
namespace {

using gpu_testing::DeviceArray;
using gpu_testing::DeviceOk;

// Both sides multiply identical products (scale * e4m3 value, formed exactly alike) and sum k of
// them in f32 in different orders: the error grows like sqrt(k) for inputs in [-1, 1].
cpu::Tolerance MatmulTolerance(int64_t k) {
  return {1e-5 * std::sqrt(static_cast<double>(std::max<int64_t>(k, 1))), 1e-5};
}

std::vector<float> GpuMatmul(const std::vector<float>& x, const cpu::Weights& w,
                             const std::vector<float>* bias, int64_t m, int64_t n, int64_t k) {
  const DeviceArray<float> dx(x);
  const DeviceArray<uint8_t> dw(w.i8);
  DeviceArray<float> dy(m * n);
  dy.Poison();
  std::vector<float> none;
  const DeviceArray<float> db(bias != nullptr ? *bias : none);
  EXPECT_EQ(cuda::fp8_matmul(dx.get(), dw.get(), bias != nullptr ? db.get() : nullptr, dy.get(), m,
                             n, k, nullptr),
            cudaSuccess);
  EXPECT_TRUE(DeviceOk());
  return dy.Download();
}

TEST(CudaFp8, MatmulMatchesReference) {
  SY_REQUIRE_GPU();
  uint32_t seed = 1;
  for (int64_t k : {1, 17, 128, 130, 300, 1023}) {
    for (int64_t m : {1, 3, 16, 17, 40}) {
      for (int64_t n : {1, 7, 37}) {
        const std::vector<float> x = cpu::random_floats(m * k, -1, 1, ++seed);
        const cpu::Weights w = cpu::random_weight_matrix(DType::kF8, n, k, -1, 1, ++seed);
        const std::vector<float> bias = cpu::random_floats(n, -1, 1, ++seed);
        const std::vector<float>* b = seed % 2 == 0 ? &bias : nullptr;
        std::vector<float> want(m * n);
        cpu::ref::matmul(x.data(), w.data(), DType::kF8, b != nullptr ? b->data() : nullptr,
                         want.data(), m, n, k, nullptr);
        const std::vector<float> got = GpuMatmul(x, w, b, m, n, k);
        ASSERT_EQ(cpu::compare_close(got.data(), want.data(), got.size(), MatmulTolerance(k), n),
                  "")
            << "m=" << m << " n=" << n << " k=" << k << " bias=" << (b != nullptr);
      }
    }
  }
}

TEST(CudaFp8, RowIsBitIdenticalAloneOrInAnyBatch) {
  SY_REQUIRE_GPU();
  constexpr int64_t kM = 40, kN = 45, kK = 300;
  const std::vector<float> x = cpu::random_floats(kM * kK, -1, 1, 7);
  const cpu::Weights w = cpu::random_weight_matrix(DType::kF8, kN, kK, -1, 1, 9);
  const std::vector<float> batch = GpuMatmul(x, w, nullptr, kM, kN, kK);
  for (int64_t first : {0, 5, 16, 39}) {
    const std::vector<float> one(x.begin() + first * kK, x.begin() + (first + 1) * kK);
    const std::vector<float> alone = GpuMatmul(one, w, nullptr, 1, kN, kK);
    EXPECT_EQ(std::memcmp(alone.data(), batch.data() + first * kN, kN * sizeof(float)), 0)
        << "row " << first;
  }
}

}  // namespace
}  // namespace sy
