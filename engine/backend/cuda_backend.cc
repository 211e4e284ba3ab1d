#include "engine/backend/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <vector>

#include "engine/core/check.h"
#include "kernels/cuda/latent_ops.h"
#include "kernels/cuda/ops.h"

namespace sy {
namespace {

template <typename T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.data);
}

std::string Mib(size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

cudaDataType_t BlasType(DType t) {
  switch (t) {
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
    default:
      return CUDA_R_32F;
  }
}

// Above this many rows per expert on average (and outside graph capture) the experts of a
// layer run as one tensor-core product each (cuBLAS; int8/int4: quantized_matmul's wmma kernel);
// below, one grouped kernel streams the weights (decode).
constexpr int64_t kBlasRowsPerExpert = 16;

}  // namespace

struct CudaBackend::Impl {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  void* blas_workspace = nullptr;
  std::vector<cudaGraphExec_t> graphs;
  cudaGraph_t capture_graph = nullptr;
  std::vector<int32_t> offsets_host;
  std::vector<void*> retired;  // outgrown scratch buffers
};

CudaBackend::CudaBackend(const CudaBackendOptions& options)
    : options_(options), impl_(std::make_unique<Impl>()) {}

StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const CudaBackendOptions& options) {
  int count = 0;
  if (cudaError_t err = cudaGetDeviceCount(&count); err != cudaSuccess || count == 0) {
    return Status::Unavailable(std::string("no CUDA device: ") +
                               (err != cudaSuccess ? cudaGetErrorString(err) : "none found"));
  }
  if (options.device < 0 || options.device >= count) {
    return Status::InvalidArgument("cuda:" + std::to_string(options.device) + " does not exist (" +
                                   std::to_string(count) + " CUDA device(s))");
  }
  if (options.kv_dtype != DType::kBF16 && options.kv_dtype != DType::kF32) {
    return Status::InvalidArgument("the CUDA KV cache holds bf16 or f32");
  }
  std::unique_ptr<CudaBackend> b(new CudaBackend(options));
  Impl& im = *b->impl_;
  auto fail = [&](const char* what, cudaError_t err) {
    return Status::Unavailable(std::string(what) + ": " + cudaGetErrorString(err));
  };
  if (cudaError_t err = cudaSetDevice(options.device); err != cudaSuccess) {
    return fail("cudaSetDevice", err);
  }
  cudaDeviceProp prop{};
  if (cudaError_t err = cudaGetDeviceProperties(&prop, options.device); err != cudaSuccess) {
    return fail("cudaGetDeviceProperties", err);
  }
  b->description_ = std::string(prop.name) + " (cuda:" + std::to_string(options.device) + ", sm_" +
                    std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
                    std::to_string(prop.multiProcessorCount) + " SMs, " + Mib(prop.totalGlobalMem) +
                    ")";
  if (cudaError_t err = cudaStreamCreateWithFlags(&im.stream, cudaStreamNonBlocking);
      err != cudaSuccess) {
    return fail("cudaStreamCreate", err);
  }
  if (cublasCreate(&im.blas) != CUBLAS_STATUS_SUCCESS) {
    return Status::Unavailable("cublasCreate failed");
  }
  // A fixed workspace keeps cuBLAS from allocating during graph capture.
  if (cudaError_t err = cudaMalloc(&im.blas_workspace, options.blas_workspace_bytes);
      err != cudaSuccess) {
    return fail("cudaMalloc (cuBLAS workspace)", err);
  }
  if (cublasSetStream(im.blas, im.stream) != CUBLAS_STATUS_SUCCESS ||
      cublasSetWorkspace(im.blas, im.blas_workspace, options.blas_workspace_bytes) !=
          CUBLAS_STATUS_SUCCESS ||
      cublasSetMathMode(im.blas, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
    return Status::Unavailable("cuBLAS set-up failed");
  }
  spdlog::info("cuda backend: {}", b->description_);
  return b;
}

CudaBackend::~CudaBackend() {
  Use();
  cudaStreamSynchronize(impl_->stream);
  for (cudaGraphExec_t g : impl_->graphs) cudaGraphExecDestroy(g);
  cudaFree(scratch_);
  for (void* p : impl_->retired) cudaFree(p);
  cudaFree(impl_->blas_workspace);
  if (impl_->blas != nullptr) cublasDestroy(impl_->blas);
  if (impl_->stream != nullptr) cudaStreamDestroy(impl_->stream);
}

void CudaBackend::Use() const {
  // CUDA's current device is per thread; the engine calls from threads other than the creator's.
  thread_local int current = -1;
  if (current != options_.device) {
    cudaSetDevice(options_.device);
    current = options_.device;
  }
}

void CudaBackend::Check(int err, const char* what) {
  if (err == cudaSuccess || failed()) return;
  error_ = Status::Internal(std::string("CUDA error in ") + what + ": " +
                            cudaGetErrorString(static_cast<cudaError_t>(err)));
  spdlog::error("{}", error_.message());
}

void CudaBackend::CheckBlas(int st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS || failed()) return;
  error_ = Status::Internal(std::string("cuBLAS error in ") + what + ": " +
                            cublasGetStatusString(static_cast<cublasStatus_t>(st)));
  spdlog::error("{}", error_.message());
}

