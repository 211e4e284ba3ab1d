// CpuBackend's latent-attention ops (HeadMatMul, LatentKvWrite, LatentAttention) against
// sy::cpu::ref through the Backend interface: shapes and metadata map onto the kernels' arguments.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "engine/backend/cpu_backend.h"
#include "kernels/cpu/latent_ops.h"
#include "kernels/cpu/testing.h"

namespace sy {
namespace {

Tensor View(const void* data, DType dtype, int64_t rows, int64_t cols) {
  return Tensor{const_cast<void*>(data), dtype, rows, cols};
}

TEST(CpuBackendLatent, HeadMatMulMatchesReference) {
  CpuBackend backend(2);
  constexpr int64_t kRows = 3, kHeads = 4, kN = 24, kK = 16;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kI8}) {
    ASSERT_TRUE(backend.SupportsWeightDType(dtype));
    const cpu::Weights w = cpu::random_weight_matrix(dtype, kHeads * kN, kK, -1, 1, 1);
    const std::vector<float> x = cpu::random_floats(kRows * kHeads * kK, -1, 1, 2);
    std::vector<float> want(kRows * kHeads * kN);
    std::vector<float> got(want.size());
    cpu::poison(got);
    cpu::ref::head_matmul(x.data(), w.data(), dtype, want.data(), kRows, kHeads, kN, kK, nullptr);
    backend.HeadMatMul(View(x.data(), DType::kF32, kRows, kHeads * kK),
                       View(w.data(), dtype, kHeads * kN, kK),
                       View(got.data(), DType::kF32, kRows, kHeads * kN), kHeads);
    EXPECT_EQ(cpu::compare_close(got.data(), want.data(), got.size(), {1e-5, 1e-5}, kN), "")
        << dtype_name(dtype);
  }
}

TEST(CpuBackendLatent, KvWriteThenAttentionMatchReference) {
  CpuBackend backend(2);
  ASSERT_EQ(backend.kv_cache_dtype(), DType::kF32);
  constexpr int kHeads = 4, kLatent = 32, kRope = 8, kBlock = 4, kLen = 11, kBlocks = 5;
  constexpr int64_t kRow = kLatent + kRope, kSlots = kBlocks * kBlock;
  // One sequence in blocks 4, 1, 3: written through the backend, then three query tokens.
  const std::vector<int32_t> table = {4, 1, 3};
  std::vector<int64_t> slots(kLen);
  for (int p = 0; p < kLen; ++p) slots[p] = table[p / kBlock] * kBlock + p % kBlock;
  const std::vector<float> latent = cpu::random_floats(kLen * kLatent, -1, 1, 1);
  const std::vector<float> rope = cpu::random_floats(kLen * kRope, -1, 1, 2);
  std::vector<float> cache(kSlots * kRow, 0.0f);
  std::vector<float> want_cache = cache;
  AttentionMetadata write_md;
  write_md.slots = View(slots.data(), DType::kI64, 1, kLen);
  write_md.block_size = kBlock;
  backend.LatentKvWrite(View(latent.data(), DType::kF32, kLen, kLatent),
                        View(rope.data(), DType::kF32, kLen, kRope), write_md,
                        View(cache.data(), DType::kF32, kSlots, kRow));
  cpu::ref::latent_kv_write(latent.data(), rope.data(), kLen, kLatent, kRope, slots.data(),
                            want_cache.data());
  EXPECT_EQ(cache, want_cache);

  const std::vector<int32_t> seq = {0, 0, 0};
  const std::vector<int32_t> ctx = {9, 11, 0};
  const int64_t tokens = 3;
  const std::vector<float> q_latent = cpu::random_floats(tokens * kHeads * kLatent, -1, 1, 3);
  const std::vector<float> q_rope = cpu::random_floats(tokens * kHeads * kRope, -1, 1, 4);
  AttentionMetadata md;
  md.block_tables = View(table.data(), DType::kI32, 1, 3);
  md.token_seq = View(seq.data(), DType::kI32, 1, tokens);
  md.ctx_len = View(ctx.data(), DType::kI32, 1, tokens);
  md.block_size = kBlock;
  std::vector<float> got(tokens * kHeads * kLatent);
  cpu::poison(got);
  const float scale = 0.2f;
  backend.LatentAttention(View(q_latent.data(), DType::kF32, tokens, kHeads * kLatent),
                          View(q_rope.data(), DType::kF32, tokens, kHeads * kRope), md,
                          View(cache.data(), DType::kF32, kSlots, kRow), kHeads, kLatent, kRope,
                          scale, View(got.data(), DType::kF32, tokens, kHeads * kLatent));
  cpu::LatentAttentionArgs a;
  std::vector<float> want(got.size());
  a.q_latent = q_latent.data();
  a.q_rope = q_rope.data();
  a.out = want.data();
  a.cache = want_cache.data();
  a.block_tables = table.data();
  a.token_seq = seq.data();
  a.ctx_len = ctx.data();
  a.tokens = tokens;
  a.n_heads = kHeads;
  a.latent_dim = kLatent;
  a.rope_dim = kRope;
  a.block_size = kBlock;
  a.max_blocks_per_seq = 3;
  a.scale = scale;
  cpu::ref::latent_attention(a, nullptr);
  EXPECT_EQ(cpu::compare_close(got.data(), want.data(), got.size(), {5e-6, 2e-5}, kLatent), "");
  // The token with no visible position gets zeros.
  for (int64_t i = 2 * kHeads * kLatent; i < tokens * kHeads * kLatent; ++i) {
    ASSERT_EQ(got[i], 0.0f) << i;
  }
}

}  // namespace
}  // namespace sy
