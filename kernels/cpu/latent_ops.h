// CPU ops of DeepSeek's multi-head latent attention (MLA) in its absorbed form: per-head matmuls
// (the absorptions of W_UK and W_UV), the write of compressed latents into a paged cache, and
// attention over that cache. Same conventions as kernels/cpu/ops.h: each op exists in sy::cpu::ref
// (plain loops, the oracle, documented here) and in sy::cpu (vectorised, threaded).
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace sy::cpu {

class ThreadPool;

// Arguments of latent attention. The cache holds one row of latent_dim + rope_dim values per
// token position, shared by all heads: the compressed KV latent c, then the roped key k_pe. A
// query token attends causally to the first ctx_len[t] positions of its sequence, read through its
// block table (slot = block * block_size + offset), as paged attention does.
struct LatentAttentionArgs {
  const float* q_latent = nullptr;  // [tokens, n_heads, latent_dim]: W_UK_h^T q_nope_h
  const float* q_rope = nullptr;    // [tokens, n_heads, rope_dim]: roped q_pe_h
  float* out = nullptr;             // [tokens, n_heads, latent_dim]
  // [slots] rows of latent_dim + rope_dim values in cache_dtype (kernels/kv_rows.h)
  const void* cache = nullptr;
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  const int32_t* token_seq = nullptr;     // [tokens]: row of block_tables for each token
  const int32_t* ctx_len = nullptr;       // [tokens]: positions visible to the token
  int64_t tokens = 0;
  int n_heads = 0;
  int latent_dim = 0;  // kv_lora_rank (512 in DeepSeek-V3)
  int rope_dim = 0;    // qk_rope_head_dim (64)
  int block_size = 0;
  int max_blocks_per_seq = 0;
  float scale = 1.0f;  // softmax scale of the unabsorbed head: 1/sqrt(nope + rope), times mscale^2
  DType cache_dtype = DType::kF32;  // kF32, kBF16 or kF8Row (one scale per whole row)
};

namespace ref {

// y[t, h*n + j] = sum_i x[t, h*k + i] * w[h*n + j, i] for heads h < heads: x [m, heads*k],
// w [heads*n, k] (head h's rows form an ordinary [n, k] weight matrix, in any dtype matmul takes),
// y [m, heads*n]. The absorptions q_latent_h = W_UK_h^T q_nope_h and v_h = W_UV_h o_latent_h.
void head_matmul(const float* x, const void* w, DType w_dtype, float* y, int64_t m, int64_t heads,
                 int64_t n, int64_t k, ThreadPool* pool);
// Writes row t of latent [tokens, latent_dim] into columns [0, latent_dim) and row t of rope
// [tokens, rope_dim] into columns [latent_dim, latent_dim + rope_dim) of cache row slots[t],
// converted to cache_dtype as one row (write_kv_row: a kF8Row row has one scale for both parts);
// slots < 0 are skipped.
void latent_kv_write(const float* latent, const float* rope, int64_t tokens, int64_t latent_dim,
                     int64_t rope_dim, const int64_t* slots, void* cache,
                     DType cache_dtype = DType::kF32);
// For head h of token t over visible positions p < ctx_len[t] with cache rows (c_p, k_pe_p):
// score_p = scale * (q_latent_h . c_p + q_rope_h . k_pe_p); out_h = sum_p softmax(score)_p c_p.
// This equals ordinary attention with keys (W_UK_h c_p, k_pe_p) and values W_UV_h c_p once out_h
// goes through W_UV_h. A token with ctx_len <= 0 gets zeros.
void latent_attention(const LatentAttentionArgs& a, ThreadPool* pool);

}  // namespace ref

// The fast versions: same signatures and semantics as sy::cpu::ref above. head_matmul reuses the
// matmul kernels per head. latent_attention reads each cache row once per token for all its heads
// (multi-query attention with a latent_dim + rope_dim key whose first latent_dim values are the
// value) and splits a token's context into pieces fixed by its ctx_len alone, merged in order, so
// results for a token never depend on the rest of the batch or on the thread count.
void head_matmul(const float* x, const void* w, DType w_dtype, float* y, int64_t m, int64_t heads,
                 int64_t n, int64_t k, ThreadPool* pool);
void latent_kv_write(const float* latent, const float* rope, int64_t tokens, int64_t latent_dim,
                     int64_t rope_dim, const int64_t* slots, void* cache,
                     DType cache_dtype = DType::kF32);
void latent_attention(const LatentAttentionArgs& a, ThreadPool* pool);

}  // namespace sy::cpu