StatusOr<DeviceBuffer> CudaBackend::Allocate(size_t bytes) {
  Use();
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, std::max<size_t>(bytes, 256));
  if (err != cudaSuccess) {
    cudaGetLastError();  // an allocation failure is not sticky for the context
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    return Status::ResourceExhausted("cannot allocate " + Mib(bytes) + " on " + description_ +
                                     ": " + cudaGetErrorString(err) + " (" + Mib(free) +
                                     " free of " + Mib(total) + ")");
  }
  return DeviceBuffer(this, p, bytes);
}

void CudaBackend::Free(void* data) {
  Use();
  // Freeing memory that queued work may still use would be a race: wait for the stream.
  cudaStreamSynchronize(impl_->stream);
  cudaFree(data);
}

void CudaBackend::CopyToDevice(void* dst, const void* src, size_t bytes) {
  Use();
  if (bytes == 0 || failed()) return;
  // From pageable memory this returns once `src` has been staged, so the caller may reuse it.
  Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, impl_->stream), "CopyToDevice");
}

void CudaBackend::CopyToHost(void* dst, const void* src, size_t bytes) {
  Use();
  if (bytes == 0 || failed()) return;
  Check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, impl_->stream), "CopyToHost");
  Synchronize();
}

void CudaBackend::Synchronize() {
  Use();
  if (failed()) return;
  Check(cudaStreamSynchronize(impl_->stream), "Synchronize");
}

StatusOr<DeviceMemoryInfo> CudaBackend::MemoryInfo() const {
  Use();
  DeviceMemoryInfo info;
  if (cudaError_t err = cudaMemGetInfo(&info.free_bytes, &info.total_bytes); err != cudaSuccess) {
    return Status::Internal(std::string("cudaMemGetInfo: ") + cudaGetErrorString(err));
  }
  return info;
}

Status CudaBackend::BeginCapture() {
  Use();
  SY_RETURN_IF_ERROR(error_);
  if (capturing_) return Status::Internal("a graph capture is already open");
  const cudaError_t err = cudaStreamBeginCapture(impl_->stream, cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) {
    return Status::Internal(std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(err));
  }
  capturing_ = true;
  return Status::Ok();
}

StatusOr<int> CudaBackend::EndCapture() {
  Use();
  if (!capturing_) return Status::Internal("no graph capture is open");
  capturing_ = false;
  cudaGraph_t graph = nullptr;
  cudaError_t err = cudaStreamEndCapture(impl_->stream, &graph);
  // An op that failed during capture (e.g. scratch that would have had to grow) invalidates it.
  SY_RETURN_IF_ERROR(error_);
  if (err != cudaSuccess) {
    return Status::Internal(std::string("cudaStreamEndCapture: ") + cudaGetErrorString(err));
  }
  cudaGraphExec_t exec = nullptr;
  err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (err != cudaSuccess) {
    return Status::Internal(std::string("cudaGraphInstantiate: ") + cudaGetErrorString(err));
  }
  impl_->graphs.push_back(exec);
  return static_cast<int>(impl_->graphs.size()) - 1;
}

