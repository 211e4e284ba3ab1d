// The CUDA matrix products of kernels/cuda/gemm.cu against sy::cpu::ref: skinny_matmul against
// ref::matmul and grouped_expert_ffn against ref::matmul + ref::silu_mul + ref::matmul per
// expert, over many shapes (odd sizes, tile tails, both load paths), every weight dtype, outputs
// poisoned before each call; determinism and batch invariance. Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
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

constexpr DType kWeightDtypes[] = {DType::kF32, DType::kBF16, DType::kF16};

// Both sides accumulate k products in f32 in different orders, so for inputs in [-1, 1] the
// error grows like sqrt(k). The same for every weight dtype: bf16 and f16 widen to f32 exactly,
// so both sides multiply identical values (as in tests/unit/kernels_matmul_test.cc).
cpu::Tolerance MatmulTolerance(int64_t k) {
  return {1e-5 * std::sqrt(static_cast<double>(std::max<int64_t>(k, 1))), 1e-5};
}

// The expert tests scale each weight matrix by 1 / sqrt(k), which keeps every dot product and
// activation O(1) (as trained models do): the f32 summation error then stays near 1e-6.
constexpr cpu::Tolerance kExpertTol = {2e-5, 1e-4};

::testing::AssertionResult Close(const float* got, const float* want, int64_t n, cpu::Tolerance tol,
                                 int64_t row_len) {
  const std::string diff = cpu::compare_close(got, want, n, tol, row_len);
  if (diff.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << diff;
}

// Same bits everywhere (signed zeros and NaN payloads included).
::testing::AssertionResult BitEqual(const float* got, const float* want, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      return ::testing::AssertionFailure()
             << "first difference at " << i << ": " << got[i] << " vs " << want[i];
    }
  }
  return ::testing::AssertionSuccess();
}

size_t NumElements(const cpu::Weights& w) {
  return w.dtype == DType::kF32 ? w.f32.size() : w.half.size();
}

// A weight array on the device, `offset` elements into its allocation (1 misaligns it for
// 16-byte loads).
class DeviceWeights {
 public:
  explicit DeviceWeights(const cpu::Weights& w, size_t offset = 0)
      : elem_(dtype_size(w.dtype)), offset_(offset), bytes_((NumElements(w) + offset) * elem_) {
    cudaMemcpy(bytes_.get() + offset_ * elem_, w.data(), NumElements(w) * elem_,
               cudaMemcpyHostToDevice);
  }
  const void* get() const { return bytes_.get() + offset_ * elem_; }

 private:
  size_t elem_;
  size_t offset_;
  DeviceArray<uint8_t> bytes_;
};

// x, w and bias on the device for skinny_matmul, with their host copies.
struct SkinnyInputs {
  SkinnyInputs(DType dtype, int64_t rows, int64_t n_, int64_t k_, uint32_t seed)
      : n(n_),
        k(k_),
        x(cpu::random_floats(rows * k_, -1, 1, seed)),
        w(cpu::random_weights(dtype, n_ * k_, -1, 1, seed + 1)),
        bias(cpu::random_floats(n_, -1, 1, seed + 2)),
        dx(x),
        dw(w),
        dbias(bias) {}

  // ref::matmul over the first m rows.
  std::vector<float> Reference(int64_t m, bool with_bias) const {
    std::vector<float> y(m * n);
    cpu::poison(y);
    cpu::ref::matmul(x.data(), w.data(), w.dtype, with_bias ? bias.data() : nullptr, y.data(), m, n,
                     k, nullptr);
    return y;
  }

  int64_t n;
  int64_t k;
  std::vector<float> x;
  cpu::Weights w;
  std::vector<float> bias;
  DeviceArray<float> dx;
  DeviceWeights dw;
  DeviceArray<float> dbias;
};

// skinny_matmul on m rows starting at row `first` of in.x, into a poisoned output.
void RunSkinny(const SkinnyInputs& in, int64_t first, int64_t m, bool with_bias,
               std::vector<float>* y) {
  DeviceArray<float> dy(m * in.n);
  dy.Poison();
  SY_CUDA_OK(cuda::skinny_matmul(in.dx.get() + first * in.k, in.dw.get(), in.w.dtype,
                                 with_bias ? in.dbias.get() : nullptr, dy.get(), m, in.n, in.k,
                                 nullptr));
  ASSERT_TRUE(DeviceOk());
  *y = dy.Download();
}

