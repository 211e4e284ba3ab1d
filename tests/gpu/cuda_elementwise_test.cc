// The CUDA kernels of kernels/cuda/elementwise.cu and util.cu against sy::cpu::ref (and
// sy::cpu::fill_random, kernels/dtype.h): many shapes, outputs poisoned before each call,
// determinism, and batch invariance for the row-wise ops. Skipped without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>
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

// f32 results whose order of summation or exp/sin/cos implementation differs from the reference.
constexpr cpu::Tolerance kF32Tol = {1e-5, 1e-4};
constexpr DType kWeightDtypes[] = {DType::kF32, DType::kBF16, DType::kF16};

// Every element has the same bits (NaN payloads and signed zeros included).
template <typename T>
::testing::AssertionResult BitEqual(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  }
  size_t bad = 0;
  size_t first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0 && bad++ == 0) first = i;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  std::ostringstream out;
  out.precision(9);
  out << bad << " of " << got.size() << " differ; first at " << first << ": got ";
  if constexpr (std::is_floating_point_v<T>) {
    out << got[first] << ", want " << want[first];
  } else {
    out << std::hex << "0x" << +got[first] << ", want 0x" << +want[first];
  }
  return ::testing::AssertionFailure() << out.str();
}

::testing::AssertionResult Close(const std::vector<float>& got, const std::vector<float>& want,
                                 cpu::Tolerance tol, int64_t row_len = 0) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  }
  const std::string diff =
      cpu::compare_close(got.data(), want.data(), static_cast<int64_t>(got.size()), tol, row_len);
  if (diff.empty()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << diff;
}

std::vector<int32_t> RandomIds(size_t n, int64_t bound, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> dist(0, bound - 1);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = static_cast<int32_t>(dist(rng));
  return ids;
}

// The bytes of a weight array in its dtype, for upload.
std::vector<uint8_t> RawBytes(const cpu::Weights& w) {
  const size_t bytes = w.dtype == DType::kF32 ? w.f32.size() * 4 : w.half.size() * 2;
  std::vector<uint8_t> raw(bytes);
  std::memcpy(raw.data(), w.data(), bytes);
  return raw;
}

std::vector<float> Slice(const std::vector<float>& v, int64_t row, int64_t row_len) {
  return std::vector<float>(v.begin() + row * row_len, v.begin() + (row + 1) * row_len);
}

// --- embedding ---

std::vector<float> RunEmbedding(const std::vector<int32_t>& ids, const cpu::Weights& table,
                                int64_t dim, int64_t elem_offset = 0) {
  // elem_offset > 0 places the table that many elements past an aligned address.
  std::vector<uint8_t> raw(elem_offset * dtype_size(table.dtype), 0);
  const std::vector<uint8_t> bytes = RawBytes(table);
  raw.insert(raw.end(), bytes.begin(), bytes.end());
  DeviceArray<uint8_t> d_table(raw);
  DeviceArray<int32_t> d_ids(ids);
  DeviceArray<float> d_out(ids.size() * dim);
  d_out.Poison();
  const cudaError_t err = cuda::embedding(d_ids.get(), static_cast<int64_t>(ids.size()),
                                          d_table.get() + elem_offset * dtype_size(table.dtype),
                                          table.dtype, dim, d_out.get(), nullptr);
  EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  EXPECT_TRUE(DeviceOk());
  return d_out.Download();
}

TEST(CudaEmbedding, MatchesReferenceExactly) {
  SY_REQUIRE_GPU();
  struct Case {
    int64_t vocab, dim, n;
  };
  const Case cases[] = {{1, 1, 1},     {5, 3, 7},        {7, 8, 5},     {9, 4, 6},
                        {50, 64, 33},  {300, 1000, 129}, {64, 7168, 3}, {1000, 2048, 17},
                        {10, 2, 1000}, {3, 12, 4},       {20, 1001, 9}, {4, 16, 4096}};
  uint32_t seed = 1;
  for (DType dtype : kWeightDtypes) {
    for (const Case& c : cases) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " vocab " << c.vocab << " dim "
                                        << c.dim << " n " << c.n);
      const cpu::Weights table = cpu::random_weights(dtype, c.vocab * c.dim, -2, 2, seed++);
      const std::vector<int32_t> ids = RandomIds(c.n, c.vocab, seed++);
      std::vector<float> want(c.n * c.dim);
      cpu::ref::embedding(ids.data(), c.n, table.data(), dtype, c.dim, want.data(), nullptr);
      EXPECT_TRUE(BitEqual(RunEmbedding(ids, table, c.dim), want));
      // A table one element off 16-byte alignment takes the scalar path.
      EXPECT_TRUE(BitEqual(RunEmbedding(ids, table, c.dim, 1), want));
    }
  }
}

