// Latent attention (DeepSeek MLA, absorbed form): the reference against attention computed the
// expanded way in this file (per-head keys and values built from W_UK, W_UV and the latents), the
// fast ops against the reference over paged batches of several sequences (non-contiguous blocks,
// prefill chunks and decode tokens together, empty contexts, contexts cut into pieces), batch
// invariance, and head_matmul / latent_kv_write against the reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/latent_ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cpu/thread_pool.h"

namespace sy::cpu {
namespace {

// f32 on both sides, different summation orders (and piece merges) and exp implementations.
constexpr Tolerance kAttentionTolerance{5e-6, 2e-5};

struct Shape {
  int heads, latent_dim, rope_dim, block_size;
};

std::string describe(const Shape& s) {
  return "heads=" + std::to_string(s.heads) + " latent=" + std::to_string(s.latent_dim) +
         " rope=" + std::to_string(s.rope_dim) + " block=" + std::to_string(s.block_size);
}

// One query token: its sequence and how many positions it sees.
struct Query {
  int seq, ctx;
};

// A latent cache holding sequences in shuffled blocks (with spare blocks between them), and the
// query tokens of one call.
class LatentBatch {
 public:
  LatentBatch(const Shape& s, const std::vector<int>& seq_lens, const std::vector<Query>& queries,
              uint32_t seed)
      : s_(s) {
    std::mt19937 rng(seed);
    int total_blocks = 0;
    for (int len : seq_lens) {
      const int blocks = (len + s.block_size - 1) / s.block_size;
      max_blocks_ = std::max(max_blocks_, blocks);
      total_blocks += blocks;
    }
    max_blocks_ += 1;  // a spare, invalid entry per row
    std::vector<int32_t> free_blocks(total_blocks + 5);
    std::iota(free_blocks.begin(), free_blocks.end(), 0);
    std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
    tables_.assign(seq_lens.size() * max_blocks_, -1);
    size_t next = 0;
    for (size_t q = 0; q < seq_lens.size(); ++q) {
      const int blocks = (seq_lens[q] + s.block_size - 1) / s.block_size;
      for (int b = 0; b < blocks; ++b) tables_[q * max_blocks_ + b] = free_blocks[next++];
    }
    for (const Query& q : queries) {
      token_seq_.push_back(q.seq);
      ctx_len_.push_back(q.ctx);
    }
    slots_ = static_cast<int64_t>(free_blocks.size()) * s.block_size;
    cache_ = random_floats(slots_ * row(), -1, 1, seed + 1);
    q_latent_ = random_floats(tokens() * s.heads * s.latent_dim, -0.5, 0.5, seed + 2);
    q_rope_ = random_floats(tokens() * s.heads * s.rope_dim, -0.5, 0.5, seed + 3);
  }

  int64_t row() const { return s_.latent_dim + s_.rope_dim; }
  int64_t tokens() const { return static_cast<int64_t>(token_seq_.size()); }
  int64_t out_size() const { return tokens() * s_.heads * s_.latent_dim; }
  int64_t slot_of(int seq, int p) const {
    return static_cast<int64_t>(tables_[seq * max_blocks_ + p / s_.block_size]) * s_.block_size +
           p % s_.block_size;
  }
  std::vector<float>& cache() { return cache_; }
  int64_t slots() const { return slots_; }

  // Arguments for tokens [first, first + count) writing to out.
  LatentAttentionArgs args(float* out, int64_t first, int64_t count) const {
    LatentAttentionArgs a;
    a.q_latent = q_latent_.data() + first * s_.heads * s_.latent_dim;
    a.q_rope = q_rope_.data() + first * s_.heads * s_.rope_dim;
    a.out = out;
    a.cache = cache_.data();
    a.block_tables = tables_.data();
    a.token_seq = token_seq_.data() + first;
    a.ctx_len = ctx_len_.data() + first;
    a.tokens = count;
    a.n_heads = s_.heads;
    a.latent_dim = s_.latent_dim;
    a.rope_dim = s_.rope_dim;
    a.block_size = s_.block_size;
    a.max_blocks_per_seq = max_blocks_;
    a.scale = 1.0f / std::sqrt(static_cast<float>(s_.latent_dim / 4 + s_.rope_dim));
    return a;
  }

  // Overwrites the query rows (for callers that compute them).
  void set_queries(std::vector<float> q_latent, std::vector<float> q_rope) {
    q_latent_ = std::move(q_latent);
    q_rope_ = std::move(q_rope);
  }

