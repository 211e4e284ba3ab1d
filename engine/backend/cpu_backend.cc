#include "engine/backend/cpu_backend.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "engine/core/check.h"
#include "kernels/cpu/latent_ops.h"
#include "kernels/cpu/ops.h"
#include "kernels/kv_rows.h"

namespace sy {
namespace {

constexpr size_t kAlignment = 64;

template <typename T>
T* ptr(const Tensor& t) {
  return static_cast<T*>(t.data);
}

}  // namespace

CpuBackend::CpuBackend(int n_threads, DType kv_dtype)
    : pool_(std::make_unique<cpu::ThreadPool>(n_threads)), kv_dtype_(kv_dtype) {
  SY_CHECK(is_kv_cache_dtype(kv_dtype));
}

CpuBackend::~CpuBackend() = default;

int CpuBackend::n_threads() const { return pool_->size(); }

StatusOr<DeviceBuffer> CpuBackend::Allocate(size_t bytes) {
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded == 0 ? kAlignment : rounded);
  if (p == nullptr) {
    return Status::ResourceExhausted("cannot allocate " + std::to_string(bytes) +
                                     " bytes of host memory");
  }
  return DeviceBuffer(this, p, bytes);
}

void CpuBackend::Free(void* data) { std::free(data); }

void CpuBackend::CopyToDevice(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

void CpuBackend::CopyToHost(void* dst, const void* src, size_t bytes) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
}

bool CpuBackend::SupportsWeightDType(DType dtype) const {
  return dtype == DType::kI8 || is_int4(dtype) || dtype == DType::kF8 ||
         Backend::SupportsWeightDType(dtype);
}

void CpuBackend::Embedding(const Tensor& ids, const Tensor& table, const Tensor& out) {
  SY_CHECK(ids.numel() == out.rows && table.cols == out.cols);
  cpu::embedding(ptr<int32_t>(ids), ids.numel(), table.data, table.dtype, table.cols,
                 ptr<float>(out), pool_.get());
}

void CpuBackend::MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  SY_CHECK(x.cols == w.cols && y.rows == x.rows && y.cols == w.rows);
  SY_CHECK(bias == nullptr || bias->numel() == w.rows);
  const float* xs = w.input_perm != nullptr ? PermutedColumns(x, w.input_perm) : ptr<float>(x);
  cpu::matmul(xs, w.data, w.dtype, bias ? ptr<float>(*bias) : nullptr, ptr<float>(y), x.rows,
              w.rows, w.cols, pool_.get());
}

const float* CpuBackend::PermutedColumns(const Tensor& x, const int32_t* perm) {
  permuted_x_.resize(static_cast<size_t>(x.numel()));
  const float* src = ptr<float>(x);
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* in = src + r * x.cols;
    float* out = permuted_x_.data() + r * x.cols;
    for (int64_t c = 0; c < x.cols; ++c) out[c] = in[perm[c]];
  }
  return permuted_x_.data();
}

void CpuBackend::RmsNorm(const Tensor& x, const Tensor& w, float eps, const Tensor& y) {
  SY_CHECK(w.numel() == x.cols && x.numel() == y.numel());
  cpu::rms_norm(ptr<float>(x), ptr<float>(w), ptr<float>(y), x.rows, x.cols, eps, pool_.get());
}

void CpuBackend::AddRmsNorm(const Tensor& residual, const Tensor& x, const Tensor& w, float eps,
                            const Tensor& y) {
  SY_CHECK(w.numel() == x.cols && x.numel() == y.numel() && x.numel() == residual.numel());
  cpu::add_rms_norm(ptr<float>(residual), ptr<float>(x), ptr<float>(w), ptr<float>(y), x.rows,
                    x.cols, eps, pool_.get());
}

void CpuBackend::Rope(const Tensor& x, int64_t head_dim, int64_t rotary_dim,
                      const Tensor& positions, const Tensor& inv_freq, float attn_scale,
                      bool interleaved) {
  SY_CHECK(x.cols % head_dim == 0 && positions.numel() == x.rows);
  (interleaved ? cpu::rope_interleaved : cpu::rope_neox)(
      ptr<float>(x), x.rows, x.cols / head_dim, head_dim, rotary_dim, ptr<int32_t>(positions),
      ptr<float>(inv_freq), attn_scale, pool_.get());
}

