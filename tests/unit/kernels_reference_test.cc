// Hand-worked cases for every CPU op: the expected values are computed by hand here, so they are
// an oracle independent of the reference. Run with Isa::kScalar (= sy::cpu::ref) and every ISA.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cpu/thread_pool.h"

namespace sy::cpu {
namespace {

constexpr float kTol = 1e-6f;

class KernelsHandWorked : public testing::TestWithParam<Isa> {
 protected:
  IsaScope isa_{GetParam()};
  ThreadPool pool_{2};
};

void expect_near_all(const std::vector<float>& got, const std::vector<float>& want,
                     float tol = kTol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "index " << i;
}

TEST_P(KernelsHandWorked, MatmulSmallIntegersEveryDtype) {
  // x = [[1, 2], [3, 4]], w = [[1, 0], [0, 1], [1, 1]] (n=3, k=2), bias = [0.5, 0, -1].
  const std::vector<float> x = {1, 2, 3, 4};
  const std::vector<float> w = {1, 0, 0, 1, 1, 1};
  const std::vector<float> bias = {0.5f, 0.0f, -1.0f};
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    std::vector<uint16_t> half(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      half[i] = dtype == DType::kBF16 ? f32_to_bf16(w[i]) : f32_to_f16(w[i]);
    }
    const void* wp = dtype == DType::kF32 ? static_cast<const void*>(w.data()) : half.data();
    std::vector<float> y(6);
    poison(y);
    matmul(x.data(), wp, dtype, bias.data(), y.data(), 2, 3, 2, &pool_);
    expect_near_all(y, {1.5f, 2.0f, 2.0f, 3.5f, 4.0f, 6.0f});
    poison(y);
    matmul(x.data(), wp, dtype, nullptr, y.data(), 2, 3, 2, nullptr);
    expect_near_all(y, {1.0f, 2.0f, 3.0f, 3.0f, 4.0f, 7.0f});
  }
}

TEST_P(KernelsHandWorked, MatmulEmptyInnerDimensionGivesBias) {
  const std::vector<float> bias = {2.0f, -3.0f};
  std::vector<float> y(2);
  poison(y);
  matmul(nullptr, nullptr, DType::kF32, bias.data(), y.data(), 1, 2, 0, nullptr);
  expect_near_all(y, bias);
}

TEST_P(KernelsHandWorked, EmbeddingConvertsRows) {
  // Table rows (dim 2): [1, -2], [0.5, 3], [-4, 0.25]; all exact in bf16 and f16.
  const std::vector<float> table = {1, -2, 0.5f, 3, -4, 0.25f};
  const std::vector<int32_t> ids = {2, 0, 2};
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    std::vector<uint16_t> half(table.size());
    for (size_t i = 0; i < table.size(); ++i) {
      half[i] = dtype == DType::kBF16 ? f32_to_bf16(table[i]) : f32_to_f16(table[i]);
    }
    const void* tp = dtype == DType::kF32 ? static_cast<const void*>(table.data()) : half.data();
    std::vector<float> out(6);
    poison(out);
    embedding(ids.data(), 3, tp, dtype, 2, out.data(), &pool_);
    expect_near_all(out, {-4, 0.25f, 1, -2, -4, 0.25f});
  }
}

TEST_P(KernelsHandWorked, RmsNormOfThreeFour) {
  // mean(x^2) = (9 + 16) / 2 = 12.5, so y = x / sqrt(12.5) * w.
  const std::vector<float> x = {3, 4};
  const float rms = std::sqrt(12.5f);
  std::vector<float> y(2);
  poison(y);
  rms_norm(x.data(), std::vector<float>{1, 1}.data(), y.data(), 1, 2, 0.0f, &pool_);
  expect_near_all(y, {3 / rms, 4 / rms});
  poison(y);
  rms_norm(x.data(), std::vector<float>{2, 0.5f}.data(), y.data(), 1, 2, 0.0f, &pool_);
  expect_near_all(y, {6 / rms, 2 / rms});
  // eps joins the mean: x = [1, 1], eps = 3 gives 1 / sqrt(4).
  std::vector<float> ones = {1, 1};
  rms_norm(ones.data(), ones.data(), ones.data(), 1, 2, 3.0f, nullptr);  // in place
  expect_near_all(ones, {0.5f, 0.5f});
}

