// CUDA kernels: host functions that launch on a stream, one per op of the model, with the same
// shapes and semantics as their CPU counterparts in kernels/cpu/ops.h (sy::cpu::ref is the
// oracle each is tested against in tests/gpu). Every pointer is device memory. Each function
// returns the launch's error (cudaGetLastError), cudaSuccess when it was queued.
//
// Conventions: activations are f32; weights are f32, bf16 or f16 (or row-quantized: fp8, int8,
// int4, below); the KV cache is f32 or bf16; accumulation is f32. Results for one row never depend
// on which other rows are in the call (batch invariance), so reductions have a fixed order per
// row and there are no atomics on outputs; the one exception is the row count at which a product
// changes kernel (cuBLAS or the tensor-core int8/int4 kernel above 16 rows, see below). No function
// allocates memory or synchronizes: all of them can be captured in a CUDA graph, and launch shapes
// depend only on the arguments (never on device data).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cpu/ops.h"
#include "kernels/dtype.h"

namespace sy::cuda {

// --- elementwise, norms, rotary (kernels/cuda/elementwise.cu) ---
// out[i,:] = table[ids[i],:] converted to f32.
cudaError_t embedding(const int32_t* ids, int64_t n, const void* table, DType dtype, int64_t dim,
                      float* out, cudaStream_t stream);
// y = x * rsqrt(mean(x^2) + eps) * w per row; x and y may alias.
cudaError_t rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps,
                     cudaStream_t stream);
// residual += x; y = rms_norm(residual) * w (fused: one read of each, one write of each).
cudaError_t add_rms_norm(float* residual, const float* x, const float* w, float* y, int64_t rows,
                         int64_t dim, float eps, cudaStream_t stream);
// In-place rotate-half rotary embedding, as sy::cpu::ref::rope_neox.
cudaError_t rope_neox(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
                      const int32_t* positions, const float* inv_freq, float attn_scale,
                      cudaStream_t stream);
// In-place rotary embedding of adjacent pairs, as sy::cpu::ref::rope_interleaved.
cudaError_t rope_interleaved(float* x, int64_t tokens, int64_t heads, int64_t head_dim,
                             int64_t rotary_dim, const int32_t* positions, const float* inv_freq,
                             float attn_scale, cudaStream_t stream);
// out[r,i] = silu(gate_up[r,i]) * gate_up[r,inter+i].
cudaError_t silu_mul(const float* gate_up, float* out, int64_t rows, int64_t inter,
                     cudaStream_t stream);
// dst[i,:] = src[idx[i],:].
cudaError_t gather_rows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst,
                        cudaStream_t stream);
// dst[r,:] += gate[r] * src[r,:].
cudaError_t add_gated_rows(const float* src, const float* gate, int64_t rows, int64_t dim,
                           float* dst, cudaStream_t stream);
// x = 1 / (1 + exp(-x)).
cudaError_t sigmoid(float* x, int64_t n, cudaStream_t stream);
// y = a + b elementwise; y may be a or b.
cudaError_t add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream);
// y[i] = x[i] converted to `dtype` (bf16 or f16 round to nearest even, as kernels/dtype.h).
cudaError_t convert_f32(const float* x, int64_t n, DType dtype, void* y, cudaStream_t stream);

// --- MoE routing (kernels/cuda/moe_routing.cu) ---
// The router, fused, as sy::cpu::ref::route (args.correction_bias in device memory or null).
// experts <= 512, k <= 16, n_group <= 32 with experts % n_group == 0 and 1 <= topk_group <=
// n_group; others: InvalidValue.
cudaError_t route(const float* logits, int64_t tokens, int64_t experts, const cpu::RouterArgs& args,
                  int32_t* ids, float* weights, cudaStream_t stream);
// Groups the tokens*k (token, choice) pairs of ids [tokens, k] by expert, as
// sy::cpu::ref::sort_by_expert: offsets [experts + 1]; sorted [3, tokens*k]: row 0 the token of
// each position, row 1 its flat (token, choice) index, row 2 the inverse (position of flat
// index j). Stable: within an expert, positions follow the flat index.
cudaError_t sort_by_expert(const int32_t* ids, int64_t tokens, int k, int64_t experts,
                           int32_t* offsets, int32_t* sorted, cudaStream_t stream);
