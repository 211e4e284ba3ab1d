// KV caches in bf16 and fp8 (kF8Row: e4m3fn rows with one f32 scale each): the row conversions
// of kernels/kv_rows.h, kv_write / latent_kv_write against the reference (same bytes), and the
// fast paged and latent attention against the reference reading the same cache, for every ISA
// and thread count, and a token's paged attention bit-identical alone or in a batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/latent_ops.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/kv_rows.h"

namespace sy::cpu {
namespace {

// Both sides read the same cache bytes and decode them exactly; they differ in summation order,
// in where a row's scale multiplies (after the dot product vs per element) and in exp.
constexpr Tolerance kAttentionTolerance{1e-5, 2e-5};

const DType kCacheDTypes[] = {DType::kF32, DType::kBF16, DType::kF8Row};

std::string name(DType t) { return std::string(dtype_name(t)); }

TEST(KvRows, RowBytesCarryTheScale) {
  EXPECT_EQ(dtype_row_bytes(DType::kF32, 128), 512u);
  EXPECT_EQ(dtype_row_bytes(DType::kBF16, 128), 256u);
  EXPECT_EQ(dtype_row_bytes(DType::kF8Row, 128), 132u);
  EXPECT_TRUE(is_kv_cache_dtype(DType::kF8Row));
  EXPECT_FALSE(is_kv_cache_dtype(DType::kF8));
  EXPECT_FALSE(is_kv_cache_dtype(DType::kI8));
}

TEST(KvRows, RoundTripsWithinTheElementPrecision) {
  // Magnitudes over 12 orders, so that a per-tensor scale of 1 would overflow e4m3 (> 448) or
  // flush to zero (< 2^-9); a per-row scale keeps every row in range.
  for (float magnitude : {1e-6f, 1e-2f, 1.0f, 3e3f, 1e6f}) {
    const std::vector<float> x = random_floats(96, -magnitude, magnitude, 5);
    float max_abs = 0;
    for (float v : x) max_abs = std::max(max_abs, std::fabs(v));
    for (DType t : kCacheDTypes) {
      std::vector<uint8_t> row(dtype_row_bytes(t, 96));
      write_kv_row(x.data(), 96, t, row.data());
      for (int64_t i = 0; i < 96; ++i) {
        const float got = kv_row_value(row.data(), t, i);
        // Round to nearest: half an ulp of the element format (3 mantissa bits for e4m3, 7 for
        // bf16), relative to the value; e4m3 subnormals step by 2^-9 of the scale.
        const double bound = t == DType::kF32    ? 0.0
                             : t == DType::kBF16 ? std::fabs(x[i]) / 256.0
                                                 : std::fabs(x[i]) / 16.0 + max_abs / 448 / 1024;
        EXPECT_LE(std::fabs(got - x[i]), bound)
            << name(t) << " magnitude " << magnitude << " " << i;
      }
    }
    // The row's largest magnitude is e4m3's largest, 448 times the scale.
    std::vector<uint8_t> row(dtype_row_bytes(DType::kF8Row, 96));
    write_kv_row(x.data(), 96, DType::kF8Row, row.data());
    EXPECT_FLOAT_EQ(kv_row_scale(row.data()), max_abs / 448.0f);
  }
}

TEST(KvRows, AllZeroRowIsZeroWithScaleZero) {
  const std::vector<float> zeros(40, 0.0f);
  std::vector<uint8_t> row(dtype_row_bytes(DType::kF8Row, 40), 0xff);
  write_kv_row(zeros.data(), 40, DType::kF8Row, row.data());
  EXPECT_EQ(kv_row_scale(row.data()), 0.0f);
  for (int64_t i = 0; i < 40; ++i) EXPECT_EQ(kv_row_value(row.data(), DType::kF8Row, i), 0.0f);
}

TEST(KvRows, KvWriteMatchesReferenceBytes) {
  constexpr int64_t kTokens = 9, kKvDim = 2 * 20, kSlots = 24;
  const std::vector<float> k = random_floats(kTokens * kKvDim, -1, 1, 1);
  const std::vector<float> v = random_floats(kTokens * kKvDim, -1, 1, 2);
  const std::vector<int64_t> slots = {5, -1, 0, 23, 7, -1, 8, 16, 1};
  for (DType t : kCacheDTypes) {
    const size_t bytes = kSlots * dtype_row_bytes(t, kKvDim);
    std::vector<uint8_t> want_k(bytes, 0x5a), want_v(bytes, 0xa5);
    ref::kv_write(k.data(), v.data(), kTokens, kKvDim, slots.data(), want_k.data(), want_v.data(),
                  t);
    for (Isa isa : vector_isas()) {
      const IsaScope scope(isa);
      std::vector<uint8_t> got_k(bytes, 0x5a), got_v(bytes, 0xa5);
      kv_write(k.data(), v.data(), kTokens, kKvDim, slots.data(), got_k.data(), got_v.data(), t);
      EXPECT_EQ(got_k, want_k) << name(t) << " " << isa_name(isa);
      EXPECT_EQ(got_v, want_v) << name(t) << " " << isa_name(isa);
    }
  }
}

TEST(KvRows, LatentKvWriteIsOneRowPerToken) {
  constexpr int64_t kTokens = 4, kLatent = 24, kRope = 8, kSlots = 6;
  const std::vector<float> latent = random_floats(kTokens * kLatent, -2, 2, 3);
  const std::vector<float> rope = random_floats(kTokens * kRope, -0.1f, 0.1f, 4);
  const std::vector<int64_t> slots = {3, -1, 0, 5};
  for (DType t : kCacheDTypes) {
    const size_t row_bytes = dtype_row_bytes(t, kLatent + kRope);
    std::vector<uint8_t> want(kSlots * row_bytes, 0x11);
    ref::latent_kv_write(latent.data(), rope.data(), kTokens, kLatent, kRope, slots.data(),
                         want.data(), t);
    // The reference writes the joined row as write_kv_row does.
    std::vector<float> joined(latent.begin(), latent.begin() + kLatent);
    joined.insert(joined.end(), rope.begin(), rope.begin() + kRope);
    std::vector<uint8_t> row(row_bytes);
    write_kv_row(joined.data(), kLatent + kRope, t, row.data());
    EXPECT_TRUE(std::equal(row.begin(), row.end(), want.begin() + 3 * row_bytes)) << name(t);
    for (Isa isa : vector_isas()) {
      const IsaScope scope(isa);
      std::vector<uint8_t> got(kSlots * row_bytes, 0x11);
      latent_kv_write(latent.data(), rope.data(), kTokens, kLatent, kRope, slots.data(), got.data(),
                      t);
      EXPECT_EQ(got, want) << name(t) << " " << isa_name(isa);
    }
  }
}

// Sequences in shuffled blocks of a paged cache of one dtype, filled through ref::kv_write, and
// query tokens at the last positions of each.
class PagedBatch {
 public:
  PagedBatch(DType dtype, int heads, int kv_heads, int head_dim, int block_size,
             const std::vector<int>& seq_lens, uint32_t seed)
      : dtype_(dtype), heads_(heads), kv_heads_(kv_heads), head_dim_(head_dim), block_(block_size) {
    std::mt19937 rng(seed);
    int total_blocks = 0;
    for (int len : seq_lens) {
      max_blocks_ = std::max(max_blocks_, (len + block_size - 1) / block_size);
      total_blocks += (len + block_size - 1) / block_size;
    }
    std::vector<int32_t> blocks(total_blocks);
    std::iota(blocks.begin(), blocks.end(), 0);
    std::shuffle(blocks.begin(), blocks.end(), rng);
    tables_.assign(seq_lens.size() * max_blocks_, -1);
    const int64_t kv_dim = static_cast<int64_t>(kv_heads) * head_dim;
    const int64_t slots = static_cast<int64_t>(total_blocks) * block_size;
    k_.assign(slots * dtype_row_bytes(dtype, kv_dim), 0);
    v_.assign(k_.size(), 0);
    size_t next = 0;
    for (size_t s = 0; s < seq_lens.size(); ++s) {
      const int n = (seq_lens[s] + block_size - 1) / block_size;
      for (int b = 0; b < n; ++b) tables_[s * max_blocks_ + b] = blocks[next++];
      std::vector<int64_t> seq_slots(seq_lens[s]);
      for (int p = 0; p < seq_lens[s]; ++p) {
        seq_slots[p] =
            static_cast<int64_t>(tables_[s * max_blocks_ + p / block_size]) * block_size +
            p % block_size;
      }
      // Rows of different magnitudes, as a model's keys have.
      const float magnitude = 0.05f + 2.0f * static_cast<float>(s);
      const auto k = random_floats(seq_lens[s] * kv_dim, -magnitude, magnitude, seed + 10 + s);
      const auto v = random_floats(seq_lens[s] * kv_dim, -1, 1, seed + 20 + s);
      ref::kv_write(k.data(), v.data(), seq_lens[s], kv_dim, seq_slots.data(), k_.data(), v_.data(),
                    dtype);
      for (int q = std::max(0, seq_lens[s] - 3); q < seq_lens[s]; ++q) {
        token_seq_.push_back(static_cast<int32_t>(s));
        ctx_len_.push_back(q + 1);
      }
    }
    q_ = random_floats(tokens() * heads * head_dim, -3, 3, seed + 3);
  }

