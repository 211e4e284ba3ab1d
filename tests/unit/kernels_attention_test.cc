// Fast paged attention and kv_write against the reference: GQA ratios 1/2/4, block sizes 1/16/32,
// sliding windows, contexts across block and key-chunk boundaries, every ISA and thread count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cpu/thread_pool.h"

namespace sy::cpu {
namespace {

// Outputs are convex combinations of values in [-1, 1]; the two sides differ in summation order
// and in exp (a vectorised polynomial vs libm), each a few ulp.
constexpr Tolerance kAttentionTolerance{5e-6, 1e-5};

struct Config {
  int n_heads, n_kv_heads, head_dim, block_size, sliding_window;
};

// A paged cache holding several sequences in shuffled blocks, and query tokens at the last
// positions of each (a prefill chunk or a decode step).
class Batch {
 public:
  Batch(const Config& c, const std::vector<int>& seq_lens, int queries_per_seq, uint32_t seed)
      : c_(c) {
    std::mt19937 rng(seed);
    int max_blocks = 0;
    int total_blocks = 0;
    for (int len : seq_lens) {
      const int blocks = (len + c.block_size - 1) / c.block_size;
      max_blocks = std::max(max_blocks, blocks);
      total_blocks += blocks;
    }
    max_blocks_ = max_blocks + 1;  // one spare entry per row, left invalid
    std::vector<int32_t> free_blocks(total_blocks + 3);
    std::iota(free_blocks.begin(), free_blocks.end(), 0);
    std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
    tables_.assign(seq_lens.size() * max_blocks_, -1);
    size_t next = 0;
    for (size_t s = 0; s < seq_lens.size(); ++s) {
      const int blocks = (seq_lens[s] + c.block_size - 1) / c.block_size;
      for (int b = 0; b < blocks; ++b) tables_[s * max_blocks_ + b] = free_blocks[next++];
      for (int q = std::max(0, seq_lens[s] - queries_per_seq); q < seq_lens[s]; ++q) {
        token_seq_.push_back(static_cast<int32_t>(s));
        ctx_len_.push_back(q + 1);
      }
    }
    const size_t cache_size =
        free_blocks.size() * c.block_size * c.n_kv_heads * static_cast<size_t>(c.head_dim);
    k_cache_ = random_floats(cache_size, -1, 1, seed + 1);
    v_cache_ = random_floats(cache_size, -1, 1, seed + 2);
    // Scores spread over several units so that the running max changes between key chunks.
    q_ = random_floats(tokens() * c.n_heads * c.head_dim, -3, 3, seed + 3);
  }

  int64_t tokens() const { return static_cast<int64_t>(token_seq_.size()); }
  int64_t out_size() const { return tokens() * c_.n_heads * c_.head_dim; }

  // Arguments for tokens [first, first + count) writing to out.
  PagedAttentionArgs args(float* out, int64_t first, int64_t count) const {
    PagedAttentionArgs a;
    const int64_t row = static_cast<int64_t>(c_.n_heads) * c_.head_dim;
    a.q = q_.data() + first * row;
    a.out = out;
    a.k_cache = k_cache_.data();
    a.v_cache = v_cache_.data();
    a.block_tables = tables_.data();
    a.token_seq = token_seq_.data() + first;
    a.ctx_len = ctx_len_.data() + first;
    a.tokens = count;
    a.n_heads = c_.n_heads;
    a.n_kv_heads = c_.n_kv_heads;
    a.head_dim = c_.head_dim;
    a.block_size = c_.block_size;
    a.max_blocks_per_seq = max_blocks_;
    a.sliding_window = c_.sliding_window;
    a.scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
    return a;
  }