// --- rms_norm, add_rms_norm ---

// {rows, dim}: scalar and 16-byte paths, each register-cached size, and rows too long to cache.
struct NormCase {
  int64_t rows, dim;
};
constexpr NormCase kNormCases[] = {
    {1, 1},     {3, 3},     {2, 4},     {5, 31},    {4, 32},    {7, 64},    {3, 127},   {6, 300},
    {64, 128},  {2, 513},   {1, 1000},  {3, 1001},  {17, 1024}, {2, 1500},  {9, 2048},  {3, 2049},
    {33, 4096}, {2, 4100},  {2, 5000},  {5, 7168},  {3, 8192},  {2, 16383}, {2, 16384}, {2, 16385},
    {2, 16388}, {2, 20000}, {1, 65540}, {1000, 64}, {2048, 256}};

// Runs rms_norm (residual empty) or add_rms_norm; returns y and, fused, the new residual.
struct NormResult {
  std::vector<float> y;
  std::vector<float> residual;
};
NormResult RunNorm(const std::vector<float>& x, const std::vector<float>& w,
                   const std::vector<float>& residual, int64_t rows, int64_t dim, float eps,
                   bool y_aliases_x) {
  DeviceArray<float> d_x(x);
  DeviceArray<float> d_w(w);
  DeviceArray<float> d_res(residual.size());  // empty: rms_norm
  if (!residual.empty()) d_res.Upload(residual);
  DeviceArray<float> d_y(x.size());
  d_y.Poison();
  float* y = y_aliases_x ? d_x.get() : d_y.get();
  const cudaError_t err =
      residual.empty()
          ? cuda::rms_norm(d_x.get(), d_w.get(), y, rows, dim, eps, nullptr)
          : cuda::add_rms_norm(d_res.get(), d_x.get(), d_w.get(), y, rows, dim, eps, nullptr);
  EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  EXPECT_TRUE(DeviceOk());
  NormResult result;
  result.y = y_aliases_x ? d_x.Download() : d_y.Download();
  if (!residual.empty()) result.residual = d_res.Download();
  return result;
}

TEST(CudaRmsNorm, MatchesReference) {
  SY_REQUIRE_GPU();
  uint32_t seed = 100;
  for (const NormCase& c : kNormCases) {
    for (bool in_place : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "rows " << c.rows << " dim " << c.dim << " in_place " << in_place);
      const std::vector<float> x = cpu::random_floats(c.rows * c.dim, -2, 2, seed++);
      const std::vector<float> w = cpu::random_floats(c.dim, 0.5f, 1.5f, seed++);
      std::vector<float> want(x.size());
      cpu::ref::rms_norm(x.data(), w.data(), want.data(), c.rows, c.dim, 1e-6f, nullptr);
      const NormResult got = RunNorm(x, w, {}, c.rows, c.dim, 1e-6f, in_place);
      EXPECT_TRUE(Close(got.y, want, kF32Tol, c.dim));
    }
  }
}

