// CPU kernels: plain functions over pointers and shapes. Every op exists twice with the same
// signature: sy::cpu::ref (plain scalar loops, the oracle) and sy::cpu (vectorised, threaded).
//
// Conventions: activations are f32; big weight matrices are f32, bf16, f16, int8 (DType::kI8:
// per-row scale + int8 values) or fp8 (DType::kF8: per-row block scales + e4m3fn values), the
// last two dequantized in registers, and row-major as in Hugging Face
// checkpoints (nn.Linear: [out_features, in_features]); accumulation is f32. Results
// for one row never depend on which other rows are in the call (batch invariance): reduction
// order is fixed per row. `pool` may be null (run on the calling thread).
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace sy::cpu {

class ThreadPool;

// Arguments of paged attention. One query token at a time attends causally to the first
// `ctx_len[t]` positions of its sequence, read from the paged cache through its block table.
struct PagedAttentionArgs {
  const float* q = nullptr;               // [tokens, n_heads, head_dim]
  float* out = nullptr;                   // [tokens, n_heads, head_dim]
  const float* k_cache = nullptr;         // [num_blocks, block_size, n_kv_heads, head_dim]
  const float* v_cache = nullptr;         // same layout as k_cache
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  const int32_t* token_seq = nullptr;     // [tokens]: row of block_tables for each token
  const int32_t* ctx_len = nullptr;       // [tokens]: keys visible to the token (its position + 1)
  int64_t tokens = 0;
  int n_heads = 0;
  int n_kv_heads = 0;  // n_heads % n_kv_heads == 0 (grouped-query attention)
  int head_dim = 0;
  int block_size = 0;
  int max_blocks_per_seq = 0;
  int sliding_window = 0;  // > 0: only the last `sliding_window` positions are visible
  float scale = 1.0f;      // usually 1/sqrt(head_dim)
};

// The reference: plain scalar loops, obviously correct, slow. Documentation of each op is here.
namespace ref {

// y[m,n] = x[m,k] . w[n,k]^T (+ bias[n] when bias != null).
void matmul(const float* x, const void* w, DType w_dtype, const float* bias, float* y, int64_t m,
            int64_t n, int64_t k, ThreadPool* pool);
// out[i,:] = table[ids[i],:] converted to f32.
void embedding(const int32_t* ids, int64_t n, const void* table, DType dtype, int64_t dim,
               float* out, ThreadPool* pool);
// y = x * rsqrt(mean(x^2) + eps) * w, per row. x and y may alias.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps,
              ThreadPool* pool);
// residual += x; y = rms_norm(residual).
void add_rms_norm(float* residual, const float* x, const float* w, float* y, int64_t rows,
                  int64_t dim, float eps, ThreadPool* pool);
// In place rotate-half (GPT-NeoX) rotary embedding on the first rotary_dim of each head:
// angle = positions[t] * inv_freq[i], cos/sin multiplied by attn_scale (YaRN), i<rot/2.
void rope_neox(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
               const int32_t* positions, const float* inv_freq, float attn_scale, ThreadPool* pool);
// out[r,i] = silu(gate_up[r,i]) * gate_up[r,inter+i].
void silu_mul(const float* gate_up, float* out, int64_t rows, int64_t inter, ThreadPool* pool);
// In place softmax of each row.
void softmax(float* x, int64_t rows, int64_t n);
// Router: softmax over each token's expert logits, top-k by probability (descending; ties
// to the lower expert id), optionally renormalised to sum to 1.
void route_topk(const float* logits, int64_t tokens, int64_t experts, int k, bool renormalize,
                int32_t* ids, float* weights);
// Writes new tokens' K and V rows ([tokens, kv_dim]) into the paged cache at slot
// = block * block_size + offset (rows of kv_dim); slots < 0 are skipped.
void kv_write(const float* k, const float* v, int64_t tokens, int64_t kv_dim, const int64_t* slots,
              float* k_cache, float* v_cache);
// A token with no visible key (ctx_len <= 0) gets zeros.
void paged_attention(const PagedAttentionArgs& a, ThreadPool* pool);
// dst[i,:] = src[idx[i],:].
void gather_rows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst);
// dst[r,:] += gate[r] * src[r,:] (a shared expert's output scaled by its sigmoid gate).
void add_gated_rows(const float* src, const float* gate, int64_t rows, int64_t dim, float* dst);
// y = a + b elementwise.
void add(const float* a, const float* b, float* y, int64_t n);
// x = 1 / (1 + exp(-x)) elementwise, in place.
void sigmoid(float* x, int64_t n);
// Groups the tokens*k (token, choice) pairs of ids [tokens, k] by expert with a stable counting
// sort: offsets [experts + 1] (int32); sorted [3, tokens*k]: row 0 the token at each position,
// row 1 its flat (token, choice) index j, row 2 the inverse (the position of flat index j).
// Within an expert, positions follow j.
void sort_by_expert(const int32_t* ids, int64_t tokens, int k, int64_t experts, int32_t* offsets,
                    int32_t* sorted);