  int64_t tokens() const { return static_cast<int64_t>(token_seq_.size()); }
  int64_t out_size() const { return tokens() * heads_ * head_dim_; }

  // Arguments for tokens [first, first + count) (all of them by default) writing to out.
  PagedAttentionArgs args(float* out, int64_t first = 0, int64_t count = -1) const {
    PagedAttentionArgs a;
    a.q = q_.data() + first * heads_ * head_dim_;
    a.out = out;
    a.k_cache = k_.data();
    a.v_cache = v_.data();
    a.cache_dtype = dtype_;
    a.block_tables = tables_.data();
    a.token_seq = token_seq_.data() + first;
    a.ctx_len = ctx_len_.data() + first;
    a.tokens = count < 0 ? tokens() : count;
    a.n_heads = heads_;
    a.n_kv_heads = kv_heads_;
    a.head_dim = head_dim_;
    a.block_size = block_;
    a.max_blocks_per_seq = max_blocks_;
    a.scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));
    return a;
  }

 private:
  DType dtype_;
  int heads_, kv_heads_, head_dim_, block_, max_blocks_ = 0;
  std::vector<int32_t> tables_, token_seq_, ctx_len_;
  std::vector<uint8_t> k_, v_;
  std::vector<float> q_;
};

struct PagedShape {
  int heads, kv_heads, head_dim, block_size;
};