TEST(CudaAddRmsNorm, MatchesReference) {
  SY_REQUIRE_GPU();
  uint32_t seed = 200;
  for (const NormCase& c : kNormCases) {
    for (bool y_aliases_x : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "rows " << c.rows << " dim " << c.dim << " y_aliases_x " << y_aliases_x);
      const std::vector<float> x = cpu::random_floats(c.rows * c.dim, -1, 1, seed++);
      const std::vector<float> residual = cpu::random_floats(c.rows * c.dim, -2, 2, seed++);
      const std::vector<float> w = cpu::random_floats(c.dim, 0.5f, 1.5f, seed++);
      std::vector<float> want_res = residual;
      std::vector<float> want_y(x.size());
      cpu::ref::add_rms_norm(want_res.data(), x.data(), w.data(), want_y.data(), c.rows, c.dim,
                             1e-5f, nullptr);
      const NormResult got = RunNorm(x, w, residual, c.rows, c.dim, 1e-5f, y_aliases_x);
      EXPECT_TRUE(BitEqual(got.residual, want_res));  // one f32 addition each
      EXPECT_TRUE(Close(got.y, want_y, kF32Tol, c.dim));
    }
  }
}

TEST(CudaRmsNorm, DeterministicAndBatchInvariant) {
  SY_REQUIRE_GPU();
  const NormCase cases[] = {{37, 1}, {37, 127}, {37, 2048}, {9, 4100}, {9, 5000}, {5, 20000}};
  uint32_t seed = 300;
  for (const NormCase& c : cases) {
    for (bool fused : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "rows " << c.rows << " dim " << c.dim << " fused " << fused);
      const std::vector<float> x = cpu::random_floats(c.rows * c.dim, -2, 2, seed++);
      const std::vector<float> w = cpu::random_floats(c.dim, 0.5f, 1.5f, seed++);
      const std::vector<float> res =
          fused ? cpu::random_floats(c.rows * c.dim, -2, 2, seed++) : std::vector<float>{};
      const NormResult batch = RunNorm(x, w, res, c.rows, c.dim, 1e-6f, false);
      EXPECT_TRUE(BitEqual(RunNorm(x, w, res, c.rows, c.dim, 1e-6f, false).y, batch.y));
      for (int64_t r : {int64_t{0}, c.rows / 2, c.rows - 1}) {
        const NormResult one =
            RunNorm(Slice(x, r, c.dim), w, fused ? Slice(res, r, c.dim) : std::vector<float>{}, 1,
                    c.dim, 1e-6f, false);
        EXPECT_TRUE(BitEqual(one.y, Slice(batch.y, r, c.dim))) << "row " << r;
      }
    }
  }
}

// --- rope_neox, rope_interleaved ---

struct RopeCase {
  int64_t tokens, heads, head_dim, rotary_dim;
};

std::vector<float> RunRope(const std::vector<float>& x, const std::vector<int32_t>& positions,
                           const std::vector<float>& inv_freq, const RopeCase& c, float attn_scale,
                           bool interleaved = false) {
  DeviceArray<float> d_x(x);
  DeviceArray<int32_t> d_pos(positions);
  DeviceArray<float> d_freq(inv_freq);
  const cudaError_t err = (interleaved ? cuda::rope_interleaved : cuda::rope_neox)(
      d_x.get(), c.tokens, c.heads, c.head_dim, c.rotary_dim, d_pos.get(), d_freq.get(), attn_scale,
      nullptr);
  EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  EXPECT_TRUE(DeviceOk());
  return d_x.Download();
}

std::vector<float> InvFreq(int64_t rotary_dim, float base) {
  std::vector<float> f(std::max<int64_t>(rotary_dim / 2, 1));
  for (size_t i = 0; i < f.size(); ++i) {
    f[i] = static_cast<float>(std::pow(base, -2.0 * static_cast<double>(i) / rotary_dim));
  }
  return f;
}

// Positions from 0 up to ~2^20 (large angles exercise the precise sin/cos range reduction).
std::vector<int32_t> RandomPositions(int64_t tokens, uint32_t seed) {
  std::vector<int32_t> pos = RandomIds(tokens, 1 << 20, seed);
  for (int64_t t = 0; t < tokens && t < 4; ++t) pos[t] = static_cast<int32_t>(t);
  return pos;
}