struct Shape {
  int64_t n;
  int64_t k;
};

// Every m from 1 to 16 (each row bucket, full and partial) for each shape; the reference is
// computed once for 16 rows, since each of its rows depends on that row only.
void CheckAllRowCounts(const std::vector<Shape>& shapes, const std::vector<int64_t>& ms,
                       uint32_t seed) {
  for (DType dtype : kWeightDtypes) {
    for (const Shape& s : shapes) {
      const SkinnyInputs in(dtype, cuda::kSkinnyMaxRows, s.n, s.k, seed += 3);
      const std::vector<float> plain = in.Reference(cuda::kSkinnyMaxRows, false);
      for (bool with_bias : {false, true}) {
        // ref::matmul adds the bias last, to the finished sum: the same values it would give.
        std::vector<float> want = plain;
        for (size_t i = 0; with_bias && i < want.size(); ++i) want[i] += in.bias[i % s.n];
        for (int64_t m : ms) {
          std::vector<float> got;
          ASSERT_NO_FATAL_FAILURE(RunSkinny(in, 0, m, with_bias, &got));
          ASSERT_TRUE(Close(got.data(), want.data(), m * s.n, MatmulTolerance(s.k), s.n))
              << dtype_name(dtype) << " m=" << m << " n=" << s.n << " k=" << s.k
              << " bias=" << with_bias;
        }
      }
    }
  }
}

std::vector<int64_t> AllRowCounts() {
  std::vector<int64_t> ms;
  for (int64_t m = 1; m <= cuda::kSkinnyMaxRows; ++m) ms.push_back(m);
  return ms;
}

TEST(CudaGemm, SkinnyMatchesReferenceOnSmallShapes) {
  SY_REQUIRE_GPU();
  // Odd k (scalar loads), k a multiple of 8 (16-byte loads for every dtype), k = 4 mod 8 (f32
  // vector, 16-bit scalar), n around the 32-column tile, few columns with long k (k split over
  // up to 8 warps), and single elements.
  CheckAllRowCounts({{1, 1},
                     {1, 8},
                     {7, 7},
                     {33, 33},
                     {31, 64},
                     {32, 64},
                     {33, 64},
                     {65, 1024},
                     {97, 1001},
                     {40, 1004},
                     {5, 4096},
                     {1, 8192},
                     {128, 2048}},
                    AllRowCounts(), 100);
}

TEST(CudaGemm, SkinnyMatchesReferenceOnModelShapes) {
  SY_REQUIRE_GPU();
  CheckAllRowCounts({{2048, 768},
                     {768, 2048},
                     {5120, 2048},
                     {4096, 4096},
                     {2048, 8192},
                     {4099, 1004},
                     {1001, 2052},
                     {4096, 33}},
                    {1, 2, 3, 4, 5, 8, 9, 13, 16}, 200);
}

TEST(CudaGemm, SkinnyMatchesReferenceOnLmHead) {
  SY_REQUIRE_GPU();
  constexpr int64_t kVocab = 151936;
  constexpr int64_t kHidden = 2048;
  const SkinnyInputs in(DType::kBF16, 2, kVocab, kHidden, 300);
  const std::vector<float> want = in.Reference(2, false);
  for (int64_t m : {1, 2}) {
    std::vector<float> got;
    ASSERT_NO_FATAL_FAILURE(RunSkinny(in, 0, m, false, &got));
    EXPECT_TRUE(Close(got.data(), want.data(), m * kVocab, MatmulTolerance(kHidden), kVocab))
        << "m=" << m;
  }
}