TEST_P(KernelsHandWorked, AddRmsNormUpdatesResidual) {
  std::vector<float> residual = {1, 2};
  const std::vector<float> x = {2, 2};
  std::vector<float> y(2);
  poison(y);
  add_rms_norm(residual.data(), x.data(), std::vector<float>{1, 1}.data(), y.data(), 1, 2, 0.0f,
               &pool_);
  expect_near_all(residual, {3, 4});
  expect_near_all(y, {3 / std::sqrt(12.5f), 4 / std::sqrt(12.5f)});
}

TEST_P(KernelsHandWorked, RopeRotatesByNinetyDegrees) {
  // One token at position 1, head_dim 6, rotary_dim 4: pairs (0, 2) and (1, 3).
  // inv_freq[0] = pi/2 turns pair (0, 2) by 90 degrees: (a, b) -> (-b, a); inv_freq[1] = 0
  // leaves pair (1, 3); dims 4, 5 are past rotary_dim. attn_scale 2 doubles what rotates.
  std::vector<float> x = {1, 5, 2, 7, 9, 11};
  const std::vector<float> inv_freq = {std::numbers::pi_v<float> / 2, 0.0f};
  const std::vector<int32_t> positions = {1};
  rope_neox(x.data(), 1, 1, 6, 4, positions.data(), inv_freq.data(), 2.0f, &pool_);
  expect_near_all(x, {-4, 10, 2, 14, 9, 11}, 1e-5f);
  // Position 0 is the identity (times attn_scale).
  std::vector<float> y = {1, 5, 2, 7};
  const std::vector<int32_t> zero = {0};
  rope_neox(y.data(), 1, 1, 4, 4, zero.data(), inv_freq.data(), 1.0f, nullptr);
  expect_near_all(y, {1, 5, 2, 7});
}

TEST_P(KernelsHandWorked, RopeInterleavedRotatesAdjacentPairs) {
  // The case above with the pairs adjacent: (0, 1) turns by 90 degrees, (2, 3) by 0; dims 4, 5
  // are past rotary_dim. attn_scale 2 doubles what rotates.
  std::vector<float> x = {1, 2, 5, 7, 9, 11};
  const std::vector<float> inv_freq = {std::numbers::pi_v<float> / 2, 0.0f};
  const std::vector<int32_t> positions = {1};
  rope_interleaved(x.data(), 1, 1, 6, 4, positions.data(), inv_freq.data(), 2.0f, &pool_);
  expect_near_all(x, {-4, 2, 10, 14, 9, 11}, 1e-5f);
  // Two heads, position 2 at inv_freq pi/4: 90 degrees again, in each head.
  std::vector<float> two = {1, 0, 0, 1, 3, 4, 5, 6};
  const std::vector<float> quarter = {std::numbers::pi_v<float> / 4};
  const std::vector<int32_t> at2 = {2};
  rope_interleaved(two.data(), 1, 2, 4, 2, at2.data(), quarter.data(), 1.0f, nullptr);
  expect_near_all(two, {0, 1, 0, 1, -4, 3, 5, 6}, 1e-5f);
}

TEST_P(KernelsHandWorked, SiluMulAndSigmoid) {
  // silu(g) = g * sigmoid(g); sigmoid(ln 3) = 3/4, sigmoid(0) = 1/2, sigmoid(-ln 3) = 1/4.
  const float ln3 = std::log(3.0f);
  const std::vector<float> gate_up = {0, ln3, -ln3, /*up:*/ 5, 2, 4};
  std::vector<float> out(3);
  poison(out);
  silu_mul(gate_up.data(), out.data(), 1, 3, &pool_);
  expect_near_all(out, {0, ln3 * 0.75f * 2, -ln3 * 0.25f * 4});
  std::vector<float> s = {0, ln3, -ln3};
  sigmoid(s.data(), 3);
  expect_near_all(s, {0.5f, 0.75f, 0.25f});
}