Status CudaBackend::Replay(int graph) {
  Use();
  SY_RETURN_IF_ERROR(error_);
  if (graph < 0 || graph >= static_cast<int>(impl_->graphs.size())) {
    return Status::InvalidArgument("no graph " + std::to_string(graph));
  }
  Check(cudaGraphLaunch(impl_->graphs[graph], impl_->stream), "cudaGraphLaunch");
  return error_;
}

void* CudaBackend::Scratch(size_t bytes) {
  if (bytes <= scratch_size_) return scratch_;
  if (capturing_) {
    if (!failed()) {
      error_ = Status::Internal("backend scratch would grow to " + Mib(bytes) +
                                " during graph capture (the warm-up step must size it)");
    }
    return nullptr;
  }
  // Graphs captured earlier may hold the old buffer's address: keep it until destruction.
  if (scratch_ != nullptr) impl_->retired.push_back(scratch_);
  scratch_ = nullptr;
  scratch_size_ = 0;
  const size_t want = std::max({bytes, size_t{1} << 20, scratch_size_ * 3 / 2});
  if (cudaError_t err = cudaMalloc(&scratch_, want); err != cudaSuccess) {
    cudaGetLastError();
    if (!failed()) {
      error_ = Status::ResourceExhausted("cannot allocate " + Mib(want) +
                                         " of backend scratch: " + cudaGetErrorString(err));
    }
    return nullptr;
  }
  scratch_size_ = want;
  return scratch_;
}

void CudaBackend::Embedding(const Tensor& ids, const Tensor& table, const Tensor& out) {
  Use();
  SY_CHECK(ids.numel() == out.rows && table.cols == out.cols);
  if (failed()) return;
  Check(cuda::embedding(ptr<int32_t>(ids), out.rows, table.data, table.dtype, table.cols,
                        ptr<float>(out), impl_->stream),
        "embedding");
}