TEST(CudaRopeNeox, MatchesReference) {
  SY_REQUIRE_GPU();
  const RopeCase cases[] = {{1, 1, 2, 2},     {5, 4, 64, 64},    {7, 3, 128, 64}, {33, 8, 128, 128},
                            {3, 2, 256, 256}, {2, 5, 80, 40},    {1, 1, 6, 5},    {4, 40, 128, 128},
                            {300, 2, 64, 32}, {2, 64, 128, 128}, {9, 7, 96, 96}};
  uint32_t seed = 400;
  for (const RopeCase& c : cases) {
    for (float attn_scale : {1.0f, 1.2f}) {
      SCOPED_TRACE(::testing::Message()
                   << "tokens " << c.tokens << " heads " << c.heads << " head_dim " << c.head_dim
                   << " rotary " << c.rotary_dim << " attn_scale " << attn_scale);
      const std::vector<float> x =
          cpu::random_floats(c.tokens * c.heads * c.head_dim, -1, 1, seed++);
      const std::vector<int32_t> pos = RandomPositions(c.tokens, seed++);
      const std::vector<float> inv_freq = InvFreq(c.rotary_dim, 10000.0f);
      std::vector<float> want = x;
      cpu::ref::rope_neox(want.data(), c.tokens, c.heads, c.head_dim, c.rotary_dim, pos.data(),
                          inv_freq.data(), attn_scale, nullptr);
      EXPECT_TRUE(Close(RunRope(x, pos, inv_freq, c, attn_scale), want, kF32Tol, c.head_dim));
    }
  }
}

TEST(CudaRopeInterleaved, MatchesReference) {
  SY_REQUIRE_GPU();
  // DeepSeek's rope part (64 of a 192-wide head as its own tensor, or the leading 64) and others.
  const RopeCase cases[] = {{1, 1, 2, 2},    {5, 16, 64, 64}, {7, 3, 192, 64},
                            {33, 1, 64, 64}, {2, 5, 80, 40},  {1, 1, 6, 5}};
  uint32_t seed = 450;
  for (const RopeCase& c : cases) {
    for (float attn_scale : {1.0f, 1.3f}) {
      SCOPED_TRACE(::testing::Message()
                   << "tokens " << c.tokens << " heads " << c.heads << " head_dim " << c.head_dim
                   << " rotary " << c.rotary_dim << " attn_scale " << attn_scale);
      const std::vector<float> x =
          cpu::random_floats(c.tokens * c.heads * c.head_dim, -1, 1, seed++);
      const std::vector<int32_t> pos = RandomPositions(c.tokens, seed++);
      const std::vector<float> inv_freq = InvFreq(c.rotary_dim, 10000.0f);
      std::vector<float> want = x;
      cpu::ref::rope_interleaved(want.data(), c.tokens, c.heads, c.head_dim, c.rotary_dim,
                                 pos.data(), inv_freq.data(), attn_scale, nullptr);
      EXPECT_TRUE(Close(RunRope(x, pos, inv_freq, c, attn_scale, true), want, kF32Tol, c.head_dim));
    }
  }
}

TEST(CudaRopeNeox, DeterministicAndBatchInvariant) {
  SY_REQUIRE_GPU();
  const RopeCase c = {65, 6, 128, 64};
  const std::vector<float> x = cpu::random_floats(c.tokens * c.heads * c.head_dim, -1, 1, 7);
  const std::vector<int32_t> pos = RandomPositions(c.tokens, 8);
  const std::vector<float> inv_freq = InvFreq(c.rotary_dim, 1e6f);
  const std::vector<float> batch = RunRope(x, pos, inv_freq, c, 1.1f);
  EXPECT_TRUE(BitEqual(RunRope(x, pos, inv_freq, c, 1.1f), batch));
  const int64_t row = c.heads * c.head_dim;
  for (int64_t t : {int64_t{0}, int64_t{31}, c.tokens - 1}) {
    const RopeCase one = {1, c.heads, c.head_dim, c.rotary_dim};
    EXPECT_TRUE(
        BitEqual(RunRope(Slice(x, t, row), {pos[t]}, inv_freq, one, 1.1f), Slice(batch, t, row)))
        << "token " << t;
  }
}

// --- silu_mul ---