TEST_P(KernelsHandWorked, SoftmaxRows) {
  // Row 0 is [0, ln 3, 1, 1]: exps 1, 3, e, e. Row 1 is shifted by 5: exps 1, 1, 3, 3.
  const float ln3 = std::log(3.0f);
  std::vector<float> x = {0, ln3, 1, 1, 5, 5, 5 + ln3, 5 + ln3};
  softmax(x.data(), 2, 4);
  const float e = std::exp(1.0f);
  const float total = 4 + 2 * e;
  expect_near_all(x, {1 / total, 3 / total, e / total, e / total, 0.125f, 0.125f, 0.375f, 0.375f});
}

TEST_P(KernelsHandWorked, SoftmaxRouteBreaksTiesToLowerId) {
  // Probabilities [1/8, 3/8, 3/8, 1/8]: experts 1 and 2 tie, then 0 and 3 tie.
  const float ln3 = std::log(3.0f);
  const std::vector<float> logits = {0, ln3, ln3, 0};
  std::vector<int32_t> ids(3, -7);
  std::vector<float> weights(3);
  RouterArgs args;
  args.k = 3;
  poison(weights);
  route(logits.data(), 1, 4, args, ids.data(), weights.data());
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 2, 0}));
  expect_near_all(weights, {0.375f, 0.375f, 0.125f});
  poison(weights);
  args.renormalize = true;
  route(logits.data(), 1, 4, args, ids.data(), weights.data());
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 2, 0}));
  expect_near_all(weights, {3.0f / 7, 3.0f / 7, 1.0f / 7});
  // All equal: ascending ids.
  const std::vector<float> flat = {2, 2, 2, 2, 2};
  std::vector<int32_t> ids2(2);
  std::vector<float> w2(2);
  args.k = 2;
  route(flat.data(), 1, 5, args, ids2.data(), w2.data());
  EXPECT_EQ(ids2, (std::vector<int32_t>{0, 1}));
  expect_near_all(w2, {0.5f, 0.5f});
}

TEST_P(KernelsHandWorked, KvWriteSkipsNegativeSlots) {
  const std::vector<float> k = {1, 2, 3, 4, 5, 6};  // 3 tokens, kv_dim 2
  const std::vector<float> v = {-1, -2, -3, -4, -5, -6};
  const std::vector<int64_t> slots = {3, -1, 0};
  std::vector<float> k_cache(8, 0.0f);
  std::vector<float> v_cache(8, 0.0f);
  kv_write(k.data(), v.data(), 3, 2, slots.data(), k_cache.data(), v_cache.data());
  expect_near_all(k_cache, {5, 6, 0, 0, 0, 0, 1, 2});
  expect_near_all(v_cache, {-5, -6, 0, 0, 0, 0, -1, -2});
}

// Cache of 8 blocks of size 1, head_dim 2, one kv head; the sequence's positions 0, 1, 2 live
// in blocks 5, 2, 7.
struct TinyCache {
  std::vector<float> k = std::vector<float>(16, 0.0f);
  std::vector<float> v = std::vector<float>(16, 0.0f);
  std::vector<int32_t> table = {5, 2, 7};
  void put(int block, std::vector<float> key, std::vector<float> value) {
    std::copy(key.begin(), key.end(), k.begin() + block * 2);
    std::copy(value.begin(), value.end(), v.begin() + block * 2);
  }
  PagedAttentionArgs args(const float* q, float* out, const int32_t* seq, const int32_t* ctx,
                          int64_t tokens, int n_heads) const {
    PagedAttentionArgs a;
    a.q = q;
    a.out = out;
    a.k_cache = k.data();
    a.v_cache = v.data();
    a.block_tables = table.data();
    a.token_seq = seq;
    a.ctx_len = ctx;
    a.tokens = tokens;
    a.n_heads = n_heads;
    a.n_kv_heads = 1;
    a.head_dim = 2;
    a.block_size = 1;
    a.max_blocks_per_seq = 3;
    return a;
  }
};