// Misaligned x, w or y take the scalar path, which sums in the same order as the vector path.
TEST(CudaGemm, SkinnyMisalignedPointersGiveTheSameBits) {
  SY_REQUIRE_GPU();
  constexpr int64_t kM = 5;
  constexpr int64_t kN = 67;
  constexpr int64_t kK = 512;
  uint32_t seed = 400;
  for (DType dtype : kWeightDtypes) {
    const SkinnyInputs in(dtype, kM, kN, kK, seed += 3);
    std::vector<float> aligned;
    ASSERT_NO_FATAL_FAILURE(RunSkinny(in, 0, kM, true, &aligned));
    ASSERT_TRUE(
        Close(aligned.data(), in.Reference(kM, true).data(), kM * kN, MatmulTolerance(kK), kN))
        << dtype_name(dtype);

    std::vector<float> x_shifted(in.x.size() + 1);
    std::copy(in.x.begin(), in.x.end(), x_shifted.begin() + 1);
    const DeviceArray<float> dx(x_shifted);
    const DeviceWeights dw(in.w, 1);
    DeviceArray<float> dy(kM * kN + 1);
    for (int variant = 0; variant < 3; ++variant) {  // misaligned x, then w, then y
      dy.Poison();
      const float* x = variant == 0 ? dx.get() + 1 : in.dx.get();
      const void* w = variant == 1 ? dw.get() : in.dw.get();
      float* y = variant == 2 ? dy.get() + 1 : dy.get();
      SY_CUDA_OK(cuda::skinny_matmul(x, w, dtype, in.dbias.get(), y, kM, kN, kK, nullptr));
      ASSERT_TRUE(DeviceOk());
      const std::vector<float> got = dy.Download();
      EXPECT_TRUE(BitEqual(got.data() + (variant == 2 ? 1 : 0), aligned.data(), kM * kN))
          << dtype_name(dtype) << " variant " << variant;
    }
  }
}

TEST(CudaGemm, SkinnyIsDeterministic) {
  SY_REQUIRE_GPU();
  uint32_t seed = 500;
  for (DType dtype : kWeightDtypes) {
    for (const Shape& s : {Shape{5120, 2048}, Shape{128, 8192}, Shape{301, 999}}) {
      const SkinnyInputs in(dtype, 7, s.n, s.k, seed += 3);
      std::vector<float> first;
      std::vector<float> second;
      ASSERT_NO_FATAL_FAILURE(RunSkinny(in, 0, 7, true, &first));
      ASSERT_NO_FATAL_FAILURE(RunSkinny(in, 0, 7, true, &second));
      EXPECT_TRUE(BitEqual(first.data(), second.data(), 7 * s.n))
          << dtype_name(dtype) << " n=" << s.n << " k=" << s.k;
    }
  }
}

// A row's result is the same bits alone (m = 1) or inside any batch up to 16 rows.
TEST(CudaGemm, SkinnyRowIsBitIdenticalAloneOrInAnyBatch) {
  SY_REQUIRE_GPU();
  constexpr int64_t kRows = cuda::kSkinnyMaxRows;
  struct Window {
    int64_t first;
    int64_t m;
  };
  std::vector<Window> windows = {{3, 2}, {4, 4}, {5, 7}, {0, 9}, {8, 8}, {1, 15}, {2, 3}};
  for (int64_t r = 0; r < kRows; ++r) windows.push_back({r, 1});
  uint32_t seed = 600;
  for (DType dtype : kWeightDtypes) {
    // Vector path, scalar path, and k split over several warps.
    for (const Shape& s : {Shape{4103, 2048}, Shape{300, 1001}, Shape{64, 8192}}) {
      const SkinnyInputs in(dtype, kRows, s.n, s.k, seed += 3);
      std::vector<float> batch;
      ASSERT_NO_FATAL_FAILURE(RunSkinny(in, 0, kRows, true, &batch));
      for (const Window& win : windows) {
        std::vector<float> part;
        ASSERT_NO_FATAL_FAILURE(RunSkinny(in, win.first, win.m, true, &part));
        EXPECT_TRUE(BitEqual(part.data(), batch.data() + win.first * s.n, win.m * s.n))
            << dtype_name(dtype) << " n=" << s.n << " k=" << s.k << " rows " << win.first << ".."
            << win.first + win.m - 1;
      }
    }
  }
}