std::vector<float> RunSiluMul(const std::vector<float>& gate_up, int64_t rows, int64_t inter) {
  DeviceArray<float> d_in(gate_up);
  DeviceArray<float> d_out(rows * inter);
  d_out.Poison();
  const cudaError_t err = cuda::silu_mul(d_in.get(), d_out.get(), rows, inter, nullptr);
  EXPECT_EQ(err, cudaSuccess) << cudaGetErrorString(err);
  EXPECT_TRUE(DeviceOk());
  return d_out.Download();
}

TEST(CudaSiluMul, MatchesReference) {
  SY_REQUIRE_GPU();
  struct Case {
    int64_t rows, inter;
  };
  const Case cases[] = {{1, 1},    {3, 3},      {2, 4},     {5, 5},    {7, 64},
                        {33, 768}, {100, 1408}, {1000, 96}, {4, 4097}, {2, 16384}};
  uint32_t seed = 500;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " inter " << c.inter);
    std::vector<float> gate_up = cpu::random_floats(c.rows * 2 * c.inter, -8, 8, seed++);
    // Saturated SiLU (exp overflows to inf) must match too.
    gate_up[0] = -100.0f;
    if (gate_up.size() > 2) gate_up[1] = 90.0f;
    std::vector<float> want(c.rows * c.inter);
    cpu::ref::silu_mul(gate_up.data(), want.data(), c.rows, c.inter, nullptr);
    const std::vector<float> got = RunSiluMul(gate_up, c.rows, c.inter);
    EXPECT_TRUE(Close(got, want, kF32Tol, c.inter));
    EXPECT_TRUE(BitEqual(RunSiluMul(gate_up, c.rows, c.inter), got));  // deterministic
    const int64_t r = c.rows - 1;
    EXPECT_TRUE(
        BitEqual(RunSiluMul(Slice(gate_up, r, 2 * c.inter), 1, c.inter), Slice(got, r, c.inter)));
  }
}

// --- gather_rows, add_gated_rows: exact (the reference's unfused ops) ---

TEST(CudaGatherRows, MatchesReferenceExactly) {
  SY_REQUIRE_GPU();
  struct Case {
    int64_t src_rows, n, dim;
  };
  const Case cases[] = {{1, 1, 1},      {5, 7, 3},    {10, 33, 64}, {100, 1000, 8},
                        {50, 17, 2048}, {8, 3, 7168}, {7, 5, 1001}, {3, 2, 6}};
  uint32_t seed = 600;
  for (const Case& c : cases) {
    for (int64_t src_offset : {int64_t{0}, int64_t{1}}) {  // 1: the scalar path
      SCOPED_TRACE(::testing::Message() << "src_rows " << c.src_rows << " n " << c.n << " dim "
                                        << c.dim << " src_offset " << src_offset);
      std::vector<float> src = cpu::random_floats(src_offset + c.src_rows * c.dim, -1, 1, seed++);
      const std::vector<int32_t> idx = RandomIds(c.n, c.src_rows, seed++);
      std::vector<float> want(c.n * c.dim);
      cpu::ref::gather_rows(src.data() + src_offset, idx.data(), c.n, c.dim, want.data());
      DeviceArray<float> d_src(src);
      DeviceArray<int32_t> d_idx(idx);
      DeviceArray<float> d_dst(want.size());
      d_dst.Poison();
      SY_CUDA_OK(cuda::gather_rows(d_src.get() + src_offset, d_idx.get(), c.n, c.dim, d_dst.get(),
                                   nullptr));
      ASSERT_TRUE(DeviceOk());
      EXPECT_TRUE(BitEqual(d_dst.Download(), want));
    }
  }
}

TEST(CudaAddGatedRows, MatchesReferenceExactly) {
  SY_REQUIRE_GPU();
  struct Case {
    int64_t rows, dim;
  };
  const Case cases[] = {{1, 1}, {3, 3}, {5, 64}, {1000, 7}, {17, 2048}, {2, 7168}, {9, 1001}};
  uint32_t seed = 800;
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "rows " << c.rows << " dim " << c.dim);
    const std::vector<float> src = cpu::random_floats(c.rows * c.dim, -1, 1, seed++);
    const std::vector<float> gate = cpu::random_floats(c.rows, 0, 1, seed++);
    const std::vector<float> dst = cpu::random_floats(c.rows * c.dim, -1, 1, seed++);
    std::vector<float> want = dst;
    cpu::ref::add_gated_rows(src.data(), gate.data(), c.rows, c.dim, want.data());
    DeviceArray<float> d_src(src);
    DeviceArray<float> d_gate(gate);
    DeviceArray<float> d_dst(dst);
    SY_CUDA_OK(
        cuda::add_gated_rows(d_src.get(), d_gate.get(), c.rows, c.dim, d_dst.get(), nullptr));
    ASSERT_TRUE(DeviceOk());
    EXPECT_TRUE(BitEqual(d_dst.Download(), want));
  }
}

