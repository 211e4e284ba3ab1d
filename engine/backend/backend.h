// Backend: the device a model runs on (CPU threads today, a CUDA stream tomorrow). It owns
// device memory and runs the ops of the model; the model holds only Tensors that point into
// memory a Backend allocated, and never dereferences them. Ops are issued in order on the
// backend's stream; Synchronize() waits for them. A Backend is used by one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "engine/core/status.h"
#include "kernels/cpu/ops.h"
#include "kernels/dtype.h"

namespace sy {

class Backend;

// A 2-D view (rows x cols, row-major, contiguous) of device memory. Vectors have rows == 1.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  // Weights only: null, or int32 [cols] in backend memory: column c of this weight multiplies
  // column input_perm[c] of x (GPTQ act-order int4 weights, stored with each group's columns
  // together). Backends whose SupportsInputPermutation() is true apply it; Rows keeps it.
  const int32_t* input_perm = nullptr;

  int64_t numel() const { return rows * cols; }
  size_t row_bytes() const { return dtype_row_bytes(dtype, cols); }
  size_t nbytes() const { return static_cast<size_t>(rows) * row_bytes(); }
  // Rows [begin, begin + n) of this tensor.
  Tensor Rows(int64_t begin, int64_t n) const;
  // The same memory seen with another shape of equal element count (not for kI8, int4, kF8 or
  // kF8Row, whose rows carry their scales).
  Tensor Reshaped(int64_t new_rows, int64_t new_cols) const;
};

// Owns one device allocation; frees it through its backend when destroyed. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Backend* owner, void* data, size_t size) : owner_(owner), data_(data), size_(size) {}
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void Release();

  Backend* owner_ = nullptr;
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Paged-attention metadata, already on the device (int32 tensors).
struct AttentionMetadata {
  Tensor block_tables;  // [num_seqs, max_blocks_per_seq]
  Tensor token_seq;     // [1, tokens]: row of block_tables for each token
  Tensor ctx_len;       // [1, tokens]: keys visible to each token (its position + 1)
  Tensor slots;         // [1, tokens] int64: cache slot receiving each token's K/V
  int block_size = 0;
};

// Weights of one gated (SiLU) feed-forward block: gate and up stacked as [2*inter, hidden].
struct FfnWeights {
  Tensor gate_up;
  Tensor down;  // [hidden, inter]
};

// The routed experts of one MoE layer as device arrays of weight pointers, so that one kernel
// can run all of them (GroupedExpertFfn). Built once by the model; the memory is not owned here.
struct ExpertTable {
  Tensor gate_up_ptrs;  // i64 [1, experts]: each expert's gate_up data
  Tensor down_ptrs;     // i64 [1, experts]: each expert's down data
  // The same pointers on the host (for backends that plan per expert on the host).
  std::span<void* const> gate_up_host;
  std::span<void* const> down_host;
  // Each expert's gate_up input_perm on the host (empty when no expert has one; down has none:
  // the loader moves a down_proj permutation into gate_up's rows).
  std::span<const int32_t* const> gate_up_perm_host;
  DType dtype = DType::kBF16;
  int64_t num_experts = 0;
  int64_t hidden = 0;
  int64_t inter = 0;
};

// A MoE router's settings: sy::cpu::RouterArgs without the bias pointer (the bias is a device
// tensor passed to Backend::Route). sy::cpu::ref::route documents each rule.
struct RouterParams {
  int k = 1;
  cpu::RouterScoring scoring = cpu::RouterScoring::kSoftmax;
  bool renormalize = false;  // norm_topk_prob (DeepSeek-V2: false, see sy::cpu::ref::route)
  float scaling = 1.0f;      // routed_scaling_factor
  int n_group = 1;
  int topk_group = 1;
  cpu::GroupScoring group_scoring = cpu::GroupScoring::kMax;

  cpu::RouterArgs args(const float* correction_bias) const {
    return {k, scoring, renormalize, scaling, correction_bias, n_group, topk_group, group_scoring};
  }
};

// Aborts (SY_CHECK) unless the arguments of Backend::Route fit together as documented there.
void CheckRouteShapes(const Tensor& logits, const RouterParams& params,
                      const Tensor* correction_bias, const Tensor& ids, const Tensor& weights);