 private:
  Shape s_;
  int max_blocks_ = 0;
  int64_t slots_ = 0;
  std::vector<int32_t> tables_, token_seq_, ctx_len_;
  std::vector<float> cache_, q_latent_, q_rope_;
};

// A prefill chunk of sequence 0 (positions 7..12 of a 13-long prompt), decode tokens of the others
// (each at its last position), and a token with nothing visible.
std::vector<Query> mixed_queries(const std::vector<int>& seq_lens) {
  std::vector<Query> queries;
  for (int p = 7; p < 13; ++p) queries.push_back({0, p + 1});
  for (size_t s = 1; s < seq_lens.size(); ++s)
    queries.push_back({static_cast<int>(s), seq_lens[s]});
  queries.push_back({1, 0});
  return queries;
}

// --------------------------------------------------------------------------------------------
// The absorbed form equals the expanded one.

TEST(LatentAttention, AbsorbedFormEqualsExpandedAttention) {
  constexpr int kHeads = 3, kLatent = 24, kRope = 8, kNope = 16, kV = 12, kBlock = 4;
  const std::vector<int> seq_lens = {13, 30, 9};
  const Shape shape{kHeads, kLatent, kRope, kBlock};
  LatentBatch batch(shape, seq_lens, mixed_queries(seq_lens), 7);
  const int64_t tokens = batch.tokens();
  // kv_b_proj [H*(nope+v), L]: per head W_UK_h (nope rows), then W_UV_h (v rows).
  const std::vector<float> kv_b = random_floats(kHeads * (kNope + kV) * kLatent, -0.3, 0.3, 11);
  auto w_uk = [&](int h, int i, int l) { return kv_b[(h * (kNope + kV) + i) * kLatent + l]; };
  auto w_uv = [&](int h, int i, int l) {
    return kv_b[(h * (kNope + kV) + kNope + i) * kLatent + l];
  };
  const std::vector<float> q_nope = random_floats(tokens * kHeads * kNope, -1, 1, 12);
  const std::vector<float> q_pe = random_floats(tokens * kHeads * kRope, -1, 1, 13);
  // The cache through latent_kv_write: each sequence's latents c and roped keys k_pe.
  const int64_t positions = std::accumulate(seq_lens.begin(), seq_lens.end(), int64_t{0});
  const std::vector<float> latents = random_floats(positions * kLatent, -1, 1, 14);
  const std::vector<float> k_pe = random_floats(positions * kRope, -1, 1, 15);
  std::vector<int64_t> slots;
  std::vector<std::vector<int64_t>> index_of(seq_lens.size());  // (seq, pos) -> row of latents
  for (size_t s = 0; s < seq_lens.size(); ++s) {
    for (int p = 0; p < seq_lens[s]; ++p) {
      index_of[s].push_back(static_cast<int64_t>(slots.size()));
      slots.push_back(batch.slot_of(static_cast<int>(s), p));
    }
  }
  ref::latent_kv_write(latents.data(), k_pe.data(), positions, kLatent, kRope, slots.data(),
                       batch.cache().data());
  const float scale = 1.0f / std::sqrt(static_cast<float>(kNope + kRope));

  // Expanded: keys (W_UK_h c_p, k_pe_p), values W_UV_h c_p, ordinary softmax attention, in double.
  const std::vector<Query> queries = mixed_queries(seq_lens);
  std::vector<float> want(tokens * kHeads * kV, 0.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    const Query q = queries[t];
    for (int h = 0; h < kHeads; ++h) {
      std::vector<double> scores(q.ctx);
      double max_score = -INFINITY;
      for (int p = 0; p < q.ctx; ++p) {
        const float* c = latents.data() + index_of[q.seq][p] * kLatent;
        double dot = 0.0;
        for (int i = 0; i < kNope; ++i) {
          double key = 0.0;
          for (int l = 0; l < kLatent; ++l) key += static_cast<double>(w_uk(h, i, l)) * c[l];
          dot += q_nope[(t * kHeads + h) * kNope + i] * key;
        }
        for (int r = 0; r < kRope; ++r) {
          dot += static_cast<double>(q_pe[(t * kHeads + h) * kRope + r]) *
                 k_pe[index_of[q.seq][p] * kRope + r];
        }
        scores[p] = dot * scale;
        max_score = std::max(max_score, scores[p]);
      }
      double total = 0.0;
      for (double& s : scores) total += (s = std::exp(s - max_score));
      for (int i = 0; i < kV; ++i) {
        double v = 0.0;
        for (int p = 0; p < q.ctx; ++p) {
          const float* c = latents.data() + index_of[q.seq][p] * kLatent;
          double value = 0.0;
          for (int l = 0; l < kLatent; ++l) value += static_cast<double>(w_uv(h, i, l)) * c[l];
          v += scores[p] / total * value;
        }
        want[(t * kHeads + h) * kV + i] = static_cast<float>(v);
      }
    }
  }

  // Absorbed, with the weights prepared as the model does at load: W_UK_h^T as head h's [L, nope]
  // matrix, W_UV_h as head h's [v, L] matrix.
  std::vector<float> w_q(kHeads * kLatent * kNope);
  std::vector<float> w_o(kHeads * kV * kLatent);
  for (int h = 0; h < kHeads; ++h) {
    for (int l = 0; l < kLatent; ++l) {
      for (int i = 0; i < kNope; ++i) w_q[(h * kLatent + l) * kNope + i] = w_uk(h, i, l);
    }
    for (int i = 0; i < kV; ++i) {
      for (int l = 0; l < kLatent; ++l) w_o[(h * kV + i) * kLatent + l] = w_uv(h, i, l);
    }
  }
  ThreadPool pool(2);
  for (bool fast : {false, true}) {
    std::vector<float> q_latent(tokens * kHeads * kLatent);
    std::vector<float> o_latent(tokens * kHeads * kLatent);
    std::vector<float> got(want.size());
    poison(o_latent);
    poison(got);
    (fast ? head_matmul : ref::head_matmul)(q_nope.data(), w_q.data(), DType::kF32, q_latent.data(),
                                            tokens, kHeads, kLatent, kNope, &pool);
    batch.set_queries(q_latent, q_pe);
    LatentAttentionArgs a = batch.args(o_latent.data(), 0, tokens);
    a.scale = scale;
    (fast ? latent_attention : ref::latent_attention)(a, &pool);
    (fast ? head_matmul : ref::head_matmul)(o_latent.data(), w_o.data(), DType::kF32, got.data(),
                                            tokens, kHeads, kV, kLatent, &pool);
    EXPECT_EQ(compare_close(got.data(), want.data(), got.size(), {1e-5, 1e-4}, kV), "")
        << (fast ? "fast" : "reference");
  }
}

// --------------------------------------------------------------------------------------------
// Fast against the reference.

class KernelsLatentAttention : public testing::Test {
 protected:
  ThreadPool pool2_{2};
  ThreadPool pool3_{3};
};

TEST_F(KernelsLatentAttention, MatchesReference) {
  if (vector_isas().empty()) GTEST_SKIP() << "no vector instruction set on this processor";
  // Lengths across block, key-chunk (16) and piece (256; 16 pieces above 4096) boundaries.
  const std::vector<int> seq_lens = {13, 1, 17, 64, 300, 513, 4500};
  std::vector<Query> queries = mixed_queries(seq_lens);
  queries.push_back({6, 4097});
  queries.push_back({5, 256});
  uint32_t seed = 40;
  for (const Shape& shape :
       {Shape{16, 64, 16, 16}, Shape{3, 32, 8, 1}, Shape{5, 40, 12, 7}, Shape{1, 512, 64, 64}}) {
    const LatentBatch batch(shape, seq_lens, queries, seed += 10);
    std::vector<float> want(batch.out_size());
    poison(want);
    ref::latent_attention(batch.args(want.data(), 0, batch.tokens()), nullptr);
    for (Isa isa : vector_isas()) {
      const IsaScope scope(isa);
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2_, &pool3_}) {
        std::vector<float> got(want.size());
        poison(got);
        latent_attention(batch.args(got.data(), 0, batch.tokens()), pool);
        ASSERT_EQ(compare_close(got.data(), want.data(), got.size(), kAttentionTolerance,
                                shape.latent_dim),
                  "")
            << describe(shape) << " isa=" << isa_name(isa)
            << " threads=" << (pool != nullptr ? pool->size() : 1);
      }
    }
  }
}