TEST(CudaGemm, SkinnyZeroSizesAndInvalidArguments) {
  SY_REQUIRE_GPU();
  const SkinnyInputs in(DType::kBF16, 2, 5, 8, 700);
  DeviceArray<float> dy(2 * 5);
  dy.Poison();
  const std::vector<float> poisoned = dy.Download();
  // Nothing to compute: success, output untouched.
  EXPECT_EQ(cuda::skinny_matmul(in.dx.get(), in.dw.get(), DType::kBF16, nullptr, dy.get(), 0, 5, 8,
                                nullptr),
            cudaSuccess);
  EXPECT_EQ(cuda::skinny_matmul(in.dx.get(), in.dw.get(), DType::kBF16, nullptr, dy.get(), 2, 0, 8,
                                nullptr),
            cudaSuccess);
  // Unsupported: refused without launching.
  EXPECT_EQ(cuda::skinny_matmul(in.dx.get(), in.dw.get(), DType::kBF16, nullptr, dy.get(),
                                cuda::kSkinnyMaxRows + 1, 5, 8, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::skinny_matmul(in.dx.get(), in.dw.get(), DType::kI32, nullptr, dy.get(), 2, 5, 8,
                                nullptr),
            cudaErrorInvalidValue);
  ASSERT_TRUE(DeviceOk());
  const std::vector<float> after = dy.Download();
  EXPECT_TRUE(BitEqual(after.data(), poisoned.data(), 2 * 5));

  // k = 0: a sum over nothing, so y is the bias (or zero).
  for (bool with_bias : {false, true}) {
    dy.Poison();
    SY_CUDA_OK(cuda::skinny_matmul(in.dx.get(), in.dw.get(), DType::kBF16,
                                   with_bias ? in.dbias.get() : nullptr, dy.get(), 2, 5, 0,
                                   nullptr));
    ASSERT_TRUE(DeviceOk());
    const std::vector<float> got = dy.Download();
    for (int64_t i = 0; i < 2 * 5; ++i) {
      EXPECT_EQ(got[i], with_bias ? in.bias[i % 5] : 0.0f) << "index " << i;
    }
  }
}

// --- grouped_expert_ffn ---

// The weights of one MoE layer: `slots` distinct experts in one allocation each for gate_up
// ([slots, 2 * inter, hidden]) and down ([slots, hidden, inter]); expert e uses slot e % slots,
// which keeps large expert counts cheap to build while every pointer still comes from a table.
struct ExpertWeights {
  ExpertWeights(DType dtype, int64_t experts_, int64_t hidden_, int64_t inter_, int64_t slots_,
                uint32_t seed)
      : experts(experts_),
        hidden(hidden_),
        inter(inter_),
        slots(slots_),
        gate_up(cpu::random_weights(dtype, slots * 2 * inter * hidden, -Scale(hidden),
                                    Scale(hidden), seed)),
        down(cpu::random_weights(dtype, slots * hidden * inter, -Scale(inter), Scale(inter),
                                 seed + 1)) {}

  static float Scale(int64_t k) {
    return 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(k, 1)));
  }
  DType dtype() const { return gate_up.dtype; }
  size_t GateUpOffset(int64_t e) const {  // bytes
    return static_cast<size_t>((e % slots) * 2 * inter * hidden) * dtype_size(dtype());
  }
  size_t DownOffset(int64_t e) const {
    return static_cast<size_t>((e % slots) * hidden * inter) * dtype_size(dtype());
  }

  int64_t experts;
  int64_t hidden;
  int64_t inter;
  int64_t slots;
  cpu::Weights gate_up;
  cpu::Weights down;
};

std::vector<int32_t> OffsetsFromCounts(const std::vector<int64_t>& counts) {
  std::vector<int32_t> offsets(counts.size() + 1, 0);
  for (size_t e = 0; e < counts.size(); ++e) {
    offsets[e + 1] = offsets[e] + static_cast<int32_t>(counts[e]);
  }
  return offsets;
}

// Rows per expert when `rows` rows each pick an expert at random among the first `used`.
std::vector<int64_t> RandomCounts(int64_t experts, int64_t used, int64_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, used - 1);
  std::vector<int64_t> counts(experts, 0);
  for (int64_t r = 0; r < rows; ++r) ++counts[pick(rng)];
  std::shuffle(counts.begin(), counts.end(), rng);
  return counts;
}

// The CPU reference, as CpuBackend::Ffn does it per expert: ref::matmul (gate_up),
// ref::silu_mul, ref::matmul (down). act and y start poisoned.
void RefExpertFfn(const ExpertWeights& w, const std::vector<float>& x,
                  const std::vector<int32_t>& offsets, std::vector<float>* act,
                  std::vector<float>* y) {
  const int64_t rows = offsets.back();
  act->assign(rows * w.inter, std::numeric_limits<float>::quiet_NaN());
  y->assign(rows * w.hidden, std::numeric_limits<float>::quiet_NaN());
  const auto* gate_up = static_cast<const uint8_t*>(w.gate_up.data());
  const auto* down = static_cast<const uint8_t*>(w.down.data());
  for (int64_t e = 0; e < w.experts; ++e) {
    const int64_t first = offsets[e];
    const int64_t n = offsets[e + 1] - first;
    if (n == 0) continue;
    std::vector<float> gu(n * 2 * w.inter);
    cpu::ref::matmul(x.data() + first * w.hidden, gate_up + w.GateUpOffset(e), w.dtype(), nullptr,
                     gu.data(), n, 2 * w.inter, w.hidden, nullptr);
    cpu::ref::silu_mul(gu.data(), act->data() + first * w.inter, n, w.inter, nullptr);
    cpu::ref::matmul(act->data() + first * w.inter, down + w.DownOffset(e), w.dtype(), nullptr,
                     y->data() + first * w.hidden, n, w.hidden, w.inter, nullptr);
  }
}