void CpuBackend::KvWrite(const Tensor& k, const Tensor& v, const AttentionMetadata& md,
                         const Tensor& k_cache, const Tensor& v_cache) {
  SY_CHECK(k.rows == md.slots.numel() && k.numel() == v.numel() && k.cols == k_cache.cols);
  SY_CHECK(k_cache.dtype == v_cache.dtype && is_kv_cache_dtype(k_cache.dtype));
  cpu::kv_write(ptr<float>(k), ptr<float>(v), k.rows, k.cols, ptr<int64_t>(md.slots), k_cache.data,
                v_cache.data, k_cache.dtype);
}

void CpuBackend::PagedAttention(const Tensor& q, const AttentionMetadata& md, const Tensor& k_cache,
                                const Tensor& v_cache, int n_heads, int n_kv_heads, int head_dim,
                                int sliding_window, float scale, const Tensor& out) {
  SY_CHECK(k_cache.dtype == v_cache.dtype && is_kv_cache_dtype(k_cache.dtype));
  cpu::PagedAttentionArgs a;
  a.q = ptr<float>(q);
  a.out = ptr<float>(out);
  a.k_cache = k_cache.data;
  a.v_cache = v_cache.data;
  a.cache_dtype = k_cache.dtype;
  a.block_tables = ptr<int32_t>(md.block_tables);
  a.token_seq = ptr<int32_t>(md.token_seq);
  a.ctx_len = ptr<int32_t>(md.ctx_len);
  a.tokens = q.rows;
  a.n_heads = n_heads;
  a.n_kv_heads = n_kv_heads;
  a.head_dim = head_dim;
  a.block_size = md.block_size;
  a.max_blocks_per_seq = static_cast<int>(md.block_tables.cols);
  a.sliding_window = sliding_window;
  a.scale = scale;
  cpu::paged_attention(a, pool_.get());
}

void CpuBackend::Route(const Tensor& logits, const RouterParams& params,
                       const Tensor* correction_bias, const Tensor& ids, const Tensor& weights) {
  CheckRouteShapes(logits, params, correction_bias, ids, weights);
  const float* bias = correction_bias != nullptr ? ptr<float>(*correction_bias) : nullptr;
  cpu::route(ptr<float>(logits), logits.rows, logits.cols, params.args(bias), ptr<int32_t>(ids),
             ptr<float>(weights));
}

void CpuBackend::Ffn(const Tensor& x, const FfnWeights& w, const Tensor& scratch, const Tensor& y) {
  const int64_t inter = w.down.cols;
  SY_CHECK(scratch.numel() >= x.rows * 3 * inter);
  const Tensor gate_up{scratch.data, DType::kF32, x.rows, 2 * inter};
  const Tensor act{ptr<float>(scratch) + x.rows * 2 * inter, DType::kF32, x.rows, inter};
  MatMul(x, w.gate_up, nullptr, gate_up);
  cpu::silu_mul(ptr<float>(gate_up), ptr<float>(act), x.rows, inter, pool_.get());
  MatMul(act, w.down, nullptr, y);
}

void CpuBackend::ExpertFfn(const Tensor& x, std::span<const int64_t> offsets,
                           std::span<const FfnWeights> experts, const Tensor& scratch,
                           const Tensor& y) {
  SY_CHECK(offsets.size() == experts.size() + 1 && offsets.back() == x.rows);
  for (size_t e = 0; e < experts.size(); ++e) {
    const int64_t n = offsets[e + 1] - offsets[e];
    if (n == 0) continue;
    Ffn(x.Rows(offsets[e], n), experts[e], scratch, y.Rows(offsets[e], n));
  }
}

void CpuBackend::GatherRows(const Tensor& src, const Tensor& idx, const Tensor& dst) {
  SY_CHECK(idx.numel() == dst.rows && src.cols == dst.cols);
  cpu::gather_rows(ptr<float>(src), ptr<int32_t>(idx), dst.rows, dst.cols, ptr<float>(dst));
}

void CpuBackend::Zero(const Tensor& x) { std::memset(x.data, 0, x.nbytes()); }

void CpuBackend::Sigmoid(const Tensor& x) { cpu::sigmoid(ptr<float>(x), x.numel()); }

void CpuBackend::AddGatedRows(const Tensor& src, const Tensor& gate, const Tensor& dst) {
  SY_CHECK(src.numel() == dst.numel() && gate.numel() == src.rows);
  cpu::add_gated_rows(ptr<float>(src), ptr<float>(gate), src.rows, src.cols, ptr<float>(dst));
}