TEST(KvCacheDType, PagedAttentionMatchesReference) {
  if (vector_isas().empty()) GTEST_SKIP() << "no vector instruction set on this processor";
  ThreadPool pool2(2), pool3(3);
  const std::vector<int> seq_lens = {1, 17, 65, 130};
  uint32_t seed = 40;
  for (DType t : kCacheDTypes) {
    for (const PagedShape& s : {PagedShape{4, 4, 64, 16}, PagedShape{8, 2, 20, 1},
                                PagedShape{4, 2, 128, 32}, PagedShape{2, 1, 5, 16}}) {
      const PagedBatch batch(t, s.heads, s.kv_heads, s.head_dim, s.block_size, seq_lens, seed += 7);
      std::vector<float> want(batch.out_size());
      poison(want);
      ref::paged_attention(batch.args(want.data()), nullptr);
      for (Isa isa : vector_isas()) {
        const IsaScope scope(isa);
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
          std::vector<float> got(want.size());
          poison(got);
          paged_attention(batch.args(got.data()), pool);
          ASSERT_EQ(
              compare_close(got.data(), want.data(), got.size(), kAttentionTolerance, s.head_dim),
              "")
              << name(t) << " heads " << s.heads << "/" << s.kv_heads << " dim " << s.head_dim
              << " isa " << isa_name(isa);
        }
      }
    }
  }
}

// A token's output is the same bits alone or in a batch, on any thread count, whatever the
// cache dtype (per-row scales are applied the same way for every token).
TEST(KvCacheDType, TokenIsBitIdenticalAloneOrInBatch) {
  ThreadPool pool2(2), pool3(3);
  for (DType t : {DType::kBF16, DType::kF8Row}) {
    const PagedBatch batch(t, 8, 2, 64, 16, {17, 65, 130}, 9);
    const int64_t row = 8 * 64;
    for (Isa isa : supported_isas()) {
      const IsaScope scope(isa);
      std::vector<float> all(batch.out_size());
      paged_attention(batch.args(all.data()), &pool3);
      for (int64_t token = 0; token < batch.tokens(); ++token) {
        std::vector<float> one(row);
        poison(one);
        paged_attention(batch.args(one.data(), token, 1), token % 2 == 0 ? nullptr : &pool2);
        ASSERT_EQ(std::memcmp(one.data(), all.data() + token * row, row * sizeof(float)), 0)
            << name(t) << " token " << token << " isa " << isa_name(isa);
      }
    }
  }
}