// Device memory as the backend sees it at the time of the call.
struct DeviceMemoryInfo {
  size_t free_bytes = 0;
  size_t total_bytes = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // --- memory ---
  virtual StatusOr<DeviceBuffer> Allocate(size_t bytes) = 0;
  virtual void Free(void* data) = 0;
  virtual void CopyToDevice(void* dst, const void* src, size_t bytes) = 0;
  virtual void CopyToHost(void* dst, const void* src, size_t bytes) = 0;
  virtual void Synchronize() = 0;
  // The first error any earlier call hit (kernels run asynchronously on a GPU, so a launch
  // failure or a fault surfaces here, at the latest after Synchronize). Sticky: once set, the
  // backend is unusable. CPU: always Ok.
  virtual Status status() const { return Status::Ok(); }
  // Free and total device memory; Unimplemented where the backend has no fixed pool (CPU).
  virtual StatusOr<DeviceMemoryInfo> MemoryInfo() const {
    return Status::Unimplemented(std::string(name()) + " backend has no device memory pool");
  }
  // The KV cache element type this backend computes attention in (kF32 or kBF16).
  virtual DType kv_cache_dtype() const { return DType::kF32; }

  // --- graphs: record the ops issued between BeginCapture and EndCapture once, then replay
  // them with one launch. Only calls whose shapes and pointers stay fixed may be recorded (no
  // Copy*, no host-side decisions from device data). Unsupported on CPU. ---
  virtual bool SupportsGraphs() const { return false; }
  virtual Status BeginCapture() { return Status::Unimplemented("graphs"); }
  // Ends the capture and returns a handle for Replay.
  virtual StatusOr<int> EndCapture() { return Status::Unimplemented("graphs"); }
  virtual Status Replay(int graph) { return Status::Unimplemented("graphs"); }

  // Whether MatMul, Ffn and the expert FFNs take weight matrices in `dtype`.
  virtual bool SupportsWeightDType(DType dtype) const {
    return dtype == DType::kF32 || dtype == DType::kBF16 || dtype == DType::kF16;
  }
  // Whether HeadMatMul (MLA's absorbed projections) takes weights in `dtype`.
  virtual bool SupportsHeadMatMulDType(DType dtype) const { return SupportsWeightDType(dtype); }
  // Whether MatMul, Ffn and the expert FFNs apply weights' Tensor::input_perm.
  virtual bool SupportsInputPermutation() const { return false; }