void CudaBackend::BlasMatMul(const Tensor& x, const Tensor& w, const Tensor& y, void* x_converted) {
  const float alpha = 1.0f, beta = 0.0f;
  const void* a = x.data;
  if (w.dtype != DType::kF32) {
    Check(cuda::convert_f32(ptr<float>(x), x.numel(), w.dtype, x_converted, impl_->stream),
          "convert_f32");
    a = x_converted;
  }
  // Row-major y[m,n] = x[m,k] w[n,k]^T is column-major y^T = w^T(op T) . x^T.
  CheckBlas(cublasGemmEx(impl_->blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(w.rows),
                         static_cast<int>(x.rows), static_cast<int>(x.cols), &alpha, w.data,
                         BlasType(w.dtype), static_cast<int>(w.cols), a, BlasType(w.dtype),
                         static_cast<int>(x.cols), &beta, y.data, CUDA_R_32F,
                         static_cast<int>(y.cols), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx");
}

void CudaBackend::MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  Use();
  SY_CHECK(x.cols == w.cols && y.rows == x.rows && y.cols == w.rows);
  if (failed() || x.rows == 0) return;
  if (cuda::is_quantized_weight(w.dtype)) {  // fp8, int8, int4 rows: kernels/cuda, any rows
    Check(cuda::quantized_matmul(ptr<float>(x), w.data, w.dtype,
                                 bias != nullptr ? ptr<float>(*bias) : nullptr, ptr<float>(y),
                                 x.rows, w.rows, w.cols, impl_->stream),
          "quantized_matmul");
    return;
  }
  if (x.rows <= cuda::kSkinnyMaxRows) {
    Check(cuda::skinny_matmul(ptr<float>(x), w.data, w.dtype,
                              bias != nullptr ? ptr<float>(*bias) : nullptr, ptr<float>(y), x.rows,
                              w.rows, w.cols, impl_->stream),
          "skinny_matmul");
    return;
  }
  void* converted = nullptr;
  if (w.dtype != DType::kF32) {
    converted = Scratch(static_cast<size_t>(x.numel()) * 2);
    if (converted == nullptr) return;
  }
  BlasMatMul(x, w, y, converted);
  if (bias != nullptr) {
    Check(cuda::add_bias(ptr<float>(y), ptr<float>(*bias), y.rows, y.cols, impl_->stream),
          "add_bias");
  }
}

void CudaBackend::RmsNorm(const Tensor& x, const Tensor& w, float eps, const Tensor& y) {
  Use();
  SY_CHECK(x.numel() == y.numel() && w.numel() == x.cols);
  if (failed()) return;
  Check(cuda::rms_norm(ptr<float>(x), ptr<float>(w), ptr<float>(y), x.rows, x.cols, eps,
                       impl_->stream),
        "rms_norm");
}

void CudaBackend::AddRmsNorm(const Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                             const Tensor& y) {
  Use();
  SY_CHECK(residual.numel() == x.numel() && x.numel() == y.numel() && w.numel() == x.cols);
  if (failed()) return;
  Check(cuda::add_rms_norm(ptr<float>(residual), ptr<float>(x), ptr<float>(w), ptr<float>(y),
                           x.rows, x.cols, eps, impl_->stream),
        "add_rms_norm");
}

void CudaBackend::Rope(const Tensor& x, int64_t head_dim, int64_t rotary_dim,
                       const Tensor& positions, const Tensor& inv_freq, float attn_scale,
                       bool interleaved) {
  Use();
  SY_CHECK(positions.numel() == x.rows && x.cols % head_dim == 0);
  if (failed()) return;
  Check((interleaved ? cuda::rope_interleaved : cuda::rope_neox)(
            ptr<float>(x), x.rows, x.cols / head_dim, head_dim, rotary_dim, ptr<int32_t>(positions),
            ptr<float>(inv_freq), attn_scale, impl_->stream),
        interleaved ? "rope_interleaved" : "rope_neox");
}

void CudaBackend::KvWrite(const Tensor& k, const Tensor& v, const AttentionMetadata& md,
                          const Tensor& k_cache, const Tensor& v_cache) {
  Use();
  SY_CHECK(k.rows == v.rows && k.cols == k_cache.cols && md.slots.numel() == k.rows);
  if (failed()) return;
  Check(cuda::kv_write(ptr<float>(k), ptr<float>(v), k.rows, k.cols, ptr<int64_t>(md.slots),
                       k_cache.data, v_cache.data, k_cache.dtype, impl_->stream),
        "kv_write");
}

void CudaBackend::PagedAttention(const Tensor& q, const AttentionMetadata& md,
                                 const Tensor& k_cache, const Tensor& v_cache, int n_heads,
                                 int n_kv_heads, int head_dim, int sliding_window, float scale,
                                 const Tensor& out) {
  Use();
  SY_CHECK(q.numel() == out.numel() && q.cols == n_heads * head_dim);
  if (failed() || q.rows == 0) return;
  cuda::PagedAttentionArgs a;
  a.q = ptr<float>(q);
  a.out = ptr<float>(out);
  a.k_cache = k_cache.data;
  a.v_cache = v_cache.data;
  a.cache_dtype = k_cache.dtype;
  a.block_tables = ptr<int32_t>(md.block_tables);
  a.token_seq = ptr<int32_t>(md.token_seq);
  a.ctx_len = ptr<int32_t>(md.ctx_len);
  a.tokens = q.rows;
  a.num_seqs = static_cast<int>(md.block_tables.rows);
  a.n_heads = n_heads;
  a.n_kv_heads = n_kv_heads;
  a.head_dim = head_dim;
  a.block_size = md.block_size;
  a.max_blocks_per_seq = static_cast<int>(md.block_tables.cols);
  a.sliding_window = sliding_window;
  a.scale = scale;
  a.scratch = Scratch(cuda::paged_attention_scratch_bytes(q.rows, n_heads, head_dim));
  if (a.scratch == nullptr) return;
  Check(cuda::paged_attention(a, impl_->stream), "paged_attention");
}

void CudaBackend::Route(const Tensor& logits, const RouterParams& params,
                        const Tensor* correction_bias, const Tensor& ids, const Tensor& weights) {
  Use();
  CheckRouteShapes(logits, params, correction_bias, ids, weights);
  if (failed()) return;
  const float* bias = correction_bias != nullptr ? ptr<float>(*correction_bias) : nullptr;
  Check(cuda::route(ptr<float>(logits), logits.rows, logits.cols, params.args(bias),
                    ptr<int32_t>(ids), ptr<float>(weights), impl_->stream),
        "route");
}

void CudaBackend::Ffn(const Tensor& x, const FfnWeights& w, const Tensor& scratch,
                      const Tensor& y) {
  Use();
  const int64_t inter = w.down.cols;
  SY_CHECK(scratch.numel() >= x.rows * 3 * inter);
  if (failed() || x.rows == 0) return;
  const Tensor gate_up{scratch.data, DType::kF32, x.rows, 2 * inter};
  const Tensor act{ptr<float>(scratch) + x.rows * 2 * inter, DType::kF32, x.rows, inter};
  MatMul(x, w.gate_up, nullptr, gate_up);
  Check(cuda::silu_mul(ptr<float>(gate_up), ptr<float>(act), x.rows, inter, impl_->stream),
        "silu_mul");
  MatMul(act, w.down, nullptr, y);
}

void CudaBackend::ExpertFfn(const Tensor& x, std::span<const int64_t> offsets,
                            std::span<const FfnWeights> experts, const Tensor& scratch,
                            const Tensor& y) {
  Use();
  SY_CHECK(offsets.size() == experts.size() + 1 && offsets.back() == x.rows);
  for (size_t e = 0; e < experts.size(); ++e) {
    const int64_t n = offsets[e + 1] - offsets[e];
    if (n > 0) Ffn(x.Rows(offsets[e], n), experts[e], scratch, y.Rows(offsets[e], n));
  }
}

void CudaBackend::ExpertsByBlas(const Tensor& x, const Tensor& offsets, const ExpertTable& table,
                                const Tensor& scratch, const Tensor& y) {
  std::vector<int32_t>& off = impl_->offsets_host;
  off.resize(table.num_experts + 1);
  CopyToHost(off.data(), offsets.data, off.size() * sizeof(int32_t));
  if (failed()) return;
  const std::span<void*const> gate_up = table.gate_up_host, down = table.down_host;
  for (int64_t e = 0; e < table.num_experts; ++e) {
    const int64_t n = off[e + 1] - off[e];
    if (n <= 0) continue;
    const FfnWeights w{Tensor{gate_up[e], table.dtype, 2 * table.inter, table.hidden},
                       Tensor{down[e], table.dtype, table.hidden, table.inter}};
    Ffn(x.Rows(off[e], n), w, scratch, y.Rows(off[e], n));
  }
}

void CudaBackend::GroupedExpertFfn(const Tensor& x, const Tensor& offsets, const ExpertTable& table,
                                   const Tensor& scratch, const Tensor& y) {
  Use();
  SY_CHECK(offsets.numel() == table.num_experts + 1 && x.cols == table.hidden &&
           scratch.numel() >= x.rows * 3 * table.inter);
  if (failed() || x.rows == 0) return;
  // Prefill: one tensor-core product per expert, through MatMul (cuBLAS, or int8/int4's wmma
  // kernel). FP8 keeps its grouped kernel: its per-expert matmul is the same CUDA-core kernel.
  if (table.dtype != DType::kF8 && !capturing_ &&
      x.rows >= kBlasRowsPerExpert * table.num_experts &&
      static_cast<int64_t>(table.gate_up_host.size()) == table.num_experts) {
    ExpertsByBlas(x, offsets, table, scratch, y);
    return;
  }
  if (cuda::is_quantized_weight(table.dtype)) {
    Check(cuda::quantized_grouped_expert_ffn(
              ptr<float>(x), ptr<int32_t>(offsets), table.num_experts,
              static_cast<const void* const*>(table.gate_up_ptrs.data),
              static_cast<const void* const*>(table.down_ptrs.data), table.dtype, table.hidden,
              table.inter, x.rows, ptr<float>(scratch), ptr<float>(y), impl_->stream),
          "quantized_grouped_expert_ffn");
    return;
  }
  Check(cuda::grouped_expert_ffn(ptr<float>(x), ptr<int32_t>(offsets), table.num_experts,
                                 static_cast<const void* const*>(table.gate_up_ptrs.data),
                                 static_cast<const void* const*>(table.down_ptrs.data), table.dtype,
                                 table.hidden, table.inter, x.rows, ptr<float>(scratch),
                                 ptr<float>(y), impl_->stream),
        "grouped_expert_ffn");
}

void CudaBackend::GatherRows(const Tensor& src, const Tensor& idx, const Tensor& dst) {
  Use();
  SY_CHECK(idx.numel() == dst.rows && src.cols == dst.cols);
  if (failed()) return;
  Check(cuda::gather_rows(ptr<float>(src), ptr<int32_t>(idx), dst.rows, dst.cols, ptr<float>(dst),
                          impl_->stream),
        "gather_rows");
}

void CudaBackend::Zero(const Tensor& x) {
  Use();
  if (failed() || x.nbytes() == 0) return;
  Check(cudaMemsetAsync(x.data, 0, x.nbytes(), impl_->stream), "Zero");
}

void CudaBackend::Sigmoid(const Tensor& x) {
  Use();
  if (failed()) return;
  Check(cuda::sigmoid(ptr<float>(x), x.numel(), impl_->stream), "sigmoid");
}

void CudaBackend::AddGatedRows(const Tensor& src, const Tensor& gate, const Tensor& dst) {
  Use();
  SY_CHECK(src.numel() == dst.numel() && gate.numel() == src.rows);
  if (failed()) return;
  Check(cuda::add_gated_rows(ptr<float>(src), ptr<float>(gate), src.rows, src.cols, ptr<float>(dst),
                             impl_->stream),
        "add_gated_rows");
}

void CudaBackend::Add(const Tensor& x, const Tensor& y) {
  Use();
  SY_CHECK(x.numel() == y.numel());
  if (failed()) return;
  Check(cuda::add(ptr<float>(x), ptr<float>(y), ptr<float>(y), y.numel(), impl_->stream), "add");
}

void CudaBackend::SortByExpert(const Tensor& ids, int64_t num_experts, const Tensor& offsets,
                               const Tensor& sorted) {
  Use();
  SY_CHECK(offsets.numel() == num_experts + 1 && sorted.rows == 3 && sorted.cols == ids.numel());
  if (failed()) return;
  Check(cuda::sort_by_expert(ptr<int32_t>(ids), ids.rows, static_cast<int>(ids.cols), num_experts,
                             ptr<int32_t>(offsets), ptr<int32_t>(sorted), impl_->stream),
        "sort_by_expert");
}

void CudaBackend::CombineExperts(const Tensor& ys, const Tensor& inverse, const Tensor& weights,
                                 const Tensor& out) {
  Use();
  SY_CHECK(inverse.numel() == weights.numel() && inverse.rows == out.rows && ys.cols == out.cols &&
           ys.rows == inverse.numel());
  if (failed()) return;
  Check(cuda::combine_experts(ptr<float>(ys), ptr<int32_t>(inverse), ptr<float>(weights), out.rows,
                              static_cast<int>(inverse.cols), out.cols, ptr<float>(out),
                              impl_->stream),
        "combine_experts");
}

void CudaBackend::FillRandom(const Tensor& t, uint64_t seed, float scale) {
  Use();
  if (failed()) return;
  Check(cuda::fill_random(t.data, t.dtype, t.numel(), seed, scale, impl_->stream), "fill_random");
}

void CudaBackend::HeadMatMul(const Tensor& x, const Tensor& w, const Tensor& y, int heads) {
  Use();
  SY_CHECK(heads > 0 && x.cols % heads == 0 && w.rows % heads == 0 && y.rows == x.rows);
  SY_CHECK(x.cols / heads == w.cols && y.cols == w.rows);
  if (failed() || x.rows == 0) return;
  if (w.dtype == DType::kI8 || is_int4(w.dtype)) {
    Check(cuda::quantized_head_matmul(ptr<float>(x), w.data, w.dtype, ptr<float>(y), x.rows, heads,
                                      w.rows / heads, w.cols, impl_->stream),
          "quantized_head_matmul");
    return;
  }
  // fp8 weights never get here: LoadModelWeights refuses them (SupportsHeadMatMulDType).
  SY_CHECK(w.dtype != DType::kF8);
  const int64_t n = w.rows / heads;
  const int64_t k = w.cols;
  const void* b = x.data;
  if (w.dtype != DType::kF32) {
    // cuBLAS multiplies matching types: x goes to w's 16-bit type first (as BlasMatMul does).
    void* converted = Scratch(static_cast<size_t>(x.numel()) * 2);
    if (converted == nullptr) return;
    Check(cuda::convert_f32(ptr<float>(x), x.numel(), w.dtype, converted, impl_->stream),
          "convert_f32");
    b = converted;
  }
  // Head h, row-major y_h[T,n] = x_h[T,k] w_h[n,k]^T, is column-major y_h^T = w_h^T(op T) x_h^T
  // with x_h, y_h strided by the row widths heads*k and heads*n.
  const float alpha = 1.0f, beta = 0.0f;
  CheckBlas(cublasGemmStridedBatchedEx(impl_->blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                                       static_cast<int>(x.rows), static_cast<int>(k), &alpha,
                                       w.data, BlasType(w.dtype), static_cast<int>(k), n * k, b,
                                       BlasType(w.dtype), static_cast<int>(x.cols), k, &beta,
                                       y.data, CUDA_R_32F, static_cast<int>(y.cols), n, heads,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "cublasGemmStridedBatchedEx");
}

void CudaBackend::LatentKvWrite(const Tensor& latent, const Tensor& rope,
                                const AttentionMetadata& md, const Tensor& cache) {
  Use();
  SY_CHECK(latent.rows == md.slots.numel() && rope.rows == latent.rows &&
           cache.cols == latent.cols + rope.cols);
  if (failed()) return;
  Check(cuda::latent_kv_write(ptr<float>(latent), ptr<float>(rope), latent.rows, latent.cols,
                              rope.cols, ptr<int64_t>(md.slots), cache.data, cache.dtype,
                              impl_->stream),
        "latent_kv_write");
}

void CudaBackend::LatentAttention(const Tensor& q_latent, const Tensor& q_rope,
                                  const AttentionMetadata& md, const Tensor& cache, int n_heads,
                                  int latent_dim, int rope_dim, float scale, const Tensor& out) {
  Use();
  SY_CHECK(q_latent.cols == int64_t{n_heads} * latent_dim && q_rope.rows == q_latent.rows &&
           q_rope.cols == int64_t{n_heads} * rope_dim && out.numel() == q_latent.numel() &&
           cache.cols == latent_dim + rope_dim);
  if (failed() || q_latent.rows == 0) return;
  cuda::LatentAttentionArgs a;
  a.q_latent = ptr<float>(q_latent);
  a.q_rope = ptr<float>(q_rope);
  a.out = ptr<float>(out);
  a.cache = cache.data;
  a.cache_dtype = cache.dtype;
  a.block_tables = ptr<int32_t>(md.block_tables);
  a.token_seq = ptr<int32_t>(md.token_seq);
  a.ctx_len = ptr<int32_t>(md.ctx_len);
  a.tokens = q_latent.rows;
  a.n_heads = n_heads;
  a.latent_dim = latent_dim;
  a.rope_dim = rope_dim;
  a.block_size = md.block_size;
  a.max_blocks_per_seq = static_cast<int>(md.block_tables.cols);
  a.scale = scale;
  a.scratch = Scratch(cuda::latent_attention_scratch_bytes(q_latent.rows, n_heads, latent_dim));
  if (a.scratch == nullptr) return;
  Check(cuda::latent_attention(a, impl_->stream), "latent_attention");
}

}  // namespace sy