// Latent rows of a paged cache of one dtype, written through ref::latent_kv_write.
TEST(KvCacheDType, LatentAttentionMatchesReference) {
  if (vector_isas().empty()) GTEST_SKIP() << "no vector instruction set on this processor";
  ThreadPool pool2(2), pool3(3);
  struct Shape {
    int heads, latent_dim, rope_dim, block_size;
  };
  for (DType t : kCacheDTypes) {
    for (const Shape& s : {Shape{16, 512, 64, 16}, Shape{3, 24, 8, 4}, Shape{5, 72, 12, 1}}) {
      const std::vector<int> seq_lens = {13, 70, 9};
      const int max_blocks = (70 + s.block_size - 1) / s.block_size;
      const int total_blocks = 3 * max_blocks;
      std::vector<int32_t> blocks(total_blocks);
      std::iota(blocks.begin(), blocks.end(), 0);
      std::shuffle(blocks.begin(), blocks.end(), std::mt19937(3));
      std::vector<int32_t> tables(blocks.begin(), blocks.end());  // sequence i: row i
      const int64_t row = s.latent_dim + s.rope_dim;
      std::vector<uint8_t> cache(static_cast<size_t>(total_blocks) * s.block_size *
                                 dtype_row_bytes(t, row));
      std::vector<int32_t> token_seq, ctx_len;
      for (int q = 0; q < 3; ++q) {
        const int len = seq_lens[q];
        std::vector<int64_t> slots(len);
        for (int p = 0; p < len; ++p) {
          slots[p] =
              static_cast<int64_t>(tables[q * max_blocks + p / s.block_size]) * s.block_size +
              p % s.block_size;
        }
        const auto latent = random_floats(len * s.latent_dim, -1, 1, 50 + q);
        const auto rope = random_floats(len * s.rope_dim, -3, 3, 60 + q);
        ref::latent_kv_write(latent.data(), rope.data(), len, s.latent_dim, s.rope_dim,
                             slots.data(), cache.data(), t);
        for (int p : {len - 2, len - 1, len}) {
          token_seq.push_back(q);
          ctx_len.push_back(p);
        }
      }
      const int64_t tokens = static_cast<int64_t>(token_seq.size());
      const auto q_latent = random_floats(tokens * s.heads * s.latent_dim, -0.5, 0.5, 70);
      const auto q_rope = random_floats(tokens * s.heads * s.rope_dim, -0.5, 0.5, 71);
      auto args = [&](float* out) {
        LatentAttentionArgs a;
        a.q_latent = q_latent.data();
        a.q_rope = q_rope.data();
        a.out = out;
        a.cache = cache.data();
        a.cache_dtype = t;
        a.block_tables = tables.data();
        a.token_seq = token_seq.data();
        a.ctx_len = ctx_len.data();
        a.tokens = tokens;
        a.n_heads = s.heads;
        a.latent_dim = s.latent_dim;
        a.rope_dim = s.rope_dim;
        a.block_size = s.block_size;
        a.max_blocks_per_seq = max_blocks;
        a.scale = 1.0f / std::sqrt(static_cast<float>(s.latent_dim / 4 + s.rope_dim));
        return a;
      };
      std::vector<float> want(tokens * s.heads * s.latent_dim);
      poison(want);
      ref::latent_attention(args(want.data()), nullptr);
      for (Isa isa : vector_isas()) {
        const IsaScope scope(isa);
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
          std::vector<float> got(want.size());
          poison(got);
          latent_attention(args(got.data()), pool);
          ASSERT_EQ(
              compare_close(got.data(), want.data(), got.size(), kAttentionTolerance, s.latent_dim),
              "")
              << name(t) << " heads " << s.heads << " latent " << s.latent_dim << " isa "
              << isa_name(isa);
        }
      }
    }
  }
}

}  // namespace
}  // namespace sy::cpu
