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
  const float* q = nullptr;  // [tokens, n_heads, head_dim]
  float* out = nullptr;      // [tokens, n_heads, head_dim]
  // [num_blocks * block_size] slot rows of n_kv_heads * head_dim values in cache_dtype (a
  // kF8Row slot row: its scale, then the values; kernels/kv_rows.h), head by head.
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;          // same layout as k_cache
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  const int32_t* token_seq = nullptr;     // [tokens]: row of block_tables for each token
  const int32_t* ctx_len = nullptr;       // [tokens]: keys visible to the token (its position + 1)
  int64_t tokens = 0;
  int n_heads = 0;
  int n_kv_heads = 0;  // n_heads % n_kv_heads == 0 (grouped-query attention)
  int head_dim = 0;
  int block_size = 0;
  int max_blocks_per_seq = 0;
  int sliding_window = 0;           // > 0: only the last `sliding_window` positions are visible
  float scale = 1.0f;               // usually 1/sqrt(head_dim)
  DType cache_dtype = DType::kF32;  // of k_cache and v_cache: kF32, kBF16 or kF8Row
};

// How a router turns logits into expert scores.
enum class RouterScoring : uint8_t { kSoftmax, kSigmoid };
// How a group of experts is scored for the group limit: DeepSeek-V2's group_limited_greedy takes
// the max; DeepSeek-V3 and GLM-4.5 the sum of the top 2.
enum class GroupScoring : uint8_t { kMax, kTopTwoSum };

// Arguments of the router (ref::route documents each rule).
struct RouterArgs {
  int k = 1;
  RouterScoring scoring = RouterScoring::kSoftmax;
  bool renormalize = false;  // norm_topk_prob
  float scaling = 1.0f;      // routed_scaling_factor: multiplies the final weights
  // [experts] e_score_correction_bias, added for selection only.
  const float* correction_bias = nullptr;
  int n_group = 1;     // experts split in n_group equal groups
  int topk_group = 1;  // groups kept (n_group == 1: no group limit)
  GroupScoring group_scoring = GroupScoring::kMax;
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
// rope_neox with interleaved pairs (x[2i], x[2i+1]), i < rotary_dim/2, rotated by the same angle
// and in place (DeepSeek-V2's view_as_complex; DeepSeek-V3's rope_interleave de-interleaves
// first, which moves the results but gives q.k the same terms, since q and k move alike).
void rope_interleaved(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
                      const int32_t* positions, const float* inv_freq, float attn_scale,
                      ThreadPool* pool);
// out[r,i] = silu(gate_up[r,i]) * gate_up[r,inter+i].
void silu_mul(const float* gate_up, float* out, int64_t rows, int64_t inter, ThreadPool* pool);
// In place softmax of each row.
void softmax(float* x, int64_t rows, int64_t n);
// The MoE router of every supported architecture, per token (see RouterArgs), as transformers
// 4.57.6 computes it (MixtralSparseMoeBlock, Qwen2/3-MoE, OLMoE, DeepseekV2MoEGate,
// DeepseekV3TopkRouter, Glm4MoeTopkRouter), in f32:
//  1. scores = softmax(logits) over the experts (as ref::softmax) or sigmoid(logits) each
//     (as ref::sigmoid).
//  2. choice = scores + correction_bias (when given). The bias only picks experts and groups.
//  3. Groups (n_group > 1): the experts split into n_group equal consecutive groups; a group's
//     score is the max of its choices (kMax, DeepSeek-V2 group_limited_greedy) or the sum of its
//     two largest, largest first (kTopTwoSum, DeepSeek-V3 / GLM-4.5; needs >= 2 experts a
//     group). The topk_group best groups are kept (ties: lower group id); the choices of every
//     other group's experts become 0.0 (masked_fill(..., 0.0), not -inf: a kept expert whose
//     biased choice is below 0 ranks below a masked one and can lose to it).
//  4. ids: the k best choices, descending, ties to the lower expert id (transformers calls
//     topk(sorted=False), whose order is unspecified; this order is ours). A NaN choice ranks
//     as -inf.
//  5. weights: the unbiased scores of the chosen experts. renormalize: divided by their sum
//     (summed in the order of ids) plus 1e-20 for kSigmoid (DeepSeek-V3 / GLM-4.5 add it;
//     Mixtral / Qwen / OLMoE's softmax renormalisation adds nothing). Then multiplied by
//     `scaling` (routed_scaling_factor; x 1.0 is exact). DeepSeek-V2 in transformers 4.57.6
//     never renormalises (it ignores norm_topk_prob) and always scales: pass
//     renormalize = false there.
void route(const float* logits, int64_t tokens, int64_t experts, const RouterArgs& args,
           int32_t* ids, float* weights);
// Writes new tokens' K and V rows ([tokens, kv_dim]) into the paged cache at slot
// = block * block_size + offset (rows of kv_dim values in cache_dtype, converted as
// write_kv_row in kernels/kv_rows.h does); slots < 0 are skipped.
void kv_write(const float* k, const float* v, int64_t tokens, int64_t kv_dim, const int64_t* slots,
              void* k_cache, void* v_cache, DType cache_dtype = DType::kF32);
// A token with no visible key (ctx_len <= 0) gets zeros. Cache values are read as f32
// (kv_row_value); a kF8Row row's scale multiplies its values.
void paged_attention(const PagedAttentionArgs& a, ThreadPool* pool);
// dst[i,:] = src[idx[i],:].
void gather_rows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst);
// dst[r,:] += gate[r] * src[r,:] (a shared expert's output scaled by its sigmoid gate).
void add_gated_rows(const float* src, const float* gate, int64_t rows, int64_t dim, float* dst);
// y = a + b elementwise; y may be a or b (y += x is add(x, y, y, n)).
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
void rope_interleaved(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
                      const int32_t* positions, const float* inv_freq, float attn_scale,
                      ThreadPool* pool);
void silu_mul(const float* gate_up, float* out, int64_t rows, int64_t inter, ThreadPool* pool);
void softmax(float* x, int64_t rows, int64_t n);
void route(const float* logits, int64_t tokens, int64_t experts, const RouterArgs& args,
           int32_t* ids, float* weights);
void kv_write(const float* k, const float* v, int64_t tokens, int64_t kv_dim, const int64_t* slots,
              void* k_cache, void* v_cache, DType cache_dtype = DType::kF32);
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