// --- add ---

TEST(CudaAdd, MatchesReferenceExactlyInPlace) {
  SY_REQUIRE_GPU();
  uint32_t seed = 850;
  for (int64_t n : {1, 3, 4, 5, 1000, 1025, (1 << 20) + 3}) {
    for (int64_t offset : {int64_t{0}, int64_t{1}}) {  // 1: not 16-byte aligned
      SCOPED_TRACE(::testing::Message() << "n " << n << " offset " << offset);
      const std::vector<float> x = cpu::random_floats(n, -1, 1, seed++);
      const std::vector<float> y = cpu::random_floats(offset + n, -1, 1, seed++);
      std::vector<float> want(y.begin() + offset, y.end());
      cpu::ref::add(x.data(), want.data(), want.data(), n);
      DeviceArray<float> d_x(x);
      DeviceArray<float> d_y(y);
      SY_CUDA_OK(cuda::add(d_x.get(), d_y.get() + offset, d_y.get() + offset, n, nullptr));
      ASSERT_TRUE(DeviceOk());
      const std::vector<float> all = d_y.Download();
      EXPECT_EQ(std::memcmp(all.data(), y.data(), offset * sizeof(float)), 0);
      EXPECT_TRUE(BitEqual(std::vector<float>(all.begin() + offset, all.end()), want));
    }
  }
}

// --- sigmoid, convert_f32 ---

TEST(CudaSigmoid, MatchesReference) {
  SY_REQUIRE_GPU();
  uint32_t seed = 900;
  for (int64_t n : {1, 2, 3, 4, 5, 7, 1000, 1025, (1 << 20) + 3}) {
    for (int64_t offset : {int64_t{0}, int64_t{1}}) {  // 1: not 16-byte aligned
      SCOPED_TRACE(::testing::Message() << "n " << n << " offset " << offset);
      std::vector<float> x = cpu::random_floats(offset + n, -10, 10, seed++);
      x[offset] = -100.0f;  // exp overflows: 1 / inf
      std::vector<float> want(x.begin() + offset, x.end());
      cpu::ref::sigmoid(want.data(), n);
      std::vector<float> got;
      for (int run = 0; run < 2; ++run) {
        DeviceArray<float> d_x(x);
        SY_CUDA_OK(cuda::sigmoid(d_x.get() + offset, n, nullptr));
        ASSERT_TRUE(DeviceOk());
        const std::vector<float> all = d_x.Download();
        EXPECT_EQ(std::memcmp(all.data(), x.data(), offset * sizeof(float)), 0);
        const std::vector<float> out(all.begin() + offset, all.end());
        if (run == 0) {
          EXPECT_TRUE(Close(out, want, {1e-6, 1e-5}));
          got = out;
        } else {
          EXPECT_TRUE(BitEqual(out, got));
        }
      }
    }
  }
}

// Random bit patterns (NaNs, infinities, subnormals, every exponent) and the rounding edge cases.
std::vector<float> ConversionInputs(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<float> x(n);
  for (float& v : x) {
    const uint32_t bits = static_cast<uint32_t>(rng());
    std::memcpy(&v, &bits, sizeof v);
  }
  const uint32_t special[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                              0xffc00001u, 0x7f800001u, 0x00000001u, 0x807fffffu, 0x3f808000u,
                              0x3f818000u, 0x3f80ffffu, 0x477fefffu, 0x477ff000u, 0x477fe000u,
                              0xc77ff000u, 0x38800000u, 0x387fffffu, 0x33000000u, 0x33000001u,
                              0x32ffffffu, 0x33c00000u, 0x3f801000u, 0x3f803000u, 0x3f800fffu,
                              0x7f7fffffu, 0x7f7f8000u, 0x34000000u, 0x38000000u, 0x37ffe000u};
  for (size_t i = 0; i < std::size(special) && i < x.size(); ++i) {
    std::memcpy(&x[i * 7 % x.size()], &special[i], sizeof(float));
  }
  return x;
}