// out[t,:] = sum over token t's k pairs, in ascending position p = inverse[t*k + c], of
// weights[t*k + c] * ys[p,:]: the weighted un-permutation after the experts ran.
void combine_experts(const float* ys, const int32_t* inverse, const float* weights, int64_t tokens,
                     int k, int64_t dim, float* out);

}  // namespace ref

// The fast versions: same signatures and semantics as sy::cpu::ref above. They pick AVX-512,
// AVX2 (+FMA, F16C) or, on other processors, the reference at run time.
void matmul(const float* x, const void* w, DType w_dtype, const float* bias, float* y, int64_t m,
            int64_t n, int64_t k, ThreadPool* pool);
void embedding(const int32_t* ids, int64_t n, const void* table, DType dtype, int64_t dim,
               float* out, ThreadPool* pool);
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps,
              ThreadPool* pool);
void add_rms_norm(float* residual, const float* x, const float* w, float* y, int64_t rows,
                  int64_t dim, float eps, ThreadPool* pool);
void rope_neox(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
               const int32_t* positions, const float* inv_freq, float attn_scale, ThreadPool* pool);
void silu_mul(const float* gate_up, float* out, int64_t rows, int64_t inter, ThreadPool* pool);
void softmax(float* x, int64_t rows, int64_t n);
void route_topk(const float* logits, int64_t tokens, int64_t experts, int k, bool renormalize,
                int32_t* ids, float* weights);
void kv_write(const float* k, const float* v, int64_t tokens, int64_t kv_dim, const int64_t* slots,
              float* k_cache, float* v_cache);
void paged_attention(const PagedAttentionArgs& a, ThreadPool* pool);
void gather_rows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst);
void add_gated_rows(const float* src, const float* gate, int64_t rows, int64_t dim, float* dst);
void add(const float* a, const float* b, float* y, int64_t n);
void sigmoid(float* x, int64_t n);
void sort_by_expert(const int32_t* ids, int64_t tokens, int k, int64_t experts, int32_t* offsets,
                    int32_t* sorted);
void combine_experts(const float* ys, const int32_t* inverse, const float* weights, int64_t tokens,
                     int k, int64_t dim, float* out);

// Fills n elements of `dtype` (f32, bf16 or f16) with uniform values in [-scale, scale) drawn
// from a counter-based hash of (seed, i), so every backend (sy::cuda::fill_random) produces the
// same bits: random model weights made directly in device memory.
void fill_random(void* data, DType dtype, int64_t n, uint64_t seed, float scale);
// The f32 value fill_random gives element i (before conversion to the target dtype).
inline float random_uniform_at(uint64_t seed, int64_t i, float scale) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (static_cast<uint64_t>(i) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);  // [0, 1), exact
  return (2.0f * u - 1.0f) * scale;
}

}  // namespace sy::cpu
