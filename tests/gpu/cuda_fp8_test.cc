// The CUDA FP8 matmuls of kernels/cuda/fp8_gemm.cu against sy::cpu::ref: fp8_matmul against
// ref::matmul with DType::kF8 weights (odd sizes, partial 128-column blocks, decode and prefill
// row counts), batch invariance (a row alone or in any batch gives the same bits), and
// fp8_grouped_expert_ffn against ref::matmul + ref::silu_mul + ref::matmul per expert. Weights
// are kernels/cpu/testing.h's random matrices quantized by quantize_f8_row. Skipped without a
// GPU.
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

TEST(CudaFp8, GroupedExpertFfnMatchesReferencePerExpert) {
  SY_REQUIRE_GPU();
  constexpr int64_t kHidden = 200, kInter = 72;  // partial 128-column blocks both ways
  const std::vector<int64_t> counts = {3, 0, 1, 17, 0, 5};
  const int64_t experts = static_cast<int64_t>(counts.size());
  std::vector<int32_t> offsets = {0};
  for (int64_t c : counts) offsets.push_back(offsets.back() + static_cast<int32_t>(c));
  const int64_t rows = offsets.back();
  const std::vector<float> x = cpu::random_floats(rows * kHidden, -1, 1, 11);
  std::vector<cpu::Weights> gate_up, down;
  std::vector<std::unique_ptr<DeviceArray<uint8_t>>> dev;
  std::vector<const void*> gate_up_ptrs, down_ptrs;
  for (int64_t e = 0; e < experts; ++e) {
    // Scaled by 1 / sqrt(k) so activations stay O(1).
    gate_up.push_back(cpu::random_weight_matrix(DType::kF8, 2 * kInter, kHidden, -0.07f, 0.07f,
                                                static_cast<uint32_t>(100 + e)));
    down.push_back(cpu::random_weight_matrix(DType::kF8, kHidden, kInter, -0.12f, 0.12f,
                                             static_cast<uint32_t>(200 + e)));
    dev.push_back(std::make_unique<DeviceArray<uint8_t>>(gate_up.back().i8));
    gate_up_ptrs.push_back(dev.back()->get());
    dev.push_back(std::make_unique<DeviceArray<uint8_t>>(down.back().i8));
    down_ptrs.push_back(dev.back()->get());
  }
  std::vector<uint64_t> gate_up_bits(experts), down_bits(experts);
  std::memcpy(gate_up_bits.data(), gate_up_ptrs.data(), experts * sizeof(void*));
  std::memcpy(down_bits.data(), down_ptrs.data(), experts * sizeof(void*));
  const DeviceArray<uint64_t> dgate_up(gate_up_bits), ddown(down_bits);
  const DeviceArray<float> dx(x);
  const DeviceArray<int32_t> doffsets(offsets);
  DeviceArray<float> dact(rows * kInter);
  DeviceArray<float> dy(rows * kHidden);
  dy.Poison();
  SY_CUDA_OK(cuda::fp8_grouped_expert_ffn(dx.get(), doffsets.get(), experts,
                                          reinterpret_cast<const void* const*>(dgate_up.get()),
                                          reinterpret_cast<const void* const*>(ddown.get()),
                                          kHidden, kInter, rows, dact.get(), dy.get(), nullptr));
  ASSERT_TRUE(DeviceOk());
  const std::vector<float> got = dy.Download();
  for (int64_t e = 0; e < experts; ++e) {
    const int64_t n = counts[e];
    if (n == 0) continue;
    const float* xe = x.data() + offsets[e] * kHidden;
    std::vector<float> gu(n * 2 * kInter), act(n * kInter), want(n * kHidden);
    cpu::ref::matmul(xe, gate_up[e].data(), DType::kF8, nullptr, gu.data(), n, 2 * kInter, kHidden,
                     nullptr);
    cpu::ref::silu_mul(gu.data(), act.data(), n, kInter, nullptr);
    cpu::ref::matmul(act.data(), down[e].data(), DType::kF8, nullptr, want.data(), n, kHidden,
                     kInter, nullptr);
    EXPECT_EQ(cpu::compare_close(got.data() + offsets[e] * kHidden, want.data(), want.size(),
                                 {2e-5, 1e-4}, kHidden),
              "")
        << "expert " << e;
  }
}

}  // namespace
}  // namespace sy