TEST_P(KernelsHandWorked, AttentionWithOneKeyReturnsItsValue) {
  TinyCache cache;
  cache.put(5, {0.3f, -0.2f}, {7, -3});
  const std::vector<float> q = {1, 2};
  const std::vector<int32_t> seq = {0};
  const std::vector<int32_t> ctx = {1};
  std::vector<float> out(2);
  poison(out);
  paged_attention(cache.args(q.data(), out.data(), seq.data(), ctx.data(), 1, 1), &pool_);
  expect_near_all(out, {7, -3});
}

TEST_P(KernelsHandWorked, AttentionWeighsKeysBySoftmaxThroughBlockTable) {
  TinyCache cache;
  const float ln3 = std::log(3.0f);
  cache.put(5, {0, 0}, {4, 0});
  cache.put(2, {2 * ln3, 0}, {0, 8});
  cache.put(7, {-100, 0}, {1000, 1000});
  // Two heads share the one kv head (GQA); head 1's query is doubled, with scale 1/2.
  const std::vector<float> q = {1, 0, 2, 0};
  const std::vector<int32_t> seq = {0};
  const std::vector<int32_t> ctx = {3};
  std::vector<float> out(4);
  poison(out);
  PagedAttentionArgs a = cache.args(q.data(), out.data(), seq.data(), ctx.data(), 1, 2);
  a.scale = 0.5f;
  paged_attention(a, &pool_);
  // Head 0: scores [0, ln 3, -50] -> weights 1/4, 3/4, ~0; head 1: [0, 2 ln 3, -100] -> 1/10,
  // 9/10, ~0.
  expect_near_all(out, {1, 6, 0.4f, 7.2f}, 1e-5f);
}

TEST_P(KernelsHandWorked, AttentionSlidingWindowSeesOnlyRecentKeys) {
  TinyCache cache;
  cache.put(5, {0, 0}, {1, 1});
  cache.put(2, {0, 0}, {3, 5});
  cache.put(7, {0, 0}, {5, 9});
  const std::vector<float> q = {1, 1, 1, 1};
  const std::vector<int32_t> seq = {0, 0};
  const std::vector<int32_t> ctx = {3, 2};  // two tokens of one sequence
  std::vector<float> out(4);
  poison(out);
  PagedAttentionArgs a = cache.args(q.data(), out.data(), seq.data(), ctx.data(), 2, 1);
  a.sliding_window = 2;  // token 0 sees positions 1, 2; token 1 sees 0, 1 (equal scores)
  paged_attention(a, &pool_);
  expect_near_all(out, {4, 7, 2, 3});
  a.sliding_window = 1;
  paged_attention(a, &pool_);
  expect_near_all(out, {5, 9, 3, 5});
}

TEST_P(KernelsHandWorked, AttentionWithoutKeysGivesZeros) {
  TinyCache cache;
  const std::vector<float> q = {1, 1};
  const std::vector<int32_t> seq = {0};
  const std::vector<int32_t> ctx = {0};
  std::vector<float> out(2);
  poison(out);
  paged_attention(cache.args(q.data(), out.data(), seq.data(), ctx.data(), 1, 1), &pool_);
  expect_near_all(out, {0, 0});
}

TEST_P(KernelsHandWorked, RowMovesAndAdds) {
  const std::vector<float> src = {1, 2, 3, 4, 5, 6};  // 3 rows of 2
  std::vector<float> dst(4);
  poison(dst);
  gather_rows(src.data(), std::vector<int32_t>{2, 0}.data(), 2, 2, dst.data());
  expect_near_all(dst, {5, 6, 1, 2});

  std::vector<float> gated = {1, 1, 1, 1};
  add_gated_rows(src.data(), std::vector<float>{0.5f, -2}.data(), 2, 2, gated.data());
  expect_near_all(gated, {1.5f, 2, -5, -7});

  std::vector<float> sum(3);
  poison(sum);
  add(src.data(), src.data() + 3, sum.data(), 3);
  expect_near_all(sum, {5, 7, 9});
}

std::string isa_param_name(const testing::TestParamInfo<Isa>& info) {
  return std::string(isa_name(info.param));
}

INSTANTIATE_TEST_SUITE_P(AllIsas, KernelsHandWorked, testing::ValuesIn(supported_isas()),
                         isa_param_name);

}  // namespace
}  // namespace sy::cpu