// The weights on the device, with the per-expert pointer tables; `offset` elements before the
// weights misalign every expert's pointers.
class DeviceExperts {
 public:
  explicit DeviceExperts(const ExpertWeights& w, size_t offset = 0)
      : gate_up_(w.gate_up, offset),
        down_(w.down, offset),
        gate_up_ptrs_(Table(gate_up_.get(), w, true)),
        down_ptrs_(Table(down_.get(), w, false)) {}
  const void* const* gate_up_ptrs() const { return gate_up_ptrs_.get(); }
  const void* const* down_ptrs() const { return down_ptrs_.get(); }

 private:
  static std::vector<const void*> Table(const void* base, const ExpertWeights& w, bool gate_up) {
    std::vector<const void*> table(w.experts);
    for (int64_t e = 0; e < w.experts; ++e) {
      table[e] =
          static_cast<const uint8_t*>(base) + (gate_up ? w.GateUpOffset(e) : w.DownOffset(e));
    }
    return table;
  }

  DeviceWeights gate_up_;
  DeviceWeights down_;
  DeviceArray<const void*> gate_up_ptrs_;
  DeviceArray<const void*> down_ptrs_;
};

// grouped_expert_ffn with act and y poisoned first (rows > 0).
void RunExpertFfn(const ExpertWeights& w, const DeviceExperts& dev, const std::vector<float>& x,
                  const std::vector<int32_t>& offsets, std::vector<float>* act,
                  std::vector<float>* y) {
  const int64_t rows = offsets.back();
  const DeviceArray<float> dx(x);
  const DeviceArray<int32_t> doffsets(offsets);
  DeviceArray<float> dact(rows * w.inter);
  DeviceArray<float> dy(rows * w.hidden);
  dact.Poison();
  dy.Poison();
  SY_CUDA_OK(cuda::grouped_expert_ffn(dx.get(), doffsets.get(), w.experts, dev.gate_up_ptrs(),
                                      dev.down_ptrs(), w.dtype(), w.hidden, w.inter, rows,
                                      dact.get(), dy.get(), nullptr));
  ASSERT_TRUE(DeviceOk());
  *act = dact.Download();
  *y = dy.Download();
}

struct ExpertCase {
  std::string name;
  int64_t hidden;
  int64_t inter;
  std::vector<int64_t> counts;  // rows per expert
  int64_t slots;
};

std::vector<ExpertCase> ExpertCases() {
  // 300 and 130 rows in two experts of 64, a few small ones, the rest empty.
  std::vector<int64_t> hundreds(64, 0);
  hundreds[3] = 300;
  hundreds[40] = 130;
  hundreds[41] = 1;
  hundreds[63] = 9;
  // One decode token of Qwen3-30B-A3B: exactly one row in each of 8 experts of 128 (so 8
  // expert slots in the grid, each finding its expert among 128).
  std::vector<int64_t> decode(128, 0);
  for (int64_t e : {3, 17, 18, 50, 77, 90, 101, 127}) decode[e] = 1;
  return {
      // Every row bucket (1, 2, 3, 4, 4 + 1, 4 + 4 + 1) and empty experts, 16-byte loads.
      {"buckets", 64, 32, {0, 1, 2, 3, 4, 5, 9, 0}, 8},
      // Odd sizes: scalar loads everywhere.
      {"odd", 67, 33, {3, 0, 1, 17, 2, 0, 5, 1}, 8},
      // 16-byte loads with partial tiles (16 intermediates, 32 hidden columns per block).
      {"tails", 72, 40, {2, 7, 0, 1, 4, 3, 0, 6}, 8},
      // One expert holds every row; tiny matrices (one tile each, one chunk per row for 16-bit).
      {"one_expert", 8, 8, {0, 0, 0, 0, 0, 0, 0, 1000}, 8},
      {"hundreds", 256, 128, hundreds, 16},
      {"qwen2_moe", 128, 96, RandomCounts(60, 20, 70, 11), 12},
      {"qwen3_decode", 2048, 768, decode, 8},
      {"qwen3_batch", 2048, 768, RandomCounts(128, 128, 40, 13), 8},
      // Thousands of rows; and 512 experts, most of them empty (fewer rows than experts).
      {"thousands", 128, 64, RandomCounts(64, 64, 3000, 14), 8},
      {"many_experts", 64, 32, RandomCounts(512, 512, 300, 15), 16},
  };
}

