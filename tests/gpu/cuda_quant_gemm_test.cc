// The CUDA int8 and int4 matmuls of kernels/cuda/quant_gemm.cu against sy::cpu::ref:
// quantized_matmul against ref::matmul with DType::kI8 and kI4G32/64/128 weights (odd sizes,
// partial groups and chunks, the decode kernel's m and the tensor-core kernel's), batch invariance
// within each kernel, quantized_grouped_expert_ffn against ref::matmul + ref::silu_mul +
// ref::matmul per expert (kF8 experts too), and quantized_head_matmul against ref::head_matmul.
// Weights are kernels/cpu/testing.h's random matrices quantized by quantize_i8_row /
// quantize_i4_row / quantize_f8_row. The comparison is with the reference, not the CPU backend's
// fast int4 kernel: that one quantizes x to int8 per group, while these kernels keep x in f32
// (weight-only, as ref::matmul). Skipped without a GPU, except the argument checks, which never
// reach the device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/latent_ops.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cuda/ops.h"
#include "kernels/dtype.h"
#include "tests/gpu/gpu_testing.h"

namespace sy {
namespace {

using gpu_testing::DeviceArray;
using gpu_testing::DeviceOk;

constexpr DType kDTypes[] = {DType::kI8, DType::kI4G32, DType::kI4G64, DType::kI4G128};

// For inputs and weights in [-1, 1]. Up to kQuantGemvMaxRows rows both sides multiply identical
// f32 products (x times the weight dequantized by the same roundings; int8 applies its row scale
// to the finished sum on both sides) and sum k of them in f32 in different orders: the error
// grows like sqrt(k). More rows run on bf16 tensor cores: x and the weights are each rounded to
// bf16 (relative error <= 2^-9), so each product is off by a random ~1.6e-3 of its size (rms
// 1/3); the sum's error has a standard deviation of about 5.3e-4 * sqrt(k), and the bound is 7.5
// of those. The activation rounding of the CPU backend's int4 kernel is in neither: the
// reference has none.
cpu::Tolerance MatmulTolerance(int64_t m, int64_t k) {
  const double root_k = std::sqrt(static_cast<double>(std::max<int64_t>(k, 1)));
  if (m > cuda::kQuantGemvMaxRows) return {4e-3 * root_k, 4e-3};
  return {2e-5 * root_k, 1e-5};
}

std::vector<float> GpuMatmul(const std::vector<float>& x, const cpu::Weights& w,
                             const std::vector<float>* bias, int64_t m, int64_t n, int64_t k) {
  const DeviceArray<float> dx(x);
  const DeviceArray<uint8_t> dw(w.i8);
  DeviceArray<float> dy(m * n);
  dy.Poison();
  std::vector<float> none;
  const DeviceArray<float> db(bias != nullptr ? *bias : none);
  EXPECT_EQ(
      cuda::quantized_matmul(dx.get(), dw.get(), w.dtype, bias != nullptr ? db.get() : nullptr,
                             dy.get(), m, n, k, nullptr),
      cudaSuccess);
  EXPECT_TRUE(DeviceOk());
  return dy.Download();
}

TEST(CudaQuantGemm, MatmulMatchesReference) {
  SY_REQUIRE_GPU();
  uint32_t seed = 1;
  for (DType dtype : kDTypes) {
    // k: one element, partial 16-byte chunks (int8 head/tail), partial groups of every size,
    // several 32-element chunks, a row long enough for many lanes.
    for (int64_t k : {1, 17, 100, 129, 300, 1023}) {
      for (int64_t m : {1, 3, 64, 300}) {
        for (int64_t n : {1, 7, 37}) {
          const std::vector<float> x = cpu::random_floats(m * k, -1, 1, ++seed);
          const cpu::Weights w = cpu::random_weight_matrix(dtype, n, k, -1, 1, ++seed);
          const std::vector<float> bias = cpu::random_floats(n, -1, 1, ++seed);
          const std::vector<float>* b = seed % 2 == 0 ? &bias : nullptr;
          std::vector<float> want(m * n);
          cpu::ref::matmul(x.data(), w.data(), dtype, b != nullptr ? b->data() : nullptr,
                           want.data(), m, n, k, nullptr);
          const std::vector<float> got = GpuMatmul(x, w, b, m, n, k);
          ASSERT_EQ(
              cpu::compare_close(got.data(), want.data(), got.size(), MatmulTolerance(m, k), n), "")
              << dtype_name(dtype) << " m=" << m << " n=" << n << " k=" << k
              << " bias=" << (b != nullptr);
        }
      }
    }
  }
}

// MLA's per-head products: head h's columns of x times its n rows of w, into its columns of y.
TEST(CudaQuantGemm, HeadMatmulMatchesReference) {
  SY_REQUIRE_GPU();
  uint32_t seed = 500;
  for (DType dtype : kDTypes) {
    for (int64_t heads : {1, 3}) {
      for (int64_t k : {17, 64, 129}) {
        for (int64_t m : {1, 5, 40}) {
          constexpr int64_t kN = 7;
          const std::vector<float> x = cpu::random_floats(m * heads * k, -1, 1, ++seed);
          const cpu::Weights w = cpu::random_weight_matrix(dtype, heads * kN, k, -1, 1, ++seed);
          std::vector<float> want(m * heads * kN);
          cpu::ref::head_matmul(x.data(), w.data(), dtype, want.data(), m, heads, kN, k, nullptr);
          const DeviceArray<float> dx(x);
          const DeviceArray<uint8_t> dw(w.i8);
          DeviceArray<float> dy(want.size());
          dy.Poison();
          SY_CUDA_OK(cuda::quantized_head_matmul(dx.get(), dw.get(), dtype, dy.get(), m, heads, kN,
                                                 k, nullptr));
          ASSERT_TRUE(DeviceOk());
          const std::vector<float> got = dy.Download();
          ASSERT_EQ(cpu::compare_close(got.data(), want.data(), got.size(), MatmulTolerance(m, k),
                                       heads * kN),
                    "")
              << dtype_name(dtype) << " heads=" << heads << " m=" << m << " k=" << k;
        }
      }
    }
  }
}

// A row of x gives the same bits alone or in any batch the same kernel serves: the decode kernel
// (up to kQuantGemvMaxRows rows) fixes a row's order of summation; the tensor-core kernel (more)
// computes an output from its row and column alone, wherever the row sits in its tile.
TEST(CudaQuantGemm, RowIsBitIdenticalAloneOrInAnyBatch) {
  SY_REQUIRE_GPU();
  constexpr int64_t kN = 45, kK = 300, kBig = 200;
  constexpr int64_t kSmall = cuda::kQuantGemvMaxRows;
  for (DType dtype : kDTypes) {
    const std::vector<float> x = cpu::random_floats(kBig * kK, -1, 1, 7);
    const cpu::Weights w = cpu::random_weight_matrix(dtype, kN, kK, -1, 1, 9);
    const std::vector<float> decode_batch = GpuMatmul(
        std::vector<float>(x.begin(), x.begin() + kSmall * kK), w, nullptr, kSmall, kN, kK);
    for (int64_t first : {0, 5, 15}) {
      const std::vector<float> one(x.begin() + first * kK, x.begin() + (first + 1) * kK);
      const std::vector<float> alone = GpuMatmul(one, w, nullptr, 1, kN, kK);
      EXPECT_EQ(std::memcmp(alone.data(), decode_batch.data() + first * kN, kN * sizeof(float)), 0)
          << dtype_name(dtype) << " row " << first;
    }
    const std::vector<float> mma_batch = GpuMatmul(x, w, nullptr, kBig, kN, kK);
    // Rows 100..140 as a batch of their own: other tiles, other neighbours.
    constexpr int64_t kFirst = 100, kRows = 41;
    const std::vector<float> part(x.begin() + kFirst * kK, x.begin() + (kFirst + kRows) * kK);
    const std::vector<float> part_out = GpuMatmul(part, w, nullptr, kRows, kN, kK);
    EXPECT_EQ(
        std::memcmp(part_out.data(), mma_batch.data() + kFirst * kN, kRows * kN * sizeof(float)), 0)
        << dtype_name(dtype);
  }
}

TEST(CudaQuantGemm, GroupedExpertFfnMatchesReferencePerExpert) {
  SY_REQUIRE_GPU();
  // Odd hidden (int8: unaligned rows, scalar x loads; int4: a partial chunk and group; fp8: a
  // partial 128-column block), and an intermediate size of two and a quarter 32-element chunks.
  // fp8 goes through the same entry point to fp8_grouped_expert_ffn.
  constexpr int64_t kHidden = 201, kInter = 72;
  const std::vector<int64_t> counts = {3, 0, 1, 17, 0, 5};
  const int64_t experts = static_cast<int64_t>(counts.size());
  std::vector<int32_t> offsets = {0};
  for (int64_t c : counts) offsets.push_back(offsets.back() + static_cast<int32_t>(c));
  const int64_t rows = offsets.back();
  const std::vector<float> x = cpu::random_floats(rows * kHidden, -1, 1, 11);
  for (DType dtype : {DType::kF8, DType::kI8, DType::kI4G32, DType::kI4G64, DType::kI4G128}) {
    std::vector<cpu::Weights> gate_up, down;
    std::vector<std::unique_ptr<DeviceArray<uint8_t>>> dev;
    std::vector<const void*> gate_up_ptrs, down_ptrs;
    for (int64_t e = 0; e < experts; ++e) {
      // Scaled by 1 / sqrt(k) so activations stay O(1).
      gate_up.push_back(cpu::random_weight_matrix(dtype, 2 * kInter, kHidden, -0.07f, 0.07f,
                                                  static_cast<uint32_t>(100 + e)));
      down.push_back(cpu::random_weight_matrix(dtype, kHidden, kInter, -0.12f, 0.12f,
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
    SY_CUDA_OK(cuda::quantized_grouped_expert_ffn(
        dx.get(), doffsets.get(), experts, reinterpret_cast<const void* const*>(dgate_up.get()),
        reinterpret_cast<const void* const*>(ddown.get()), dtype, kHidden, kInter, rows, dact.get(),
        dy.get(), nullptr));
    ASSERT_TRUE(DeviceOk());
    const std::vector<float> got = dy.Download();
    for (int64_t e = 0; e < experts; ++e) {
      const int64_t n = counts[e];
      if (n == 0) continue;
      const float* xe = x.data() + offsets[e] * kHidden;
      std::vector<float> gu(n * 2 * kInter), act(n * kInter), want(n * kHidden);
      cpu::ref::matmul(xe, gate_up[e].data(), dtype, nullptr, gu.data(), n, 2 * kInter, kHidden,
                       nullptr);
      cpu::ref::silu_mul(gu.data(), act.data(), n, kInter, nullptr);
      cpu::ref::matmul(act.data(), down[e].data(), dtype, nullptr, want.data(), n, kHidden, kInter,
                       nullptr);
      EXPECT_EQ(cpu::compare_close(got.data() + offsets[e] * kHidden, want.data(), want.size(),
                                   {2e-5, 1e-4}, kHidden),
                "")
          << dtype_name(dtype) << " expert " << e;
    }
  }
}

// Argument checks answer before any launch, so they run without a GPU too.
TEST(CudaQuantGemm, EntryPointsRejectWhatTheyCannotRead) {
  float x = 0.0f, y = 0.0f;
  alignas(16) uint8_t w[64] = {};
  // Plain dtypes go to skinny_matmul / cuBLAS, not here; head products take int8 and int4 only.
  EXPECT_EQ(cuda::quantized_matmul(&x, w, DType::kBF16, nullptr, &y, 1, 1, 1, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::quantized_head_matmul(&x, w, DType::kF8, &y, 1, 1, 1, 1, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::quantized_head_matmul(&x, w, DType::kI8, &y, 1, 65536, 1, 1, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::quantized_grouped_expert_ffn(&x, nullptr, 1, nullptr, nullptr, DType::kF32, 1, 1,
                                               1, nullptr, &y, nullptr),
            cudaErrorInvalidValue);
  // int4 rows are read 4 bytes at a time.
  EXPECT_EQ(cuda::quantized_matmul(&x, w + 2, DType::kI4G32, nullptr, &y, 1, 1, 1, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::quantized_matmul(&x, w, DType::kI8, nullptr, &y, -1, 1, 1, nullptr),
            cudaErrorInvalidValue);
  // Nothing to compute: no launch, success.
  EXPECT_EQ(cuda::quantized_matmul(&x, w, DType::kI8, nullptr, &y, 0, 1, 1, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::quantized_grouped_expert_ffn(&x, nullptr, 0, nullptr, nullptr, DType::kI4G128, 1,
                                               1, 1, nullptr, &y, nullptr),
            cudaSuccess);
}

}  // namespace
}  // namespace sy