 private:
  Config c_;
  int max_blocks_ = 0;
  std::vector<int32_t> tables_, token_seq_, ctx_len_;
  std::vector<float> k_cache_, v_cache_, q_;
};

std::vector<Config> configs() {
  std::vector<Config> list;
  const int head_dims[] = {64, 20, 128, 5};
  int i = 0;
  for (auto [heads, kv_heads] : {std::pair{4, 4}, std::pair{4, 2}, std::pair{8, 2}}) {
    for (int block_size : {1, 16, 32}) {
      for (int window : {0, 7, 50}) {
        list.push_back({heads, kv_heads, head_dims[i++ % 4], block_size, window});
      }
    }
  }
  return list;
}

// Sequence lengths around block (16, 32) and key-chunk (64) boundaries.
const std::vector<int> kSeqLens = {1, 15, 16, 17, 33, 64, 65, 130};

std::string describe(const Config& c) {
  return "heads=" + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv_heads) +
         " head_dim=" + std::to_string(c.head_dim) + " block=" + std::to_string(c.block_size) +
         " window=" + std::to_string(c.sliding_window);
}

class KernelsAttention : public testing::Test {
 protected:
  ThreadPool pool2_{2};
  ThreadPool pool3_{3};
};

TEST_F(KernelsAttention, MatchesReference) {
  if (vector_isas().empty()) GTEST_SKIP() << "no vector instruction set on this processor";
  uint32_t seed = 100;
  for (const Config& c : configs()) {
    const Batch batch(c, kSeqLens, 3, seed += 10);
    std::vector<float> want(batch.out_size());
    poison(want);
    ref::paged_attention(batch.args(want.data(), 0, batch.tokens()), nullptr);
    for (Isa isa : vector_isas()) {
      const IsaScope scope(isa);
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2_, &pool3_}) {
        std::vector<float> got(want.size());
        poison(got);
        paged_attention(batch.args(got.data(), 0, batch.tokens()), pool);
        ASSERT_EQ(
            compare_close(got.data(), want.data(), got.size(), kAttentionTolerance, c.head_dim), "")
            << describe(c) << " isa=" << isa_name(isa)
            << " threads=" << (pool != nullptr ? pool->size() : 1);
      }
    }
  }
}

TEST_F(KernelsAttention, TokenIsBitIdenticalAloneOrInBatch) {
  const Config c{8, 2, 64, 16, 0};
  const Batch batch(c, kSeqLens, 4, 3);
  const int64_t row = static_cast<int64_t>(c.n_heads) * c.head_dim;
  for (Isa isa : supported_isas()) {
    const IsaScope scope(isa);
    std::vector<float> all(batch.out_size());
    paged_attention(batch.args(all.data(), 0, batch.tokens()), &pool3_);
    for (int64_t t = 0; t < batch.tokens(); ++t) {
      std::vector<float> one(row);
      poison(one);
      paged_attention(batch.args(one.data(), t, 1), t % 2 == 0 ? nullptr : &pool2_);
      ASSERT_EQ(std::memcmp(one.data(), all.data() + t * row, row * sizeof(float)), 0)
          << "token " << t << " isa=" << isa_name(isa);
    }
  }
}

TEST_F(KernelsAttention, KvWriteMatchesReference) {
  constexpr int64_t kTokens = 9;
  constexpr int64_t kKvDim = 2 * 20;
  constexpr int64_t kSlots = 24;
  const std::vector<float> k = random_floats(kTokens * kKvDim, -1, 1, 1);
  const std::vector<float> v = random_floats(kTokens * kKvDim, -1, 1, 2);
  const std::vector<int64_t> slots = {5, -1, 0, 23, 7, -1, 8, 16, 1};
  std::vector<float> want_k = random_floats(kSlots * kKvDim, -1, 1, 3);
  std::vector<float> want_v = random_floats(kSlots * kKvDim, -1, 1, 4);
  std::vector<float> got_k = want_k;
  std::vector<float> got_v = want_v;
  ref::kv_write(k.data(), v.data(), kTokens, kKvDim, slots.data(), want_k.data(), want_v.data());
  for (Isa isa : vector_isas()) {
    const IsaScope scope(isa);
    kv_write(k.data(), v.data(), kTokens, kKvDim, slots.data(), got_k.data(), got_v.data());
    EXPECT_EQ(got_k, want_k) << isa_name(isa);
    EXPECT_EQ(got_v, want_v) << isa_name(isa);
  }
}

}  // namespace
}  // namespace sy::cpu