void CpuBackend::Add(const Tensor& x, const Tensor& y) {
  SY_CHECK(x.numel() == y.numel());
  cpu::add(ptr<float>(x), ptr<float>(y), ptr<float>(y), y.numel());
}

void CpuBackend::SortByExpert(const Tensor& ids, int64_t num_experts, const Tensor& offsets,
                              const Tensor& sorted) {
  SY_CHECK(offsets.numel() == num_experts + 1 && sorted.rows == 3 && sorted.cols == ids.numel());
  cpu::sort_by_expert(ptr<int32_t>(ids), ids.rows, static_cast<int>(ids.cols), num_experts,
                      ptr<int32_t>(offsets), ptr<int32_t>(sorted));
}

void CpuBackend::GroupedExpertFfn(const Tensor& x, const Tensor& offsets, const ExpertTable& table,
                                  const Tensor& scratch, const Tensor& y) {
  SY_CHECK(offsets.numel() == table.num_experts + 1);
  // Device memory is host memory here: read the offsets and pointers directly.
  const int32_t* off = ptr<int32_t>(offsets);
  const auto* gate_up = static_cast<void* const*>(table.gate_up_ptrs.data);
  const auto* down = static_cast<void* const*>(table.down_ptrs.data);
  SY_CHECK(off[table.num_experts] == x.rows);
  for (int64_t e = 0; e < table.num_experts; ++e) {
    const int64_t n = off[e + 1] - off[e];
    if (n == 0) continue;
    const int32_t* perm = table.gate_up_perm_host.empty() ? nullptr : table.gate_up_perm_host[e];
    const FfnWeights w{Tensor{gate_up[e], table.dtype, 2 * table.inter, table.hidden, perm},
                       Tensor{down[e], table.dtype, table.hidden, table.inter}};
    Ffn(x.Rows(off[e], n), w, scratch, y.Rows(off[e], n));
  }
}

void CpuBackend::CombineExperts(const Tensor& ys, const Tensor& inverse, const Tensor& weights,
                                const Tensor& out) {
  SY_CHECK(inverse.numel() == weights.numel() && inverse.rows == out.rows && ys.cols == out.cols &&
           ys.rows == inverse.numel());
  cpu::combine_experts(ptr<float>(ys), ptr<int32_t>(inverse), ptr<float>(weights), out.rows,
                       static_cast<int>(inverse.cols), out.cols, ptr<float>(out));
}

void CpuBackend::FillRandom(const Tensor& t, uint64_t seed, float scale) {
  cpu::fill_random(t.data, t.dtype, t.numel(), seed, scale);
}

void CpuBackend::HeadMatMul(const Tensor& x, const Tensor& w, const Tensor& y, int heads) {
  SY_CHECK(heads > 0 && x.cols % heads == 0 && w.rows % heads == 0 && y.rows == x.rows);
  SY_CHECK(x.cols / heads == w.cols && y.cols == w.rows && w.input_perm == nullptr);
  cpu::head_matmul(ptr<float>(x), w.data, w.dtype, ptr<float>(y), x.rows, heads, w.rows / heads,
                   w.cols, pool_.get());
}

void CpuBackend::LatentKvWrite(const Tensor& latent, const Tensor& rope,
                               const AttentionMetadata& md, const Tensor& cache) {
  SY_CHECK(latent.rows == md.slots.numel() && rope.rows == latent.rows);
  SY_CHECK(cache.cols == latent.cols + rope.cols && is_kv_cache_dtype(cache.dtype));
  cpu::latent_kv_write(ptr<float>(latent), ptr<float>(rope), latent.rows, latent.cols, rope.cols,
                       ptr<int64_t>(md.slots), cache.data, cache.dtype);
}

void CpuBackend::LatentAttention(const Tensor& q_latent, const Tensor& q_rope,
                                 const AttentionMetadata& md, const Tensor& cache, int n_heads,
                                 int latent_dim, int rope_dim, float scale, const Tensor& out) {
  SY_CHECK(q_latent.cols == int64_t{n_heads} * latent_dim && q_rope.rows == q_latent.rows &&
           q_rope.cols == int64_t{n_heads} * rope_dim && out.numel() == q_latent.numel());
  SY_CHECK(cache.cols == latent_dim + rope_dim && is_kv_cache_dtype(cache.dtype));
  cpu::LatentAttentionArgs a;
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
  cpu::latent_attention(a, pool_.get());
}

}  // namespace sy