  // --- ops: activations are f32; weights may be f32, bf16 or f16 (and kI8 or int4 where
  // SupportsWeightDType says so) ---
  // out[i,:] = table[ids[i],:]; ids is int32 [1, n].
  virtual void Embedding(const Tensor& ids, const Tensor& table, const Tensor& out) = 0;
  // y[m,n] = x[m,k] . w[n,k]^T (+ bias[1,n]).
  virtual void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) = 0;
  // y = rms_norm(x) * w per row; x and y may alias.
  virtual void RmsNorm(const Tensor& x, const Tensor& w, float eps, const Tensor& y) = 0;
  // residual += x; y = rms_norm(residual) * w.
  virtual void AddRmsNorm(const Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                          const Tensor& y) = 0;
  // In-place rotary embedding of the first rotary_dim of each head of x [tokens,
  // heads*head_dim] at int32 positions: rotate-half pairs (i, i + rotary_dim/2), or with
  // `interleaved` adjacent pairs (2i, 2i+1) (DeepSeek-V2/V3; sy::cpu::ref::rope_interleaved).
  virtual void Rope(const Tensor& x, int64_t head_dim, int64_t rotary_dim, const Tensor& positions,
                    const Tensor& inv_freq, float attn_scale, bool interleaved) = 0;
  // Writes K and V rows of the batch into a layer's paged cache at md.slots.
  virtual void KvWrite(const Tensor& k, const Tensor& v, const AttentionMetadata& md,
                       const Tensor& k_cache, const Tensor& v_cache) = 0;
  // Causal (optionally sliding-window) grouped-query attention over the paged cache.
  virtual void PagedAttention(const Tensor& q, const AttentionMetadata& md, const Tensor& k_cache,
                              const Tensor& v_cache, int n_heads, int n_kv_heads, int head_dim,
                              int sliding_window, float scale, const Tensor& out) = 0;
  // Router: ids/weights [tokens, k] (int32 / f32) from logits [tokens, experts] as
  // sy::cpu::ref::route; correction_bias: f32 [1, experts] or null. experts % n_group == 0,
  // 1 <= topk_group <= n_group <= 32, k <= experts; kTopTwoSum groups hold >= 2 experts.
  virtual void Route(const Tensor& logits, const RouterParams& params,
                     const Tensor* correction_bias, const Tensor& ids, const Tensor& weights) = 0;
  // Experts of one layer over tokens sorted by expert: rows [offsets[e], offsets[e+1]) of x go
  // through experts[e]; y gets the results in the same order. `scratch` holds at least
  // x.rows * (3 * max inter) floats. offsets live on the host (num_experts + 1 entries).
  virtual void ExpertFfn(const Tensor& x, std::span<const int64_t> offsets,
                         std::span<const FfnWeights> experts, const Tensor& scratch,
                         const Tensor& y) = 0;
  // y = ffn(x) for a dense gated FFN; scratch holds x.rows * 3 * inter floats.
  virtual void Ffn(const Tensor& x, const FfnWeights& w, const Tensor& scratch,
                   const Tensor& y) = 0;
  // dst[i,:] = src[idx[i],:] (idx int32 [1, n]).
  virtual void GatherRows(const Tensor& src, const Tensor& idx, const Tensor& dst) = 0;
  // x = 0.
  virtual void Zero(const Tensor& x) = 0;
  // x = sigmoid(x) elementwise.
  virtual void Sigmoid(const Tensor& x) = 0;
  // dst[r,:] += gate[r] * src[r,:] for gate [rows, 1].
  virtual void AddGatedRows(const Tensor& src, const Tensor& gate, const Tensor& dst) = 0;
  // y += x elementwise (same element count).
  virtual void Add(const Tensor& x, const Tensor& y) = 0;

  // --- MoE on the device (no host round trip, so a step can be captured in a graph) ---
  // Groups the (token, choice) pairs of ids int32 [tokens, k] by expert: offsets int32
  // [1, experts + 1]; sorted int32 [3, tokens*k] (see sy::cpu::ref::sort_by_expert).
  virtual void SortByExpert(const Tensor& ids, int64_t num_experts, const Tensor& offsets,
                            const Tensor& sorted) = 0;
  // ExpertFfn with the offsets on the device (int32 [1, experts + 1]) and the experts in a
  // table; scratch holds at least x.rows * 3 * table.inter floats.
  virtual void GroupedExpertFfn(const Tensor& x, const Tensor& offsets, const ExpertTable& table,
                                const Tensor& scratch, const Tensor& y) = 0;
  // out[t,:] = sum of weights[t,c] * ys[inverse[t,c],:] over c, summed in ascending position
  // (inverse and weights [tokens, k]; see sy::cpu::ref::combine_experts).
  virtual void CombineExperts(const Tensor& ys, const Tensor& inverse, const Tensor& weights,
                              const Tensor& out) = 0;
  // t = uniform random values in [-scale, scale) from (seed, element index); the same bits on
  // every backend (sy::cpu::fill_random).
  virtual void FillRandom(const Tensor& t, uint64_t seed, float scale) = 0;

  // --- multi-head latent attention (DeepSeek MLA, absorbed form; kernels/cpu/latent_ops.h) ---
  // Per-head products: y[t, h*n + j] = sum_i x[t, h*k + i] * w[h*n + j, i] for x [T, heads*k],
  // w [heads*n, k] in a dtype SupportsWeightDType accepts, y [T, heads*n].
  virtual void HeadMatMul(const Tensor& x, const Tensor& w, const Tensor& y, int heads) = 0;
  // Writes latent [T, L] and rope [T, R] into columns [0, L) and [L, L + R) of cache rows
  // md.slots (cache [slots, L + R] of kv_cache_dtype()); negative slots are skipped.
  virtual void LatentKvWrite(const Tensor& latent, const Tensor& rope, const AttentionMetadata& md,
                             const Tensor& cache) = 0;
  // out [T, n_heads*latent_dim] = per head, the softmax-weighted sum of the cached latents of the
  // token's first ctx_len positions, scored by scale * (q_latent . c + q_rope . k_pe), for
  // q_latent [T, n_heads*latent_dim] and q_rope [T, n_heads*rope_dim]; zeros where ctx_len <= 0.
  virtual void LatentAttention(const Tensor& q_latent, const Tensor& q_rope,
                               const AttentionMetadata& md, const Tensor& cache, int n_heads,
                               int latent_dim, int rope_dim, float scale, const Tensor& out) = 0;
};

}  // namespace sy
