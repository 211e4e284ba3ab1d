// CudaBackend: runs the model's ops on one NVIDIA GPU with the kernels in kernels/cuda and
// cuBLAS, in order on one stream. Device memory comes from cudaMalloc, at start only (weights,
// KV pool, workspace, this backend's scratch); ops never allocate once the scratch is sized.
// Errors are sticky (status()); graphs record a step once and replay it with one launch.
#pragma once

#include <memory>
#include <string>

#include "engine/backend/backend.h"

namespace sy {

struct CudaBackendOptions {
  int device = 0;                 // CUDA device ordinal
  DType kv_dtype = DType::kBF16;  // KV cache element type: kBF16 or kF32
  size_t blas_workspace_bytes = 32u << 20;
};

class CudaBackend final : public Backend {
 public:
  // Unavailable when no such device can be used (names the CUDA error).
  static StatusOr<std::unique_ptr<CudaBackend>> Create(const CudaBackendOptions& options);
  ~CudaBackend() override;

  std::string_view name() const override { return "cuda"; }
  // e.g. "NVIDIA H100 80GB HBM3 (cuda:0, sm_90, 132 SMs)".
  const std::string& description() const { return description_; }

  StatusOr<DeviceBuffer> Allocate(size_t bytes) override;
  void Free(void* data) override;
  void CopyToDevice(void* dst, const void* src, size_t bytes) override;
  void CopyToHost(void* dst, const void* src, size_t bytes) override;
  void Synchronize() override;
  Status status() const override { return error_; }
  StatusOr<DeviceMemoryInfo> MemoryInfo() const override;
  DType kv_cache_dtype() const override { return options_.kv_dtype; }

  bool SupportsGraphs() const override { return true; }
  // f32, bf16, f16, fp8 (DType::kF8, kernels/cuda/fp8_gemm.cu), int8 and int4 (DType::kI8,
  // kI4G32/64/128, kernels/cuda/quant_gemm.cu) weight matrices.
  bool SupportsWeightDType(DType dtype) const override {
    return dtype == DType::kF8 || dtype == DType::kI8 || is_int4(dtype) ||
           Backend::SupportsWeightDType(dtype);
  }
  // HeadMatMul: as MatMul but fp8 (fp8_matmul takes no per-head strides).
  bool SupportsHeadMatMulDType(DType dtype) const override {
    return dtype != DType::kF8 && SupportsWeightDType(dtype);
  }
  Status BeginCapture() override;
  StatusOr<int> EndCapture() override;
  Status Replay(int graph) override;

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

  // Bytes of scratch this backend holds (grown only outside graph capture, at warm-up).
  size_t scratch_bytes() const { return scratch_size_; }

 private:
  struct Impl;
  explicit CudaBackend(const CudaBackendOptions& options);
  // Makes this backend's device current on the calling thread.
  void Use() const;
  // Records the first failure; later calls become no-ops.
  void Check(int cuda_error, const char* what);
  void CheckBlas(int blas_status, const char* what);
  bool failed() const { return !error_.ok(); }
  // At least `bytes` of scratch, or null (error recorded) when it would have to grow while a
  // graph is being captured.
  void* Scratch(size_t bytes);
  // y = x . w^T through cuBLAS (x converted to w's dtype in scratch when w is 16-bit).
  void BlasMatMul(const Tensor& x, const Tensor& w, const Tensor& y, void* x_converted);
  // The experts one by one through MatMul (cuBLAS, or the int8/int4 kernels), with the offsets
  // read back to the host (prefill).
  void ExpertsByBlas(const Tensor& x, const Tensor& offsets, const ExpertTable& table,
                     const Tensor& scratch, const Tensor& y);

  CudaBackendOptions options_;
  std::string description_;
  std::unique_ptr<Impl> impl_;
  Status error_;
  bool capturing_ = false;
  void* scratch_ = nullptr;
  size_t scratch_size_ = 0;
};

}  // namespace sy
