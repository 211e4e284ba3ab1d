// Tests of the CUDA latent-attention ops (DeepSeek MLA) against sy::cpu::ref: the latent cache
// write (f32 and bf16), latent attention over shuffled paged caches (decode batches, prefill
// chunks, empty contexts, several launches of tokens, head counts that leave a block partly
// empty), batch invariance, and the CudaBackend's HeadMatMul (cuBLAS) and latent ops.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/backend/cuda_backend.h"
#include "kernels/cpu/latent_ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cuda/latent_ops.h"
#include "tests/gpu/gpu_testing.h"

namespace sy::cuda {
namespace {

using gpu_testing::DeviceArray;
using gpu_testing::DeviceOk;

// f32 accumulation on both sides; a bf16 cache is compared against the reference run on the same
// bf16-rounded values.
const cpu::Tolerance kTol = gpu_testing::ToleranceFor(DType::kF32);

std::vector<uint16_t> ToBf16(const std::vector<float>& x) {
  std::vector<uint16_t> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = f32_to_bf16(x[i]);
  return y;
}

std::vector<float> RoundToBf16(const std::vector<float>& x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = bf16_to_f32(f32_to_bf16(x[i]));
  return y;
}

// ---------------------------------------------------------------------------------------------
// latent_kv_write

TEST(CudaLatentKvWrite, MatchesReference) {
  SY_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (auto [latent_dim, rope_dim] : {std::pair{512, 64}, std::pair{24, 8}, std::pair{7, 0}}) {
      SCOPED_TRACE(::testing::Message()
                   << dtype_name(dtype) << " latent=" << latent_dim << " rope=" << rope_dim);
      constexpr int64_t kTokens = 11, kSlots = 40;
      const int64_t row = latent_dim + rope_dim;
      const std::vector<float> latent = cpu::random_floats(kTokens * latent_dim, -2, 2, 1);
      const std::vector<float> rope = cpu::random_floats(kTokens * rope_dim, -2, 2, 2);
      const std::vector<int64_t> slots = {3, -1, 0, 39, 7, 8, -1, 20, 21, 1, 30};
      const std::vector<float> before = cpu::random_floats(kSlots * row, -2, 2, 3);
      std::vector<float> want = before;
      cpu::ref::latent_kv_write(latent.data(), rope.data(), kTokens, latent_dim, rope_dim,
                                slots.data(), want.data());
      DeviceArray<float> dl(latent);
      DeviceArray<float> dr(rope);
      DeviceArray<int64_t> ds(slots);
      if (dtype == DType::kF32) {
        DeviceArray<float> cache(before);
        SY_CUDA_OK(latent_kv_write(dl.get(), dr.get(), kTokens, latent_dim, rope_dim, ds.get(),
                                   cache.get(), dtype, nullptr));
        ASSERT_TRUE(DeviceOk());
        EXPECT_EQ(cache.Download(), want);
      } else {
        DeviceArray<uint16_t> cache(ToBf16(before));
        SY_CUDA_OK(latent_kv_write(dl.get(), dr.get(), kTokens, latent_dim, rope_dim, ds.get(),
                                   cache.get(), dtype, nullptr));
        ASSERT_TRUE(DeviceOk());
        EXPECT_EQ(cache.Download(), ToBf16(want));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// latent_attention

struct Shape {
  int heads, latent_dim, rope_dim, block_size;
  DType cache;
};

std::string Describe(const Shape& s) {
  std::ostringstream o;
  o << "heads=" << s.heads << " latent=" << s.latent_dim << " rope=" << s.rope_dim
    << " block=" << s.block_size << " cache=" << dtype_name(s.cache);
  return o.str();
}

// Sequences in shuffled blocks of a cache (values bf16-rounded for a bf16 cache), and query
// tokens (sequence, ctx_len).
struct Problem {
  Shape shape;
  std::vector<int32_t> seq, ctx;
  int max_blocks = 0;
  std::vector<int32_t> tables;
  std::vector<float> cache;  // f32 values (what the device cache holds)
  std::vector<float> q_latent, q_rope;
  float scale = 0.0f;

  int64_t tokens() const { return static_cast<int64_t>(seq.size()); }
  int64_t out_size() const { return tokens() * shape.heads * shape.latent_dim; }

  cpu::LatentAttentionArgs CpuArgs(float* out) const {
    cpu::LatentAttentionArgs a;
    a.q_latent = q_latent.data();
    a.q_rope = q_rope.data();
    a.out = out;
    a.cache = cache.data();
    a.block_tables = tables.data();
    a.token_seq = seq.data();
    a.ctx_len = ctx.data();
    a.tokens = tokens();
    a.n_heads = shape.heads;
    a.latent_dim = shape.latent_dim;
    a.rope_dim = shape.rope_dim;
    a.block_size = shape.block_size;
    a.max_blocks_per_seq = max_blocks;
    a.scale = scale;
    return a;
  }
};

Problem MakeProblem(const Shape& shape, const std::vector<int>& seq_lens,
                    const std::vector<std::pair<int, int>>& queries, uint32_t seed) {
  Problem p;
  p.shape = shape;
  std::mt19937 rng(seed);
  int total = 0;
  for (int len : seq_lens) {
    const int blocks = (len + shape.block_size - 1) / shape.block_size;
    p.max_blocks = std::max(p.max_blocks, blocks);
    total += blocks;
  }
  p.max_blocks += 1;
  std::vector<int32_t> free_blocks(total + 3);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  p.tables.assign(seq_lens.size() * p.max_blocks, 0);
  size_t next = 0;
  for (size_t s = 0; s < seq_lens.size(); ++s) {
    const int blocks = (seq_lens[s] + shape.block_size - 1) / shape.block_size;
    for (int b = 0; b < blocks; ++b) p.tables[s * p.max_blocks + b] = free_blocks[next++];
  }
  for (auto [s, c] : queries) {
    p.seq.push_back(s);
    p.ctx.push_back(c);
  }
  const int64_t row = shape.latent_dim + shape.rope_dim;
  p.cache = cpu::random_floats(static_cast<size_t>(free_blocks.size()) * shape.block_size * row, -1,
                               1, seed + 1);
  if (shape.cache == DType::kBF16) p.cache = RoundToBf16(p.cache);
  p.q_latent = cpu::random_floats(p.out_size(), -0.5, 0.5, seed + 2);
  p.q_rope = cpu::random_floats(p.tokens() * shape.heads * shape.rope_dim, -0.5, 0.5, seed + 3);
  p.scale = 1.0f / std::sqrt(192.0f);
  return p;
}

// Runs the CUDA kernel on tokens [first, first + count) of the problem.
std::vector<float> RunCuda(const Problem& p, int64_t first, int64_t count) {
  const Shape& s = p.shape;
  DeviceArray<float> ql(
      std::vector<float>(p.q_latent.begin() + first * s.heads * s.latent_dim,
                         p.q_latent.begin() + (first + count) * s.heads * s.latent_dim));
  DeviceArray<float> qr(
      std::vector<float>(p.q_rope.begin() + first * s.heads * s.rope_dim,
                         p.q_rope.begin() + (first + count) * s.heads * s.rope_dim));
  DeviceArray<int32_t> tables(p.tables);
  DeviceArray<int32_t> seq(
      std::vector<int32_t>(p.seq.begin() + first, p.seq.begin() + first + count));
  DeviceArray<int32_t> ctx(
      std::vector<int32_t>(p.ctx.begin() + first, p.ctx.begin() + first + count));
  DeviceArray<float> out(count * s.heads * s.latent_dim);
  out.Poison();
  DeviceArray<float> cache_f32(s.cache == DType::kF32 ? p.cache : std::vector<float>());
  DeviceArray<uint16_t> cache_bf16(s.cache == DType::kBF16 ? ToBf16(p.cache)
                                                           : std::vector<uint16_t>());
  DeviceArray<uint8_t> scratch(latent_attention_scratch_bytes(count, s.heads, s.latent_dim));
  LatentAttentionArgs a;
  a.q_latent = ql.get();
  a.q_rope = qr.get();
  a.out = out.get();
  a.cache = s.cache == DType::kF32 ? static_cast<const void*>(cache_f32.get()) : cache_bf16.get();
  a.cache_dtype = s.cache;
  a.block_tables = tables.get();
  a.token_seq = seq.get();
  a.ctx_len = ctx.get();
  a.tokens = count;
  a.n_heads = s.heads;
  a.latent_dim = s.latent_dim;
  a.rope_dim = s.rope_dim;
  a.block_size = s.block_size;
  a.max_blocks_per_seq = p.max_blocks;
  a.scale = p.scale;
  a.scratch = scratch.get();
  EXPECT_EQ(latent_attention(a, nullptr), cudaSuccess);
  EXPECT_TRUE(DeviceOk());
  return out.Download();
}

// Decode tokens of several sequences, a prefill chunk, and a token that sees nothing.
std::vector<std::pair<int, int>> MixedQueries(const std::vector<int>& seq_lens) {
  std::vector<std::pair<int, int>> q;
  for (size_t s = 1; s < seq_lens.size(); ++s) q.push_back({static_cast<int>(s), seq_lens[s]});
  for (int p = 20; p < 45; ++p) q.push_back({0, p + 1});  // 25 tokens: several launches
  q.push_back({1, 0});
  return q;
}

TEST(CudaLatentAttention, MatchesReference) {
  SY_REQUIRE_GPU();
  const std::vector<int> seq_lens = {45, 1, 31, 32, 33, 700, 4100};
  uint32_t seed = 10;
  for (const Shape& s : {Shape{16, 512, 64, 16, DType::kBF16}, Shape{16, 512, 64, 64, DType::kF32},
                         Shape{3, 64, 16, 1, DType::kBF16}, Shape{20, 32, 8, 7, DType::kBF16},
                         Shape{128, 512, 64, 64, DType::kBF16}}) {
    SCOPED_TRACE(Describe(s));
    const Problem p = MakeProblem(s, seq_lens, MixedQueries(seq_lens), seed += 10);
    std::vector<float> want(p.out_size());
    cpu::ref::latent_attention(p.CpuArgs(want.data()), nullptr);
    const std::vector<float> got = RunCuda(p, 0, p.tokens());
    EXPECT_EQ(cpu::compare_close(got.data(), want.data(), want.size(), kTol, s.latent_dim), "");
  }
}

TEST(CudaLatentAttention, TokenIsBitIdenticalAloneOrInBatch) {
  SY_REQUIRE_GPU();
  const Shape s{16, 512, 64, 16, DType::kBF16};
  const std::vector<int> seq_lens = {45, 300, 2000};
  const Problem p = MakeProblem(s, seq_lens, MixedQueries(seq_lens), 3);
  const std::vector<float> all = RunCuda(p, 0, p.tokens());
  const int64_t row = static_cast<int64_t>(s.heads) * s.latent_dim;
  for (int64_t t = 0; t < p.tokens(); ++t) {
    const std::vector<float> one = RunCuda(p, t, 1);
    ASSERT_EQ(std::memcmp(one.data(), all.data() + t * row, row * sizeof(float)), 0)
        << "token " << t;
  }
}

TEST(CudaLatentAttention, UnsupportedShapesAreRejected) {
  SY_REQUIRE_GPU();
  LatentAttentionArgs a;
  a.tokens = 0;
  EXPECT_EQ(latent_attention(a, nullptr), cudaSuccess);  // nothing to do
  a.tokens = 1;
  a.n_heads = 1;
  a.latent_dim = 48;  // not a multiple of 32
  a.rope_dim = 16;
  EXPECT_EQ(latent_attention(a, nullptr), cudaErrorInvalidValue);
  EXPECT_TRUE(DeviceOk());
}

// ---------------------------------------------------------------------------------------------
// The backend: HeadMatMul through cuBLAS, and the latent ops with backend scratch.

Tensor View(void* data, DType dtype, int64_t rows, int64_t cols) {
  return Tensor{data, dtype, rows, cols};
}

TEST(CudaBackendLatent, HeadMatMulMatchesReference) {
  SY_REQUIRE_GPU();
  auto backend = CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  uint32_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (auto [m, heads, n, k] :
         {std::array<int64_t, 4>{1, 16, 512, 128}, std::array<int64_t, 4>{37, 3, 20, 24},
          std::array<int64_t, 4>{5, 16, 128, 512}}) {
      SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " m=" << m << " heads=" << heads
                                        << " n=" << n << " k=" << k);
      const cpu::Weights w = cpu::random_weights(dtype, heads * n * k, -1, 1, ++seed);
      std::vector<float> x = cpu::random_floats(m * heads * k, -1, 1, ++seed);
      DeviceArray<float> dx(x);
      DeviceArray<float> dw_f32(dtype == DType::kF32 ? w.f32 : std::vector<float>());
      DeviceArray<uint16_t> dw_half(dtype == DType::kF32 ? std::vector<uint16_t>() : w.half);
      DeviceArray<float> dy(m * heads * n);
      dy.Poison();
      void* wdata = dtype == DType::kF32 ? static_cast<void*>(dw_f32.get()) : dw_half.get();
      (*backend)->HeadMatMul(View(dx.get(), DType::kF32, m, heads * k),
                             View(wdata, dtype, heads * n, k),
                             View(dy.get(), DType::kF32, m, heads * n), static_cast<int>(heads));
      (*backend)->Synchronize();
      ASSERT_TRUE((*backend)->status().ok()) << (*backend)->status().ToString();
      // The backend multiplies x in w's 16-bit type (cuBLAS takes matching types): the reference
      // gets the same rounded x, leaving only the order of summation.
      if (dtype != DType::kF32) {
        for (float& v : x)
          v = dtype == DType::kBF16 ? bf16_to_f32(f32_to_bf16(v)) : f16_to_f32(f32_to_f16(v));
      }
      std::vector<float> want(m * heads * n);
      cpu::ref::head_matmul(x.data(), w.data(), dtype, want.data(), m, heads, n, k, nullptr);
      const std::vector<float> got = dy.Download();
      EXPECT_EQ(cpu::compare_close(got.data(), want.data(), want.size(), {1e-4, 1e-4}, n), "");
    }
  }
}

TEST(CudaBackendLatent, KvWriteThenAttentionMatchReference) {
  SY_REQUIRE_GPU();
  auto backend = CudaBackend::Create({});
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  Backend& b = **backend;
  ASSERT_EQ(b.kv_cache_dtype(), DType::kBF16);
  constexpr int kHeads = 16, kLatent = 512, kRope = 64, kBlock = 16, kLen = 100;
  constexpr int64_t kRow = kLatent + kRope;
  // One sequence of kLen positions in blocks 3, 0, 5, ...: written through the backend, then a
  // decode token at the last position and a chunk of three before it.
  const int max_blocks = (kLen + kBlock - 1) / kBlock;
  std::vector<int32_t> table(max_blocks);
  for (int i = 0; i < max_blocks; ++i) table[i] = (3 + 5 * i) % (max_blocks + 2);
  const int64_t slots_total = static_cast<int64_t>(max_blocks + 2) * kBlock;
  std::vector<int64_t> slots(kLen);
  for (int p = 0; p < kLen; ++p)
    slots[p] = static_cast<int64_t>(table[p / kBlock]) * kBlock + p % kBlock;
  const std::vector<float> latent = cpu::random_floats(kLen * kLatent, -1, 1, 1);
  const std::vector<float> rope = cpu::random_floats(kLen * kRope, -1, 1, 2);
  DeviceArray<float> dl(latent);
  DeviceArray<float> dr(rope);
  DeviceArray<int64_t> dslots(slots);
  DeviceArray<uint16_t> cache(slots_total * kRow);
  DeviceArray<int32_t> dtable(table);
  const std::vector<int32_t> seq = {0, 0, 0, 0};
  const std::vector<int32_t> ctx = {97, 98, 99, 100};
  DeviceArray<int32_t> dseq(seq);
  DeviceArray<int32_t> dctx(ctx);
  AttentionMetadata write_md;
  write_md.slots = View(dslots.get(), DType::kI64, 1, kLen);
  write_md.block_size = kBlock;
  b.LatentKvWrite(View(dl.get(), DType::kF32, kLen, kLatent),
                  View(dr.get(), DType::kF32, kLen, kRope), write_md,
                  View(cache.get(), DType::kBF16, slots_total, kRow));

  const int64_t tokens = static_cast<int64_t>(seq.size());
  const std::vector<float> q_latent = cpu::random_floats(tokens * kHeads * kLatent, -0.5, 0.5, 3);
  const std::vector<float> q_rope = cpu::random_floats(tokens * kHeads * kRope, -0.5, 0.5, 4);
  DeviceArray<float> dql(q_latent);
  DeviceArray<float> dqr(q_rope);
  DeviceArray<float> dout(tokens * kHeads * kLatent);
  dout.Poison();
  AttentionMetadata md;
  md.block_tables = View(dtable.get(), DType::kI32, 1, max_blocks);
  md.token_seq = View(dseq.get(), DType::kI32, 1, tokens);
  md.ctx_len = View(dctx.get(), DType::kI32, 1, tokens);
  md.block_size = kBlock;
  const float scale = 1.0f / std::sqrt(192.0f);
  b.LatentAttention(View(dql.get(), DType::kF32, tokens, kHeads * kLatent),
                    View(dqr.get(), DType::kF32, tokens, kHeads * kRope), md,
                    View(cache.get(), DType::kBF16, slots_total, kRow), kHeads, kLatent, kRope,
                    scale, View(dout.get(), DType::kF32, tokens, kHeads * kLatent));
  b.Synchronize();
  ASSERT_TRUE(b.status().ok()) << b.status().ToString();

  // The reference over the same cache rounded to bf16.
  std::vector<float> host_cache(slots_total * kRow, 0.0f);
  cpu::ref::latent_kv_write(latent.data(), rope.data(), kLen, kLatent, kRope, slots.data(),
                            host_cache.data());
  host_cache = RoundToBf16(host_cache);
  cpu::LatentAttentionArgs a;
  std::vector<float> want(tokens * kHeads * kLatent);
  a.q_latent = q_latent.data();
  a.q_rope = q_rope.data();
  a.out = want.data();
  a.cache = host_cache.data();
  a.block_tables = table.data();
  a.token_seq = seq.data();
  a.ctx_len = ctx.data();
  a.tokens = tokens;
  a.n_heads = kHeads;
  a.latent_dim = kLatent;
  a.rope_dim = kRope;
  a.block_size = kBlock;
  a.max_blocks_per_seq = max_blocks;
  a.scale = scale;
  cpu::ref::latent_attention(a, nullptr);
  const std::vector<float> got = dout.Download();
  EXPECT_EQ(cpu::compare_close(got.data(), want.data(), want.size(), kTol, kLatent), "");
}

}  // namespace
}  // namespace sy::cuda