TEST(CudaGemm, ExpertFfnMatchesReference) {
  SY_REQUIRE_GPU();
  uint32_t seed = 800;
  for (DType dtype : kWeightDtypes) {
    for (const ExpertCase& c : ExpertCases()) {
      const int64_t experts = static_cast<int64_t>(c.counts.size());
      const ExpertWeights w(dtype, experts, c.hidden, c.inter, c.slots, seed += 3);
      const DeviceExperts dev(w);
      const std::vector<int32_t> offsets = OffsetsFromCounts(c.counts);
      const std::vector<float> x = cpu::random_floats(offsets.back() * c.hidden, -1, 1, seed + 2);
      std::vector<float> want_act;
      std::vector<float> want_y;
      RefExpertFfn(w, x, offsets, &want_act, &want_y);
      std::vector<float> act;
      std::vector<float> y;
      ASSERT_NO_FATAL_FAILURE(RunExpertFfn(w, dev, x, offsets, &act, &y));
      const int64_t rows = offsets.back();
      EXPECT_TRUE(Close(act.data(), want_act.data(), rows * c.inter, kExpertTol, c.inter))
          << dtype_name(dtype) << " " << c.name << " act";
      EXPECT_TRUE(Close(y.data(), want_y.data(), rows * c.hidden, kExpertTol, c.hidden))
          << dtype_name(dtype) << " " << c.name << " y";
    }
  }
}

// Misaligned expert weights take the scalar path (one row at a time), which sums in the same
// order: the same bits as the aligned call.
TEST(CudaGemm, ExpertFfnMisalignedWeightsGiveTheSameBits) {
  SY_REQUIRE_GPU();
  const std::vector<int64_t> counts = {0, 1, 2, 3, 4, 5, 9, 0};
  const std::vector<int32_t> offsets = OffsetsFromCounts(counts);
  uint32_t seed = 900;
  for (DType dtype : kWeightDtypes) {
    const ExpertWeights w(dtype, 8, 64, 32, 8, seed += 3);
    const std::vector<float> x = cpu::random_floats(offsets.back() * 64, -1, 1, seed + 2);
    std::vector<float> act;
    std::vector<float> y;
    ASSERT_NO_FATAL_FAILURE(RunExpertFfn(w, DeviceExperts(w), x, offsets, &act, &y));
    std::vector<float> act_misaligned;
    std::vector<float> y_misaligned;
    ASSERT_NO_FATAL_FAILURE(
        RunExpertFfn(w, DeviceExperts(w, 1), x, offsets, &act_misaligned, &y_misaligned));
    EXPECT_TRUE(BitEqual(act_misaligned.data(), act.data(), static_cast<int64_t>(act.size())))
        << dtype_name(dtype);
    EXPECT_TRUE(BitEqual(y_misaligned.data(), y.data(), static_cast<int64_t>(y.size())))
        << dtype_name(dtype);
  }
}

TEST(CudaGemm, ExpertFfnIsDeterministic) {
  SY_REQUIRE_GPU();
  const std::vector<int32_t> offsets = OffsetsFromCounts(RandomCounts(64, 64, 3000, 21));
  uint32_t seed = 1000;
  for (DType dtype : kWeightDtypes) {
    const ExpertWeights w(dtype, 64, 128, 64, 8, seed += 3);
    const DeviceExperts dev(w);
    const std::vector<float> x = cpu::random_floats(offsets.back() * 128, -1, 1, seed + 2);
    std::vector<float> act[2];
    std::vector<float> y[2];
    for (int run = 0; run < 2; ++run) {
      ASSERT_NO_FATAL_FAILURE(RunExpertFfn(w, dev, x, offsets, &act[run], &y[run]));
    }
    EXPECT_TRUE(BitEqual(act[1].data(), act[0].data(), static_cast<int64_t>(act[0].size())))
        << dtype_name(dtype);
    EXPECT_TRUE(BitEqual(y[1].data(), y[0].data(), static_cast<int64_t>(y[0].size())))
        << dtype_name(dtype);
  }
}

