// Tests of the CUDA KV-cache write and paged attention against sy::cpu::ref: decode batches (the
// split-K kernel), prefill chunks and mixed batches (the tiled kernel) over many shapes, f32 and
// bf16 caches, sliding windows and empty contexts; determinism and batch invariance.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cuda/ops.h"
#include "tests/gpu/gpu_testing.h"

namespace sy::cuda {
namespace {

using gpu_testing::DeviceArray;
using gpu_testing::DeviceOk;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// f32 accumulation on both sides, different summation orders: relative 1e-4. A bf16 cache is
// compared against the reference run on the same bf16-rounded values, so the same tolerance.
const cpu::Tolerance kTol = gpu_testing::ToleranceFor(DType::kF32);

::testing::AssertionResult BitEqual(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "sizes " << got.size() << " vs " << want.size();
  }
  for (size_t i = 0; i < got.size(); ++i) {
    uint32_t a;
    uint32_t b;
    std::memcpy(&a, &got[i], 4);
    std::memcpy(&b, &want[i], 4);
    if (a != b) {
      return ::testing::AssertionFailure()
             << "first difference at " << i << ": " << got[i] << " vs " << want[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// ---------------------------------------------------------------------------------------------
// kv_write

void CheckKvWrite(DType dtype, int64_t tokens, int64_t kv_dim, bool misaligned, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << dtype_name(dtype) << " tokens=" << tokens
                                    << " kv_dim=" << kv_dim << " misaligned=" << misaligned);
  const int64_t num_slots = tokens * 2 + 3;
  std::mt19937 rng(seed);
  std::vector<int64_t> perm(num_slots);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  std::vector<int64_t> slots(perm.begin(), perm.begin() + tokens);
  for (int64_t t = 0; t < tokens; t += 5) slots[t] = -1;  // skipped tokens
  // One spare float in front of k and v so that a misaligned view can be passed.
  const std::vector<float> k = cpu::random_floats(tokens * kv_dim + 1, -2, 2, seed + 1);
  const std::vector<float> v = cpu::random_floats(tokens * kv_dim + 1, -2, 2, seed + 2);
  const std::vector<float> k0 = cpu::random_floats(num_slots * kv_dim, -2, 2, seed + 3);
  const std::vector<float> v0 = cpu::random_floats(num_slots * kv_dim, -2, 2, seed + 4);
  const int off = misaligned ? 1 : 0;
  DeviceArray<float> dk(k);
  DeviceArray<float> dv(v);
  DeviceArray<int64_t> dslots(slots);

  std::vector<float> want_k = k0;
  std::vector<float> want_v = v0;
  cpu::ref::kv_write(k.data() + off, v.data() + off, tokens, kv_dim, slots.data(), want_k.data(),
                     want_v.data());
  if (dtype == DType::kF32) {
    DeviceArray<float> kc(k0);
    DeviceArray<float> vc(v0);
    ASSERT_EQ(kv_write(dk.get() + off, dv.get() + off, tokens, kv_dim, dslots.get(), kc.get(),
                       vc.get(), dtype, nullptr),
              cudaSuccess);
    ASSERT_TRUE(DeviceOk());
    EXPECT_TRUE(BitEqual(kc.Download(), want_k));
    EXPECT_TRUE(BitEqual(vc.Download(), want_v));
  } else {
    auto to_bf16 = [](const std::vector<float>& x) {
      std::vector<uint16_t> y(x.size());
      for (size_t i = 0; i < x.size(); ++i) y[i] = f32_to_bf16(x[i]);
      return y;
    };
    DeviceArray<uint16_t> kc(to_bf16(k0));
    DeviceArray<uint16_t> vc(to_bf16(v0));
    ASSERT_EQ(kv_write(dk.get() + off, dv.get() + off, tokens, kv_dim, dslots.get(), kc.get(),
                       vc.get(), dtype, nullptr),
              cudaSuccess);
    ASSERT_TRUE(DeviceOk());
    EXPECT_EQ(kc.Download(), to_bf16(want_k));
    EXPECT_EQ(vc.Download(), to_bf16(want_v));
  }
}

TEST(CudaKvWrite, MatchesReference) {
  SY_REQUIRE_GPU();
  uint32_t seed = 1;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (int64_t tokens : {1, 7, 300}) {
      for (int64_t kv_dim : {1, 4, 37, 130, 256, 1024}) {
        CheckKvWrite(dtype, tokens, kv_dim, /*misaligned=*/false, seed++);
      }
    }
    CheckKvWrite(dtype, 9, 256, /*misaligned=*/true, seed++);  // the scalar path
  }
}

TEST(CudaKvWrite, EmptyAndUnsupported) {
  SY_REQUIRE_GPU();
  EXPECT_EQ(kv_write(nullptr, nullptr, 0, 256, nullptr, nullptr, nullptr, DType::kF32, nullptr),
            cudaSuccess);
  DeviceArray<float> x(64);
  DeviceArray<int64_t> slots(std::vector<int64_t>{0});
  EXPECT_EQ(kv_write(x.get(), x.get(), 1, 32, slots.get(), x.get(), x.get(), DType::kF16, nullptr),
            cudaErrorInvalidValue);
  EXPECT_TRUE(DeviceOk());
}

// ---------------------------------------------------------------------------------------------
// Paged attention

struct Config {
  int n_heads = 8;
  int n_kv_heads = 2;
  int head_dim = 128;
  int block_size = 16;
  int window = 0;
  DType cache = DType::kF32;
  float scale = 0.0f;  // 0: 1 / sqrt(head_dim)

  float attn_scale() const { return scale > 0 ? scale : 1.0f / std::sqrt(float(head_dim)); }
};

std::string Describe(const Config& c) {
  std::ostringstream s;
  s << "heads=" << c.n_heads << "/" << c.n_kv_heads << " head_dim=" << c.head_dim
    << " block_size=" << c.block_size << " window=" << c.window << " cache=" << dtype_name(c.cache)
    << " scale=" << c.attn_scale();
  return s.str();
}

// One call's tokens: sequence and ctx_len of each. Sequence s owns row s of the block table.
struct Tokens {
  std::vector<int32_t> seq;
  std::vector<int32_t> ctx;
  int num_seqs = 0;

  void Add(int32_t s, int32_t c) {
    seq.push_back(s);
    ctx.push_back(c);
    num_seqs = std::max(num_seqs, s + 1);
  }
  // A prefill chunk of n tokens after `prefix` cached positions.
  void AddChunk(int32_t s, int prefix, int n) {
    for (int i = 0; i < n; ++i) Add(s, prefix + i + 1);
  }
  int64_t size() const { return static_cast<int64_t>(seq.size()); }
};

// A paged cache holding every sequence of a Tokens, with shuffled block tables. Positions that no
// token sees, unused table entries (which point to a spare block) and spare blocks hold NaN, so a
// kernel that reads them produces NaN.
struct Problem {
  Config cfg;
  Tokens tokens;
  int max_blocks = 0;
  int64_t num_blocks = 0;
  std::vector<int32_t> tables;  // [num_seqs, max_blocks]
  std::vector<float> k;         // the cache's values as f32 (bf16-rounded for a bf16 cache)
  std::vector<float> v;
  std::vector<uint16_t> k_bf16;  // the bf16 cache
  std::vector<uint16_t> v_bf16;
  std::vector<float> q;  // [tokens, n_heads, head_dim]
};

std::pair<int, int> Visible(const Config& c, int ctx) {
  const int first = c.window > 0 ? std::max(0, ctx - c.window) : 0;
  return {first, std::max(ctx, 0)};
}

Problem MakeProblem(const Config& cfg, const Tokens& tokens, uint32_t seed, int extra_blocks = 0) {
  Problem p;
  p.cfg = cfg;
  p.tokens = tokens;
  const int bs = cfg.block_size;
  const int ns = tokens.num_seqs;
  std::vector<int> len(ns, 0);
  for (int64_t t = 0; t < tokens.size(); ++t) {
    len[tokens.seq[t]] = std::max(len[tokens.seq[t]], static_cast<int>(tokens.ctx[t]));
  }
  std::vector<int> blocks(ns);
  int total = 0;
  for (int s = 0; s < ns; ++s) {
    blocks[s] = (len[s] + bs - 1) / bs;
    p.max_blocks = std::max(p.max_blocks, blocks[s]);
    total += blocks[s];
  }
  p.max_blocks = std::max(1, p.max_blocks + extra_blocks);
  p.num_blocks = total + 3;
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(p.num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  const int32_t spare = ids.back();
  p.tables.assign(static_cast<size_t>(ns) * p.max_blocks, spare);
  int next = 0;
  for (int s = 0; s < ns; ++s) {
    for (int b = 0; b < blocks[s]; ++b) p.tables[s * p.max_blocks + b] = ids[next++];
  }

  const int64_t row = static_cast<int64_t>(cfg.n_kv_heads) * cfg.head_dim;
  p.k.assign(p.num_blocks * bs * row, kNaN);
  p.v.assign(p.num_blocks * bs * row, kNaN);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int s = 0; s < ns; ++s) {
    std::vector<bool> seen(len[s], false);
    for (int64_t t = 0; t < tokens.size(); ++t) {
      if (tokens.seq[t] != s) continue;
      const auto [first, ctx] = Visible(cfg, tokens.ctx[t]);
      for (int pos = first; pos < ctx; ++pos) seen[pos] = true;
    }
    for (int pos = 0; pos < len[s]; ++pos) {
      if (!seen[pos]) continue;
      const int64_t slot =
          static_cast<int64_t>(p.tables[s * p.max_blocks + pos / bs]) * bs + pos % bs;
      for (int64_t d = 0; d < row; ++d) {
        p.k[slot * row + d] = dist(rng);
        p.v[slot * row + d] = dist(rng);
      }
    }
  }
  if (cfg.cache == DType::kBF16) {
    p.k_bf16.resize(p.k.size());
    p.v_bf16.resize(p.v.size());
    for (size_t i = 0; i < p.k.size(); ++i) {
      p.k_bf16[i] = f32_to_bf16(p.k[i]);
      p.v_bf16[i] = f32_to_bf16(p.v[i]);
      p.k[i] = bf16_to_f32(p.k_bf16[i]);
      p.v[i] = bf16_to_f32(p.v_bf16[i]);
    }
  }
  p.q = cpu::random_floats(tokens.size() * cfg.n_heads * cfg.head_dim, -1.0f, 1.0f, seed + 7);
  return p;
}

std::vector<float> Reference(const Problem& p) {
  std::vector<float> out(p.q.size(), kNaN);
  cpu::PagedAttentionArgs a;
  a.q = p.q.data();
  a.out = out.data();
  a.k_cache = p.k.data();
  a.v_cache = p.v.data();
  a.block_tables = p.tables.data();
  a.token_seq = p.tokens.seq.data();
  a.ctx_len = p.tokens.ctx.data();
  a.tokens = p.tokens.size();
  a.n_heads = p.cfg.n_heads;
  a.n_kv_heads = p.cfg.n_kv_heads;
  a.head_dim = p.cfg.head_dim;
  a.block_size = p.cfg.block_size;
  a.max_blocks_per_seq = p.max_blocks;
  a.sliding_window = p.cfg.window;
  a.scale = p.cfg.attn_scale();
  cpu::ref::paged_attention(a, nullptr);
  return out;
}

template <typename T>
std::vector<uint8_t> Bytes(const std::vector<T>& x) {
  std::vector<uint8_t> b(x.size() * sizeof(T));
  std::memcpy(b.data(), x.data(), b.size());
  return b;
}

// Runs sy::cuda::paged_attention on p (output poisoned first). num_seqs < 0: the table's rows.
::testing::AssertionResult RunCuda(const Problem& p, std::vector<float>* out, int num_seqs = -1) {
  const bool bf16 = p.cfg.cache == DType::kBF16;
  DeviceArray<uint8_t> k(bf16 ? Bytes(p.k_bf16) : Bytes(p.k));
  DeviceArray<uint8_t> v(bf16 ? Bytes(p.v_bf16) : Bytes(p.v));
  DeviceArray<float> q(p.q);
  DeviceArray<float> o(p.q.size());
  DeviceArray<int32_t> tables(p.tables);
  DeviceArray<int32_t> seq(p.tokens.seq);
  DeviceArray<int32_t> ctx(p.tokens.ctx);
  const size_t scratch_bytes =
      paged_attention_scratch_bytes(p.tokens.size(), p.cfg.n_heads, p.cfg.head_dim);
  DeviceArray<uint8_t> scratch(scratch_bytes);
  o.Poison();
  scratch.Poison();
  PagedAttentionArgs a;
  a.q = q.get();
  a.out = o.get();
  a.k_cache = k.get();
  a.v_cache = v.get();
  a.cache_dtype = p.cfg.cache;
  a.block_tables = tables.get();
  a.token_seq = seq.get();
  a.ctx_len = ctx.get();
  a.tokens = p.tokens.size();
  a.num_seqs = num_seqs >= 0 ? num_seqs : p.tokens.num_seqs;
  a.n_heads = p.cfg.n_heads;
  a.n_kv_heads = p.cfg.n_kv_heads;
  a.head_dim = p.cfg.head_dim;
  a.block_size = p.cfg.block_size;
  a.max_blocks_per_seq = p.max_blocks;
  a.sliding_window = p.cfg.window;
  a.scale = p.cfg.attn_scale();
  a.scratch = scratch.get();
  const cudaError_t err = paged_attention(a, nullptr);
  if (err != cudaSuccess) {
    return ::testing::AssertionFailure() << "paged_attention: " << cudaGetErrorString(err);
  }
  if (::testing::AssertionResult ok = DeviceOk(); !ok) return ok;
  *out = o.Download();
  return ::testing::AssertionSuccess();
}

// The CUDA result against the reference; `num_seqs` as RunCuda.
void Check(const Config& cfg, const Tokens& tokens, uint32_t seed, int num_seqs = -1,
           int extra_blocks = 0) {
  SCOPED_TRACE(::testing::Message() << Describe(cfg) << " tokens=" << tokens.size()
                                    << " seqs=" << tokens.num_seqs << " seed=" << seed);
  const Problem p = MakeProblem(cfg, tokens, seed, extra_blocks);
  std::vector<float> got;
  ASSERT_TRUE(RunCuda(p, &got, num_seqs));
  const std::vector<float> want = Reference(p);
  EXPECT_EQ(cpu::compare_close(got.data(), want.data(), static_cast<int64_t>(want.size()), kTol,
                               cfg.head_dim),
            "");
}

// One token per sequence (decode-shaped), in shuffled order, with the given contexts.
Tokens DecodeTokens(const std::vector<int>& contexts, uint32_t seed) {
  std::vector<int32_t> seqs(contexts.size());
  std::iota(seqs.begin(), seqs.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(seqs.begin(), seqs.end(), rng);
  Tokens t;
  for (size_t i = 0; i < contexts.size(); ++i) t.Add(seqs[i], contexts[i]);
  return t;
}

std::vector<int> RandomContexts(int n, int lo, int hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(lo, hi);
  std::vector<int> c(n);
  for (int& x : c) x = dist(rng);
  return c;
}

// Every supported head_dim (16 and 32: the tiny test models and golden fixtures).
const int kHeadDims[] = {16, 32, 64, 128, 256};

// The (n_heads, n_kv_heads) pairs: group sizes 1, 4 and 8.
const std::pair<int, int> kGqa[] = {{4, 4}, {8, 2}, {16, 2}};

TEST(CudaPagedAttention, Decode) {
  SY_REQUIRE_GPU();
  // Contexts around tile (32) and split (128) boundaries, then random ones up to 3000.
  const std::vector<int> edges = {1, 2, 31, 32, 33, 127, 128, 129, 3000};
  const int seq_counts[] = {1, 5, 17, 64};
  uint32_t seed = 100;
  int round = 0;
  for (int head_dim : kHeadDims) {
    for (DType cache : {DType::kF32, DType::kBF16}) {
      for (const auto& [heads, kv_heads] : kGqa) {
        Config cfg;
        cfg.n_heads = heads;
        cfg.n_kv_heads = kv_heads;
        cfg.head_dim = head_dim;
        cfg.cache = cache;
        cfg.block_size = round % 2 == 0 ? 16 : 32;
        const int n = seq_counts[round % 4];
        std::vector<int> ctx = RandomContexts(n, 1, 3000, seed);
        for (int i = 0; i < n && i < static_cast<int>(edges.size()); ++i) {
          ctx[i] = edges[(i + round) % edges.size()];
        }
        Check(cfg, DecodeTokens(ctx, seed), seed);
        ++seed;
        ++round;
      }
    }
  }
}

TEST(CudaPagedAttention, DecodeOddGroupsWindowsAndScales) {
  SY_REQUIRE_GPU();
  struct Case {
    int heads, kv_heads, head_dim, block_size, window;
    DType cache;
    float scale;
  };
  const Case cases[] = {
      {12, 4, 128, 16, 0, DType::kF32, 0},      // group 3: a padding row
      {10, 2, 64, 32, 0, DType::kBF16, 0},      // group 5
      {16, 1, 128, 16, 0, DType::kF32, 0},      // group 16: two chunks of 8 heads
      {24, 2, 64, 16, 0, DType::kBF16, 0},      // group 12: chunks of 8 and 4
      {8, 2, 128, 16, 1, DType::kF32, 0},       // window 1: one key
      {8, 2, 128, 32, 100, DType::kBF16, 0},    // window inside one split
      {8, 1, 256, 16, 1000, DType::kF32, 0},    // window over several splits
      {8, 2, 128, 16, 0, DType::kF32, 0.5f},    // sharp softmax: large score range
      {4, 4, 64, 32, 77, DType::kBF16, 0.75f},  // sharp, windowed
      {6, 2, 16, 16, 0, DType::kF32, 0},        // head_dim 16, group 3
      {12, 2, 32, 32, 50, DType::kBF16, 0},     // head_dim 32, group 6, windowed
      {16, 1, 16, 16, 0, DType::kBF16, 0.5f},   // head_dim 16, two chunks of 8, sharp
  };
  uint32_t seed = 200;
  for (const Case& c : cases) {
    Config cfg{c.heads, c.kv_heads, c.head_dim, c.block_size, c.window, c.cache, c.scale};
    std::vector<int> ctx = RandomContexts(9, 1, 3000, seed);
    ctx[0] = 1;
    ctx[1] = 1000;
    ctx[2] = 1001;
    Check(cfg, DecodeTokens(ctx, seed), seed);
    ++seed;
  }
}

TEST(CudaPagedAttention, EmptyContextsGiveZeros) {
  SY_REQUIRE_GPU();
  Config cfg;
  uint32_t seed = 300;
  for (DType cache : {DType::kF32, DType::kBF16}) {
    cfg.cache = cache;
    Check(cfg, DecodeTokens({0}, seed), seed);  // one token, nothing visible
    ++seed;
    Check(cfg, DecodeTokens({5, 0, 700, 0, 1}, seed), seed);  // decode batch
    ++seed;
    Tokens mixed;  // tiled kernel: empty tokens inside and between chunks
    mixed.AddChunk(0, 3, 20);
    mixed.Add(1, 0);
    mixed.Add(2, 40);
    mixed.Add(0, 0);
    mixed.AddChunk(3, 0, 9);
    Check(cfg, mixed, seed);
    ++seed;
  }
}

// One sequence: a chunk of n tokens after `prefix` cached positions (n == 1 is decode-shaped).
TEST(CudaPagedAttention, PrefillChunk) {
  SY_REQUIRE_GPU();
  struct Case {
    int n, prefix, heads, kv_heads, head_dim;
    DType cache;
    int block_size;
  };
  // Long chunks with few heads and small head_dim keep the CPU reference quick.
  const Case cases[] = {
      {1, 0, 8, 2, 128, DType::kF32, 16},     {1, 500, 16, 2, 256, DType::kBF16, 32},
      {2, 0, 4, 4, 64, DType::kBF16, 16},     {2, 17, 16, 2, 128, DType::kF32, 32},
      {5, 17, 8, 2, 256, DType::kF32, 16},    {5, 500, 4, 4, 64, DType::kBF16, 32},
      {33, 0, 16, 2, 64, DType::kF32, 16},    {33, 17, 8, 2, 128, DType::kBF16, 32},
      {33, 500, 4, 4, 256, DType::kF32, 16},  {257, 0, 8, 2, 128, DType::kBF16, 16},
      {257, 17, 16, 2, 64, DType::kF32, 32},  {257, 500, 4, 4, 256, DType::kBF16, 16},
      {1000, 0, 4, 4, 128, DType::kF32, 16},  {1000, 17, 8, 2, 64, DType::kBF16, 32},
      {1000, 500, 4, 4, 64, DType::kF32, 16}, {1, 0, 4, 2, 16, DType::kF32, 16},
      {7, 30, 4, 2, 16, DType::kBF16, 16},    {300, 0, 4, 2, 16, DType::kF32, 32},
      {2, 0, 4, 2, 32, DType::kBF16, 16},     {65, 100, 8, 4, 32, DType::kF32, 16},
      {1000, 17, 4, 4, 32, DType::kBF16, 32},
  };
  uint32_t seed = 400;
  for (const Case& c : cases) {
    Config cfg;
    cfg.n_heads = c.heads;
    cfg.n_kv_heads = c.kv_heads;
    cfg.head_dim = c.head_dim;
    cfg.cache = c.cache;
    cfg.block_size = c.block_size;
    Tokens t;
    t.AddChunk(0, c.prefix, c.n);
    Check(cfg, t, seed);
    ++seed;
  }
}

TEST(CudaPagedAttention, PrefillAllShapes) {
  SY_REQUIRE_GPU();
  uint32_t seed = 500;
  for (int head_dim : kHeadDims) {
    for (DType cache : {DType::kF32, DType::kBF16}) {
      for (const auto& [heads, kv_heads] : kGqa) {
        Config cfg;
        cfg.n_heads = heads;
        cfg.n_kv_heads = kv_heads;
        cfg.head_dim = head_dim;
        cfg.cache = cache;
        cfg.block_size = seed % 2 == 0 ? 16 : 32;
        Tokens t;  // several sequences back to back
        t.AddChunk(0, 0, 37);
        t.AddChunk(1, 100, 3);
        t.AddChunk(2, 31, 70);
        t.AddChunk(3, 0, 1);
        Check(cfg, t, seed);
        ++seed;
      }
    }
  }
}

TEST(CudaPagedAttention, PrefillWindowsAndOddGroups) {
  SY_REQUIRE_GPU();
  uint32_t seed = 600;
  for (int window : {1, 16, 50, 333}) {
    for (const auto& [heads, kv_heads] : {std::pair{12, 4}, std::pair{10, 2}, std::pair{40, 1}}) {
      Config cfg;
      cfg.n_heads = heads;
      cfg.n_kv_heads = kv_heads;
      cfg.head_dim = heads == 40 ? (window == 16 ? 16 : 64) : seed % 2 == 1 ? 32 : 128;
      cfg.cache = seed % 3 == 0 ? DType::kBF16 : DType::kF32;
      cfg.window = window;
      cfg.scale = seed % 4 == 0 ? 0.5f : 0.0f;
      Tokens t;
      t.AddChunk(0, 200, 300);
      t.AddChunk(1, 0, 45);
      Check(cfg, t, seed);
      ++seed;
    }
  }
}

// Tokens of one sequence in one tile whose windows do not chain: the tile is walked token by
// token, and the positions between the windows (which no token sees) hold NaN.
TEST(CudaPagedAttention, SameSequenceDisjointWindows) {
  SY_REQUIRE_GPU();
  uint32_t seed = 700;
  for (DType cache : {DType::kF32, DType::kBF16}) {
    Config cfg;
    cfg.n_heads = 4;
    cfg.n_kv_heads = 4;  // group 1: 32 tokens per tile
    cfg.cache = cache;
    cfg.window = 40;
    Tokens t;
    for (int c : {10, 2000, 11, 3000, 500, 501, 1200}) t.Add(0, c);
    Check(cfg, t, seed);
    ++seed;
  }
}

TEST(CudaPagedAttention, MixedBatches) {
  SY_REQUIRE_GPU();
  uint32_t seed = 800;
  for (int head_dim : kHeadDims) {
    for (DType cache : {DType::kF32, DType::kBF16}) {
      Config cfg;
      cfg.n_heads = 16;
      cfg.n_kv_heads = head_dim == 128 ? 2 : 4;
      cfg.head_dim = head_dim;
      cfg.cache = cache;
      cfg.block_size = head_dim == 64 || head_dim == 16 ? 32 : 16;
      cfg.window = head_dim == 256 || head_dim == 32 ? 600 : 0;
      Tokens t;
      t.Add(0, 2999);  // decode
      t.AddChunk(1, 64, 77);
      t.Add(2, 1);
      t.Add(3, 1500);
      t.AddChunk(4, 0, 130);
      t.Add(5, 33);
      Check(cfg, t, seed);
      ++seed;
    }
  }
}

// A table wider than the sequences need, and the decode path forced off (num_seqs unknown).
TEST(CudaPagedAttention, WideTablesAndUnknownSeqCount) {
  SY_REQUIRE_GPU();
  Config cfg;
  uint32_t seed = 900;
  const Tokens t = DecodeTokens(RandomContexts(12, 1, 2000, seed), seed);
  Check(cfg, t, seed, -1, /*extra_blocks=*/300);
  Check(cfg, t, seed + 1, /*num_seqs=*/0);
}

TEST(CudaPagedAttention, Unsupported) {
  SY_REQUIRE_GPU();
  EXPECT_EQ(paged_attention_scratch_bytes(0, 8, 128), 0u);
  EXPECT_GT(paged_attention_scratch_bytes(1, 8, 128), 0u);
  // The scratch is bounded: decode calls run in launches of at most 64 tokens.
  EXPECT_EQ(paged_attention_scratch_bytes(100000, 8, 128),
            paged_attention_scratch_bytes(64, 8, 128));
  PagedAttentionArgs a;
  EXPECT_EQ(paged_attention(a, nullptr), cudaSuccess);  // zero tokens
  DeviceArray<float> buf(1 << 16);
  DeviceArray<int32_t> ints(64);
  DeviceArray<uint8_t> scratch(paged_attention_scratch_bytes(2, 8, 256));
  a.q = buf.get();
  a.out = buf.get();
  a.k_cache = buf.get();
  a.v_cache = buf.get();
  a.block_tables = ints.get();
  a.token_seq = ints.get();
  a.ctx_len = ints.get();
  a.tokens = 2;
  a.num_seqs = 2;
  a.n_heads = 8;
  a.n_kv_heads = 2;
  a.block_size = 16;
  a.max_blocks_per_seq = 1;
  a.scratch = scratch.get();
  for (int head_dim : {0, 8, 48, 96, 112, 512}) {
    a.head_dim = head_dim;
    EXPECT_EQ(paged_attention(a, nullptr), cudaErrorInvalidValue) << head_dim;
  }
  a.head_dim = 128;
  a.cache_dtype = DType::kF16;
  EXPECT_EQ(paged_attention(a, nullptr), cudaErrorInvalidValue);
  a.cache_dtype = DType::kF32;
  a.n_kv_heads = 3;  // 8 % 3 != 0
  EXPECT_EQ(paged_attention(a, nullptr), cudaErrorInvalidValue);
  a.n_kv_heads = 2;
  a.scratch = nullptr;  // a decode call needs scratch
  EXPECT_EQ(paged_attention(a, nullptr), cudaErrorInvalidValue);
  EXPECT_TRUE(DeviceOk());
}

// The attention shapes of the tiny presets and golden fixtures (hidden 64 or 256): 4/2 and 4/4
// heads of 16, 4/2 and 8/4 heads of 32. Group 2 runs the 2-warp decode kernel.
TEST(CudaPagedAttention, TinyModelShapes) {
  SY_REQUIRE_GPU();
  struct Shape {
    int heads, kv_heads, head_dim;
  };
  const Shape shapes[] = {{4, 2, 16}, {4, 4, 16}, {4, 2, 32}, {8, 4, 32}};
  uint32_t seed = 950;
  for (const Shape& sh : shapes) {
    for (DType cache : {DType::kF32, DType::kBF16}) {
      Config cfg;
      cfg.n_heads = sh.heads;
      cfg.n_kv_heads = sh.kv_heads;
      cfg.head_dim = sh.head_dim;
      cfg.cache = cache;
      cfg.block_size = 16;
      Check(cfg, DecodeTokens({1, 2, 17, 33, 200, 129}, seed), seed);
      ++seed;
      Tokens prefill;
      prefill.AddChunk(0, 0, 40);
      Check(cfg, prefill, seed);
      ++seed;
      Tokens mixed;
      mixed.Add(0, 41);
      mixed.AddChunk(1, 5, 12);
      mixed.Add(2, 1);
      Check(cfg, mixed, seed);
      ++seed;
    }
  }
}

TEST(CudaPagedAttention, Deterministic) {
  SY_REQUIRE_GPU();
  uint32_t seed = 1000;
  for (DType cache : {DType::kF32, DType::kBF16}) {
    Config cfg;
    cfg.cache = cache;
    Tokens decode = DecodeTokens(RandomContexts(20, 1, 3000, seed), seed);
    Tokens prefill;
    prefill.AddChunk(0, 100, 300);
    prefill.Add(1, 2500);
    for (const Tokens& t : {decode, prefill}) {
      const Problem p = MakeProblem(cfg, t, seed);
      std::vector<float> a;
      std::vector<float> b;
      ASSERT_TRUE(RunCuda(p, &a));
      ASSERT_TRUE(RunCuda(p, &b));
      EXPECT_TRUE(BitEqual(a, b));
      ++seed;
    }
  }
}

// The problem restricted to some of its tokens, over the same cache; `narrow`: their sequences
// renumbered and the table cut to the width they need (so max_blocks_per_seq changes too).
Problem Subset(const Problem& p, const std::vector<int64_t>& keep, bool narrow) {
  Problem s = p;
  s.tokens = Tokens();
  s.q.clear();
  const int64_t qrow = static_cast<int64_t>(p.cfg.n_heads) * p.cfg.head_dim;
  std::vector<int32_t> rows;  // old sequence of each new one
  for (int64_t t : keep) {
    int32_t seq = p.tokens.seq[t];
    if (narrow) {
      auto it = std::find(rows.begin(), rows.end(), seq);
      if (it == rows.end()) {
        rows.push_back(seq);
        it = rows.end() - 1;
      }
      seq = static_cast<int32_t>(it - rows.begin());
    }
    s.tokens.Add(seq, p.tokens.ctx[t]);
    s.q.insert(s.q.end(), p.q.begin() + t * qrow, p.q.begin() + (t + 1) * qrow);
  }
  if (narrow) {
    int width = 1;
    for (int64_t i = 0; i < s.tokens.size(); ++i) {
      width = std::max(width, (s.tokens.ctx[i] + p.cfg.block_size - 1) / p.cfg.block_size);
    }
    s.max_blocks = width;
    s.tables.clear();
    for (int32_t r : rows) {
      s.tables.insert(s.tables.end(), p.tables.begin() + r * p.max_blocks,
                      p.tables.begin() + r * p.max_blocks + width);
    }
  } else {
    s.tokens.num_seqs = p.tokens.num_seqs;
  }
  return s;
}

std::vector<float> Rows(const Problem& p, const std::vector<float>& out,
                        const std::vector<int64_t>& tokens) {
  const int64_t row = static_cast<int64_t>(p.cfg.n_heads) * p.cfg.head_dim;
  std::vector<float> r;
  for (int64_t t : tokens) r.insert(r.end(), out.begin() + t * row, out.begin() + (t + 1) * row);
  return r;
}

// Decode: a token's result does not depend on the other tokens, on the number of tokens (even
// past one launch of 64) or on max_blocks_per_seq; the split count depends on its context only.
TEST(CudaPagedAttention, DecodeBatchInvariance) {
  SY_REQUIRE_GPU();
  uint32_t seed = 1100;
  for (DType cache : {DType::kF32, DType::kBF16}) {
    Config cfg;
    cfg.cache = cache;
    cfg.block_size = 16;
    std::vector<int> ctx = RandomContexts(70, 1, 3000, seed);
    ctx[3] = 5;
    const Problem all = MakeProblem(cfg, DecodeTokens(ctx, seed), seed, /*extra_blocks=*/50);
    std::vector<float> out_all;
    ASSERT_TRUE(RunCuda(all, &out_all));
    EXPECT_EQ(cpu::compare_close(out_all.data(), Reference(all).data(),
                                 static_cast<int64_t>(out_all.size()), kTol, cfg.head_dim),
              "");
    for (int64_t t : {0, 3, 41, 66, 69}) {
      SCOPED_TRACE(::testing::Message() << "token " << t << " alone");
      const Problem alone = Subset(all, {t}, /*narrow=*/true);
      std::vector<float> out;
      ASSERT_TRUE(RunCuda(alone, &out));
      EXPECT_TRUE(BitEqual(out, Rows(all, out_all, {t})));
    }
    // Some tokens over the full table: still one query per sequence, so the split-K path.
    const std::vector<int64_t> some = {69, 2, 3, 50, 10, 11, 12};
    const Problem part = Subset(all, some, /*narrow=*/false);
    std::vector<float> out;
    ASSERT_TRUE(RunCuda(part, &out, /*num_seqs=*/static_cast<int>(some.size())));
    EXPECT_TRUE(BitEqual(out, Rows(all, out_all, some)));
    ++seed;
  }
}

// Tiled kernel: a prefill chunk alone (whole tiles of its own tokens) gives the same bits as
// inside a mixed batch where it starts mid-tile and shares tiles with other sequences.
TEST(CudaPagedAttention, PrefillBatchInvariance) {
  SY_REQUIRE_GPU();
  uint32_t seed = 1200;
  for (int head_dim : kHeadDims) {
    for (int group_heads : {4, 16}) {  // groups of 1 and 8: 32 and 4 tokens per tile
      Config cfg;
      cfg.n_heads = group_heads;
      cfg.n_kv_heads = group_heads == 4 ? 4 : 2;
      cfg.head_dim = head_dim;
      cfg.cache = seed % 2 == 0 ? DType::kF32 : DType::kBF16;
      cfg.window = seed % 3 == 0 ? 70 : 0;
      Tokens t;
      t.Add(0, 900);
      t.Add(1, 3);
      t.Add(2, 77);
      t.AddChunk(3, 40, 101);  // tokens 3..103
      t.Add(4, 1);
      t.AddChunk(5, 0, 9);
      const Problem all = MakeProblem(cfg, t, seed);
      std::vector<float> out_all;
      ASSERT_TRUE(RunCuda(all, &out_all));
      std::vector<int64_t> chunk(101);
      std::iota(chunk.begin(), chunk.end(), 3);
      const Problem alone = Subset(all, chunk, /*narrow=*/true);
      std::vector<float> out;
      ASSERT_TRUE(RunCuda(alone, &out));
      EXPECT_TRUE(BitEqual(out, Rows(all, out_all, chunk))) << Describe(cfg);
      ++seed;
    }
  }
}

// A decode token whose visible keys fit in one split (at most 4 tiles of 32 keys) goes through
// the same arithmetic in either kernel: decode-shaped call == the same tokens in a tiled call.
TEST(CudaPagedAttention, OneSplitDecodeMatchesTiledKernel) {
  SY_REQUIRE_GPU();
  uint32_t seed = 1300;
  for (int head_dim : kHeadDims) {
    for (DType cache : {DType::kF32, DType::kBF16}) {
      Config cfg;
      cfg.head_dim = head_dim;
      cfg.cache = cache;
      std::vector<int> ctx = RandomContexts(10, 1, 96, seed);
      ctx[0] = 1;
      ctx[1] = 96;
      const Problem p = MakeProblem(cfg, DecodeTokens(ctx, seed), seed);
      std::vector<float> decode;
      std::vector<float> tiled;
      ASSERT_TRUE(RunCuda(p, &decode));
      ASSERT_TRUE(RunCuda(p, &tiled, /*num_seqs=*/0));
      EXPECT_TRUE(BitEqual(tiled, decode)) << Describe(cfg);
      ++seed;
    }
  }
}

}  // namespace
}  // namespace sy::cuda