TEST(CudaConvertF32, MatchesDtypeHBitForBit) {
  SY_REQUIRE_GPU();
  uint32_t seed = 1000;
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (int64_t n : {1, 2, 3, 4, 5, 31, 1000, 4099, (1 << 20) + 3}) {
      for (int64_t offset : {int64_t{0}, int64_t{1}}) {  // 1: x and y off their vector alignment
        SCOPED_TRACE(::testing::Message()
                     << dtype_name(dtype) << " n " << n << " offset " << offset);
        const std::vector<float> x = ConversionInputs(offset + n, seed++);
        std::vector<uint16_t> want(offset + n, 0xffff);
        for (int64_t i = 0; i < n; ++i) {
          const float v = x[offset + i];
          want[offset + i] = dtype == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
        }
        DeviceArray<float> d_x(x);
        DeviceArray<uint16_t> d_y(offset + n);
        d_y.Poison();
        SY_CUDA_OK(cuda::convert_f32(d_x.get() + offset, n, dtype, d_y.get() + offset, nullptr));
        ASSERT_TRUE(DeviceOk());
        EXPECT_TRUE(BitEqual(d_y.Download(), want));
      }
    }
  }
}

TEST(CudaConvertF32, ToF32Copies) {
  SY_REQUIRE_GPU();
  const std::vector<float> x = ConversionInputs(1001, 5);
  DeviceArray<float> d_x(x);
  DeviceArray<float> d_y(x.size());
  d_y.Poison();
  SY_CUDA_OK(cuda::convert_f32(d_x.get(), 1001, DType::kF32, d_y.get(), nullptr));
  ASSERT_TRUE(DeviceOk());
  EXPECT_TRUE(BitEqual(d_y.Download(), x));
}

// --- util.cu: fill_random, fill_f32, copy_bytes ---

template <typename T>
void ExpectFillRandomMatches(DType dtype, int64_t n, uint64_t seed, float scale) {
  std::vector<T> want(n);
  cpu::fill_random(want.data(), dtype, n, seed, scale);
  DeviceArray<T> d(n);
  d.Poison();
  SY_CUDA_OK(cuda::fill_random(d.get(), dtype, n, seed, scale, nullptr));
  ASSERT_TRUE(DeviceOk());
  EXPECT_TRUE(BitEqual(d.Download(), want));
}

TEST(CudaFillRandom, MatchesCpuBitForBit) {
  SY_REQUIRE_GPU();
  for (int64_t n : {1, 3, 1000, 65537, (1 << 22) + 5}) {
    for (uint64_t seed : {uint64_t{0}, uint64_t{42}, uint64_t{0xdeadbeefcafef00dull}}) {
      for (float scale : {1.0f, 0.02f, 3.7f}) {
        SCOPED_TRACE(::testing::Message() << "n " << n << " seed " << seed << " scale " << scale);
        ExpectFillRandomMatches<float>(DType::kF32, n, seed, scale);
        ExpectFillRandomMatches<uint16_t>(DType::kBF16, n, seed, scale);
        ExpectFillRandomMatches<uint16_t>(DType::kF16, n, seed, scale);
      }
    }
  }
}

TEST(CudaFillF32, FillsExactlyTheRange) {
  SY_REQUIRE_GPU();
  constexpr int64_t kGuard = 8;
  for (int64_t n : {1, 2, 3, 4, 5, 1000, 1027, (1 << 20) + 1}) {
    for (int64_t offset : {int64_t{0}, int64_t{1}, int64_t{4}}) {
      SCOPED_TRACE(::testing::Message() << "n " << n << " offset " << offset);
      DeviceArray<float> d(offset + n + kGuard);
      d.Poison();
      SY_CUDA_OK(cuda::fill_f32(d.get() + offset, n, -1.25f, nullptr));
      ASSERT_TRUE(DeviceOk());
      const std::vector<float> got = d.Download();
      std::vector<float> want(got.size());
      std::memset(want.data(), 0xff, want.size() * sizeof(float));  // Poison()'s bytes
      for (int64_t i = 0; i < n; ++i) want[offset + i] = -1.25f;
      EXPECT_TRUE(BitEqual(got, want));
    }
  }
}