TEST_F(KernelsLatentAttention, TokenIsBitIdenticalAloneOrInBatch) {
  const Shape shape{6, 64, 16, 16};
  const std::vector<int> seq_lens = {13, 40, 700, 1100};
  const LatentBatch batch(shape, seq_lens, mixed_queries(seq_lens), 5);
  const int64_t row = static_cast<int64_t>(shape.heads) * shape.latent_dim;
  for (Isa isa : supported_isas()) {
    const IsaScope scope(isa);
    std::vector<float> all(batch.out_size());
    latent_attention(batch.args(all.data(), 0, batch.tokens()), &pool3_);
    for (int64_t t = 0; t < batch.tokens(); ++t) {
      std::vector<float> one(row);
      poison(one);
      latent_attention(batch.args(one.data(), t, 1), t % 2 == 0 ? nullptr : &pool2_);
      ASSERT_EQ(std::memcmp(one.data(), all.data() + t * row, row * sizeof(float)), 0)
          << "token " << t << " isa=" << isa_name(isa);
    }
  }
}

TEST_F(KernelsLatentAttention, KvWriteMatchesReference) {
  constexpr int64_t kTokens = 9, kLatent = 40, kRope = 8, kSlots = 24;
  const std::vector<float> latent = random_floats(kTokens * kLatent, -1, 1, 1);
  const std::vector<float> rope = random_floats(kTokens * kRope, -1, 1, 2);
  const std::vector<int64_t> slots = {5, -1, 0, 23, 7, -1, 8, 16, 1};
  std::vector<float> want = random_floats(kSlots * (kLatent + kRope), -1, 1, 3);
  const std::vector<float> before = want;
  ref::latent_kv_write(latent.data(), rope.data(), kTokens, kLatent, kRope, slots.data(),
                       want.data());
  // The reference itself: slot 23 holds token 3's latent then its rope; slot 2 is untouched.
  EXPECT_EQ(want[23 * (kLatent + kRope)], latent[3 * kLatent]);
  EXPECT_EQ(want[23 * (kLatent + kRope) + kLatent + 1], rope[3 * kRope + 1]);
  EXPECT_EQ(want[2 * (kLatent + kRope) + 4], before[2 * (kLatent + kRope) + 4]);
  for (Isa isa : supported_isas()) {
    const IsaScope scope(isa);
    std::vector<float> got = before;
    latent_kv_write(latent.data(), rope.data(), kTokens, kLatent, kRope, slots.data(), got.data());
    EXPECT_EQ(got, want) << isa_name(isa);
  }
}