// A row's output is the same bits when it is its expert's only row in the call.
TEST(CudaGemm, ExpertFfnRowIsBitIdenticalAloneOrInAnyBatch) {
  SY_REQUIRE_GPU();
  constexpr int64_t kExperts = 16;
  constexpr int64_t kHidden = 128;
  constexpr int64_t kInter = 96;
  const std::vector<int64_t> counts = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 13, 1, 0, 30, 2};
  const std::vector<int32_t> offsets = OffsetsFromCounts(counts);
  uint32_t seed = 1100;
  for (DType dtype : kWeightDtypes) {
    const ExpertWeights w(dtype, kExperts, kHidden, kInter, kExperts, seed += 3);
    const DeviceExperts dev(w);
    const std::vector<float> x = cpu::random_floats(offsets.back() * kHidden, -1, 1, seed + 2);
    std::vector<float> act;
    std::vector<float> y;
    ASSERT_NO_FATAL_FAILURE(RunExpertFfn(w, dev, x, offsets, &act, &y));
    for (int64_t e = 0; e < kExperts; ++e) {
      for (int64_t r = offsets[e]; r < offsets[e + 1]; r += 3) {
        std::vector<int64_t> alone_counts(kExperts, 0);
        alone_counts[e] = 1;
        const std::vector<float> x_row(x.begin() + r * kHidden, x.begin() + (r + 1) * kHidden);
        std::vector<float> act_row;
        std::vector<float> y_row;
        ASSERT_NO_FATAL_FAILURE(
            RunExpertFfn(w, dev, x_row, OffsetsFromCounts(alone_counts), &act_row, &y_row));
        EXPECT_TRUE(BitEqual(act_row.data(), act.data() + r * kInter, kInter))
            << dtype_name(dtype) << " expert " << e << " row " << r;
        EXPECT_TRUE(BitEqual(y_row.data(), y.data() + r * kHidden, kHidden))
            << dtype_name(dtype) << " expert " << e << " row " << r;
      }
    }
  }
}

TEST(CudaGemm, ExpertFfnZeroSizesAndInvalidArguments) {
  SY_REQUIRE_GPU();
  const ExpertWeights w(DType::kBF16, 4, 16, 8, 4, 1200);
  const DeviceExperts dev(w);
  const std::vector<int32_t> offsets = OffsetsFromCounts({1, 0, 2, 0});
  const DeviceArray<int32_t> doffsets(offsets);
  const DeviceArray<float> dx(cpu::random_floats(3 * 16, -1, 1, 1201));
  DeviceArray<float> dact(3 * 8);
  DeviceArray<float> dy(3 * 16);
  dact.Poison();
  dy.Poison();
  const std::vector<float> poisoned = dy.Download();
  // No rows: success, nothing written.
  EXPECT_EQ(
      cuda::grouped_expert_ffn(dx.get(), doffsets.get(), 4, dev.gate_up_ptrs(), dev.down_ptrs(),
                               DType::kBF16, 16, 8, 0, dact.get(), dy.get(), nullptr),
      cudaSuccess);
  // Unsupported dtype: refused.
  EXPECT_EQ(
      cuda::grouped_expert_ffn(dx.get(), doffsets.get(), 4, dev.gate_up_ptrs(), dev.down_ptrs(),
                               DType::kI32, 16, 8, 3, dact.get(), dy.get(), nullptr),
      cudaErrorInvalidValue);
  ASSERT_TRUE(DeviceOk());
  const std::vector<float> after = dy.Download();
  EXPECT_TRUE(BitEqual(after.data(), poisoned.data(), 3 * 16));

  // inter = 0: the down product sums over nothing, so y is zero.
  SY_CUDA_OK(cuda::grouped_expert_ffn(dx.get(), doffsets.get(), 4, dev.gate_up_ptrs(),
                                      dev.down_ptrs(), DType::kBF16, 16, 0, 3, dact.get(), dy.get(),
                                      nullptr));
  ASSERT_TRUE(DeviceOk());
  for (float v : dy.Download()) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace sy