// out[t,:] = sum over the token's k pairs, in ascending position p = inverse[t*k + c], of
// weights[t*k + c] * ys[p,:]; as sy::cpu::ref::combine_experts.
cudaError_t combine_experts(const float* ys, const int32_t* inverse, const float* weights,
                            int64_t tokens, int k, int64_t dim, float* out, cudaStream_t stream);

// --- KV cache and attention (kernels/cuda/attention.cu) ---
// As sy::cpu::ref::kv_write, into an f32 or bf16 cache; slots < 0 are skipped.
cudaError_t kv_write(const float* k, const float* v, int64_t tokens, int64_t kv_dim,
                     const int64_t* slots, void* k_cache, void* v_cache, DType cache_dtype,
                     cudaStream_t stream);

struct PagedAttentionArgs {
  const float* q = nullptr;       // [tokens, n_heads, head_dim]
  float* out = nullptr;           // [tokens, n_heads, head_dim]
  const void* k_cache = nullptr;  // [num_blocks, block_size, n_kv_heads, head_dim]
  const void* v_cache = nullptr;
  DType cache_dtype = DType::kF32;        // kF32 or kBF16
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks_per_seq]
  const int32_t* token_seq = nullptr;     // [tokens]
  const int32_t* ctx_len = nullptr;       // [tokens]: keys visible to the token
  int64_t tokens = 0;
  int num_seqs = 0;  // rows of block_tables; tokens == num_seqs means one query per sequence
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;  // 16, 32, 64, 128 or 256 (others: InvalidValue)
  int block_size = 0;
  int max_blocks_per_seq = 0;
  int sliding_window = 0;
  float scale = 1.0f;
  // Scratch for split-K partial results: at least paged_attention_scratch_bytes(...) bytes.
  void* scratch = nullptr;
};
// Bytes of scratch paged_attention needs for up to `tokens` query tokens.
size_t paged_attention_scratch_bytes(int64_t tokens, int n_heads, int head_dim);
// Causal grouped-query attention over the paged cache, as sy::cpu::ref::paged_attention. Picks
// a split-K (flash-decoding) kernel with a fixed number of splits per token for decode-shaped
// calls and a tiled flash-attention kernel for prefill-shaped calls; the grid never depends on
// ctx_len, so the call can be captured in a graph.
cudaError_t paged_attention(const PagedAttentionArgs& a, cudaStream_t stream);

// --- matrix products (kernels/cuda/gemm.cu) ---
// y[m,n] = x[m,k] . w[n,k]^T (+ bias[n]) for small m (m <= kSkinnyMaxRows): each block streams
// rows of w once with 16-byte loads and applies them to all m rows of x. Larger m goes to cuBLAS
// (see engine/backend/cuda_backend.cc).
inline constexpr int64_t kSkinnyMaxRows = 16;
cudaError_t skinny_matmul(const float* x, const void* w, DType w_dtype, const float* bias, float* y,
                          int64_t m, int64_t n, int64_t k, cudaStream_t stream);

// The experts of one MoE layer over rows grouped by expert (offsets on the device, [E + 1]):
// rows [offsets[e], offsets[e+1]) of x go through expert e, whose weights are
// gate_up_ptrs[e] ([2*inter, hidden]) and down_ptrs[e] ([hidden, inter]), all of w_dtype.
// act is scratch of rows * inter floats; y [rows, hidden]. The grid is (min(experts, rows) x
// tiles): block s serves the s-th expert that has rows (found from offsets on the device), and
// spare blocks return at once, so the grid depends only on arguments and the call can be
// captured in a graph. Two kernels: gate/up products with SiLU-and-multiply fused, then down.
cudaError_t grouped_expert_ffn(const float* x, const int32_t* offsets, int64_t experts,
                               const void* const* gate_up_ptrs, const void* const* down_ptrs,
                               DType w_dtype, int64_t hidden, int64_t inter, int64_t rows,
                               float* act, float* y, cudaStream_t stream);

// --- FP8 weights (kernels/cuda/fp8_gemm.cu): w holds DType::kF8 rows (an f32 scale per 128
// columns, then e4m3fn bytes). Any number of rows; per-row results do not depend on m. ---
// y[m,n] = x[m,k] . dequantize(w)[n,k]^T (+ bias[n]), as sy::cpu::ref::matmul with DType::kF8.
cudaError_t fp8_matmul(const float* x, const void* w, const float* bias, float* y, int64_t m,
                       int64_t n, int64_t k, cudaStream_t stream);