// --------------------------------------------------------------------------------------------
// head_matmul.

TEST(HeadMatMul, ReferenceIsPerHeadMatmul) {
  // y[t, h*n + j] = sum_i x[t, h*k + i] w[h*n + j, i], worked by hand for m = 2, heads = 2,
  // n = 2, k = 2: x rows (1, 2 | 3, 4) and (5, 6 | 7, 8); head 0's w rows (1, 0), (0, 1), head 1's
  // (1, 1), (2, -1).
  const std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<float> w = {1, 0, 0, 1, 1, 1, 2, -1};
  std::vector<float> y(2 * 2 * 2);
  ref::head_matmul(x.data(), w.data(), DType::kF32, y.data(), 2, 2, 2, 2, nullptr);
  EXPECT_EQ(y, (std::vector<float>{1, 2, 7, 2, 5, 6, 15, 6}));
}

TEST(HeadMatMul, FastMatchesReference) {
  if (vector_isas().empty()) GTEST_SKIP() << "no vector instruction set on this processor";
  ThreadPool pool(2);
  uint32_t seed = 1;
  struct Case {
    int64_t m, heads, n, k;
  };
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16, DType::kI8}) {
    for (const Case& c : {Case{1, 3, 64, 32}, Case{5, 4, 37, 19}, Case{300, 2, 20, 16},
                          Case{2, 16, 128, 64}, Case{1, 1, 5, 7}}) {
      const Weights w = random_weight_matrix(dtype, c.heads * c.n, c.k, -1, 1, ++seed);
      const std::vector<float> x = random_floats(c.m * c.heads * c.k, -1, 1, ++seed);
      std::vector<float> want(c.m * c.heads * c.n);
      poison(want);
      ref::head_matmul(x.data(), w.data(), dtype, want.data(), c.m, c.heads, c.n, c.k, nullptr);
      for (Isa isa : vector_isas()) {
        const IsaScope scope(isa);
        for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
          std::vector<float> got(want.size());
          poison(got);
          head_matmul(x.data(), w.data(), dtype, got.data(), c.m, c.heads, c.n, c.k, p);
          ASSERT_EQ(compare_close(got.data(), want.data(), got.size(), {1e-5, 1e-5}, c.n), "")
              << dtype_name(dtype) << " m=" << c.m << " heads=" << c.heads << " n=" << c.n
              << " k=" << c.k << " isa=" << isa_name(isa);
        }
      }
    }
  }
}

}  // namespace
}  // namespace sy::cpu