TEST(CudaCopyBytes, CopiesExactly) {
  SY_REQUIRE_GPU();
  constexpr size_t kGuard = 64;
  std::mt19937 rng(11);
  for (size_t bytes :
       {size_t{16}, size_t{48}, size_t{4096}, size_t{1000000}, size_t{(1 << 24) + 48}}) {
    SCOPED_TRACE(::testing::Message() << "bytes " << bytes);
    std::vector<uint8_t> src(bytes);
    for (uint8_t& b : src) b = static_cast<uint8_t>(rng());
    DeviceArray<uint8_t> d_src(src);
    DeviceArray<uint8_t> d_dst(bytes + kGuard);
    d_dst.Poison();
    SY_CUDA_OK(cuda::copy_bytes(d_dst.get(), d_src.get(), bytes, nullptr));
    ASSERT_TRUE(DeviceOk());
    std::vector<uint8_t> want = src;
    want.resize(bytes + kGuard, 0xff);
    EXPECT_TRUE(BitEqual(d_dst.Download(), want));
  }
}

// --- arguments ---

TEST(CudaElementwise, RejectsUnsupportedArguments) {
  SY_REQUIRE_GPU();
  DeviceArray<float> buf(64);
  DeviceArray<int32_t> ids(4);
  ids.Poison();
  float* p = buf.get();
  EXPECT_EQ(cuda::embedding(ids.get(), 1, p, DType::kI32, 4, p, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::convert_f32(p, 4, DType::kI64, p, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::fill_random(p, DType::kI32, 4, 1, 1.0f, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::rope_neox(p, 1, 1, 4, 6, ids.get(), p, 1.0f, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::rope_interleaved(p, 1, 1, 4, 6, ids.get(), p, 1.0f, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::add(p, p, p, -1, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::copy_bytes(p, p + 8, 24, nullptr), cudaErrorInvalidValue);      // bytes % 16
  EXPECT_EQ(cuda::copy_bytes(p + 1, p + 8, 32, nullptr), cudaErrorInvalidValue);  // unaligned
  EXPECT_TRUE(DeviceOk());
}

TEST(CudaElementwise, ZeroSizeCallsDoNothing) {
  SY_REQUIRE_GPU();
  EXPECT_EQ(cuda::embedding(nullptr, 0, nullptr, DType::kBF16, 8, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::rms_norm(nullptr, nullptr, nullptr, 0, 8, 1e-6f, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::add_rms_norm(nullptr, nullptr, nullptr, nullptr, 0, 8, 1e-6f, nullptr),
            cudaSuccess);
  EXPECT_EQ(cuda::rope_neox(nullptr, 0, 4, 64, 64, nullptr, nullptr, 1.0f, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::silu_mul(nullptr, nullptr, 0, 8, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::gather_rows(nullptr, nullptr, 0, 8, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::add_gated_rows(nullptr, nullptr, 0, 8, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::sigmoid(nullptr, 0, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::rope_interleaved(nullptr, 0, 4, 64, 64, nullptr, nullptr, 1.0f, nullptr),
            cudaSuccess);
  EXPECT_EQ(cuda::add(nullptr, nullptr, nullptr, 0, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::convert_f32(nullptr, 0, DType::kF16, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::fill_random(nullptr, DType::kF32, 0, 1, 1.0f, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::fill_f32(nullptr, 0, 1.0f, nullptr), cudaSuccess);
  EXPECT_EQ(cuda::copy_bytes(nullptr, nullptr, 0, nullptr), cudaSuccess);
  EXPECT_TRUE(DeviceOk());
}

}  // namespace
}  // namespace sy