// grouped_expert_ffn for kF8 experts (same arguments but the dtype); each row's values equal
// fp8_matmul + silu_mul + fp8_matmul over its expert.
cudaError_t fp8_grouped_expert_ffn(const float* x, const int32_t* offsets, int64_t experts,
                                   const void* const* gate_up_ptrs, const void* const* down_ptrs,
                                   int64_t hidden, int64_t inter, int64_t rows, float* act,
                                   float* y, cudaStream_t stream);

// --- int8 and int4 weights (kernels/cuda/quant_gemm.cu): w holds DType::kI8 rows (an f32 scale,
// then int8 values) or DType::kI4G32/64/128 rows (f16 scale and min per group, then packed
// nibbles), in device memory at a 4-byte aligned address (as every allocation is). Weight-only:
// the f32 activations are not quantized; the weights are dequantized to exactly the values
// sy::cpu::ref::matmul uses. quantized_matmul and quantized_grouped_expert_ffn are the one entry
// point for every row-quantized weight dtype (is_quantized_weight): kF8 goes to the fp8_* kernels
// above. ---
inline constexpr bool is_quantized_weight(DType t) {
  return t == DType::kF8 || t == DType::kI8 || is_int4(t);
}
// Up to this many rows an int8/int4 product streams the weights (a warp per output column, once
// per 8 rows; 16-byte loads, f32 activations, the same per-row order for any m); more rows go to a
// bf16 tensor-core kernel (x and the dequantized weights rounded to bf16, as the cuBLAS path rounds
// x): deterministic, each output from its row and column alone, but not bit-identical to the
// former. Needs sm_80 or newer.
inline constexpr int64_t kQuantGemvMaxRows = 16;
// y[m,n] = x[m,k] . dequantize(w)[n,k]^T (+ bias[n]), as sy::cpu::ref::matmul with w_dtype
// (kF8, kI8 or int4; other dtypes: InvalidValue).
cudaError_t quantized_matmul(const float* x, const void* w, DType w_dtype, const float* bias,
                             float* y, int64_t m, int64_t n, int64_t k, cudaStream_t stream);
// As sy::cpu::ref::head_matmul (kernels/cpu/latent_ops.h: per head h, columns [h*k, (h+1)*k) of x
// times rows [h*n, (h+1)*n) of w into columns [h*n, (h+1)*n) of y) for kI8 and int4 weights, with
// quantized_matmul's kernels and per-row order; kF8 and other dtypes: InvalidValue. heads <=
// 65535.
cudaError_t quantized_head_matmul(const float* x, const void* w, DType w_dtype, float* y, int64_t m,
                                  int64_t heads, int64_t n, int64_t k, cudaStream_t stream);
// grouped_expert_ffn for kF8, kI8 or int4 experts: each row's values equal quantized_matmul +
// silu_mul + quantized_matmul over its expert when the expert has at most kQuantGemvMaxRows rows
// (more rows: quantized_matmul's tensor-core kernel differs in the last bits; this one does not
// change with the row count).
cudaError_t quantized_grouped_expert_ffn(const float* x, const int32_t* offsets, int64_t experts,
                                         const void* const* gate_up_ptrs,
                                         const void* const* down_ptrs, DType w_dtype,
                                         int64_t hidden, int64_t inter, int64_t rows, float* act,
                                         float* y, cudaStream_t stream);

// y[r,:] += bias for every row (kernels/cuda/bias.cu).
cudaError_t add_bias(float* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);

// --- utilities (kernels/cuda/util.cu) ---
// Fills n elements of `dtype` (f32, bf16 or f16) with uniform values in [-scale, scale) from a
// counter-based hash of (seed, i): the same values as sy::cpu::fill_random, on any device.
cudaError_t fill_random(void* data, DType dtype, int64_t n, uint64_t seed, float scale,
                        cudaStream_t stream);
// Fills n f32 values with `value`.
cudaError_t fill_f32(float* data, int64_t n, float value, cudaStream_t stream);
// dst = src with 16-byte loads and stores (bytes % 16 == 0): the copy kernel whose bandwidth is
// the roofline the benchmarks compare against.
cudaError_t copy_bytes(void* dst, const void* src, size_t bytes, cudaStream_t stream);

}  // namespace sy::cuda
