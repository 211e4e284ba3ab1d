// CpuBackend: runs the model's ops with the vectorised kernels in kernels/cpu on a pool of
// threads. Device memory is ordinary 64-byte-aligned host memory; ops complete before returning.
#pragma once

#include <memory>
#include <vector>

#include "engine/backend/backend.h"
#include "kernels/cpu/thread_pool.h"

namespace sy {

class CpuBackend final : public Backend {
 public:
  // kv_dtype: the KV cache element type, kF32, kBF16 or kF8Row (kernels/kv_rows.h).
  explicit CpuBackend(int n_threads, DType kv_dtype = DType::kF32);
  ~CpuBackend() override;

  std::string_view name() const override { return "cpu"; }
  DType kv_cache_dtype() const override { return kv_dtype_; }
  int n_threads() const;

  StatusOr<DeviceBuffer> Allocate(size_t bytes) override;
  void Free(void* data) override;
  void CopyToDevice(void* dst, const void* src, size_t bytes) override;
  void CopyToHost(void* dst, const void* src, size_t bytes) override;
  void Synchronize() override {}
  // f32, bf16, f16, int8 (DType::kI8), int4 (DType::kI4G*) and fp8 (DType::kF8) weight matrices.
  bool SupportsWeightDType(DType dtype) const override;
  // MatMul gathers x's columns in a weight's input_perm order before the kernel.
  bool SupportsInputPermutation() const override { return true; }

  void Embedding(const Tensor& ids, const Tensor& table, const Tensor& out) override;
  void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override;
  void RmsNorm(const Tensor& x, const Tensor& w, float eps, const Tensor& y) override;
  void AddRmsNorm(const Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                  const Tensor& y) override;
  void Rope(const Tensor& x, int64_t head_dim, int64_t rotary_dim, const Tensor& positions,
            const Tensor& inv_freq, float attn_scale, bool interleaved) override;
  void KvWrite(const Tensor& k, const Tensor& v, const AttentionMetadata& md, const Tensor& k_cache,
               const Tensor& v_cache) override;
  void PagedAttention(const Tensor& q, const AttentionMetadata& md, const Tensor& k_cache,
                      const Tensor& v_cache, int n_heads, int n_kv_heads, int head_dim,
                      int sliding_window, float scale, const Tensor& out) override;
  void Route(const Tensor& logits, const RouterParams& params, const Tensor* correction_bias,
             const Tensor& ids, const Tensor& weights) override;
  void ExpertFfn(const Tensor& x, std::span<const int64_t> offsets,
                 std::span<const FfnWeights> experts, const Tensor& scratch,
                 const Tensor& y) override;
  void Ffn(const Tensor& x, const FfnWeights& w, const Tensor& scratch, const Tensor& y) override;
  void GatherRows(const Tensor& src, const Tensor& idx, const Tensor& dst) override;
  void Zero(const Tensor& x) override;
  void Sigmoid(const Tensor& x) override;
  void AddGatedRows(const Tensor& src, const Tensor& gate, const Tensor& dst) override;
  void Add(const Tensor& x, const Tensor& y) override;
  void SortByExpert(const Tensor& ids, int64_t num_experts, const Tensor& offsets,
                    const Tensor& sorted) override;
  void GroupedExpertFfn(const Tensor& x, const Tensor& offsets, const ExpertTable& table,
                        const Tensor& scratch, const Tensor& y) override;
  void CombineExperts(const Tensor& ys, const Tensor& inverse, const Tensor& weights,
                      const Tensor& out) override;
  void FillRandom(const Tensor& t, uint64_t seed, float scale) override;
  void HeadMatMul(const Tensor& x, const Tensor& w, const Tensor& y, int heads) override;
  void LatentKvWrite(const Tensor& latent, const Tensor& rope, const AttentionMetadata& md,
                     const Tensor& cache) override;
  void LatentAttention(const Tensor& q_latent, const Tensor& q_rope, const AttentionMetadata& md,
                       const Tensor& cache, int n_heads, int latent_dim, int rope_dim, float scale,
                       const Tensor& out) override;

 private:
  // x with its columns in the order `perm` gives (in permuted_x_).
  const float* PermutedColumns(const Tensor& x, const int32_t* perm);

  std::unique_ptr<cpu::ThreadPool> pool_;
  std::vector<float> permuted_x_;
  DType kv_dtype_;
};

}  // namespace sy
