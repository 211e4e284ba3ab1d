// Multi-head latent attention on the GPU (kernels/cuda/latent_ops.h): the latent cache write, and
// a split-K decode-style attention kernel plus a combine kernel. Every head of a token shares the
// cache rows, so a block takes up to 16 heads of one token (8 warps, 2 heads per warp) and loads
// each tile of 32 rows into shared memory (as f32) once for all of them.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/latent_ops.h"

namespace sy::cuda {
namespace {

// ------------------------------------------------------------------------------------------------
// latent_kv_write: one block per token, one thread per element (the rows are short).

constexpr int kWriteThreads = 128;

__device__ __forceinline__ void store_elem(float* dst, float v) { *dst = v; }
__device__ __forceinline__ void store_elem(uint16_t* dst, float v) { *dst = f32_to_bf16_bits(v); }

template <typename T>
__global__ void __launch_bounds__(kWriteThreads)
    latent_kv_write_kernel(const float* __restrict__ latent, const float* __restrict__ rope,
                           int64_t latent_dim, int64_t rope_dim, const int64_t* __restrict__ slots,
                           T* __restrict__ cache) {
  const int64_t t = blockIdx.x;
  const int64_t slot = slots[t];
  if (slot < 0) return;
  T* row = cache + slot * (latent_dim + rope_dim);
  for (int64_t d = threadIdx.x; d < latent_dim; d += kWriteThreads) {
    store_elem(row + d, latent[t * latent_dim + d]);
  }
  for (int64_t d = threadIdx.x; d < rope_dim; d += kWriteThreads) {
    store_elem(row + latent_dim + d, rope[t * rope_dim + d]);
  }
}

// ------------------------------------------------------------------------------------------------
// Attention.

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 2;
constexpr int kHeadsPerBlock = kWarps * kRowsPerWarp;  // 16
constexpr int kBK = 32;                                // cache rows per tile: one per lane
constexpr int kMaxCols = 16;                           // latent_dim / 32 at most
constexpr int kMaxSplits = 32;
constexpr int kSplitTiles = 4;    // at least this many tiles per split (when possible)
constexpr int kLaunchTokens = 8;  // tokens per split launch, which bounds the scratch

struct Params {
  const float* q_latent;
  const float* q_rope;
  float* out;
  const void* cache;
  const int32_t* block_tables;
  const int32_t* token_seq;
  const int32_t* ctx_len;
  int64_t capacity;  // max_blocks_per_seq * block_size
  int n_heads;
  int latent_dim;
  int rope_dim;
  int row;      // latent_dim + rope_dim
  int kstride;  // row + 4: shared-memory stride of a cache row (float4 reads avoid conflicts)
  int block_size;
  int max_blocks_per_seq;
  float scale;
  int64_t tok0;     // first token of this launch
  float* part_ml;   // (max, sum) per (token of launch, head, split)
  float* part_acc;  // latent_dim unnormalised outputs per (token of launch, head, split)
};

// A token's visible tiles [kt0, kt_end) cut into n splits of tps tiles; a function of ctx only.
struct SplitPlan {
  int kt_end = 0;
  int tps = 1;
  int n = 0;
};

__device__ __forceinline__ SplitPlan plan_splits(int ctx) {
  SplitPlan sp;
  if (ctx <= 0) return sp;
  sp.kt_end = (ctx + kBK - 1) / kBK;
  const int n0 = min(kMaxSplits, (sp.kt_end + kSplitTiles - 1) / kSplitTiles);
  sp.tps = (sp.kt_end + n0 - 1) / n0;
  sp.n = (sp.kt_end + sp.tps - 1) / sp.tps;
  return sp;
}

int num_splits_bound(int64_t capacity) {
  const int64_t tiles = ceil_div(capacity, kBK);
  return static_cast<int>(std::clamp<int64_t>(ceil_div(tiles, kSplitTiles), 1, kMaxSplits));
}

__device__ __forceinline__ int visible(int ctx_len, int64_t capacity) {
  return static_cast<int>(min(static_cast<int64_t>(ctx_len), capacity));
}

size_t smem_bytes(int row) {
  return sizeof(float) * (static_cast<size_t>(kHeadsPerBlock) * row +
                          static_cast<size_t>(kBK) * (row + 4) + kHeadsPerBlock * kBK);
}

// Split pass: grid (tokens of the launch, head groups, splits). Shared memory: the block's query
// rows [16][row] (q_latent then q_rope), the tile [32][row + 4] and probabilities [16][32].
template <typename T>
__global__ void __launch_bounds__(kThreads) latent_split_kernel(Params a) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  const int64_t tl = blockIdx.x;
  const int64_t t = a.tok0 + tl;
  const int split = blockIdx.z;
  const int ctx = visible(a.ctx_len[t], a.capacity);
  const SplitPlan sp = plan_splits(ctx);
  if (split >= sp.n) return;  // block-uniform, before any barrier
  const int kt_begin = split * sp.tps;
  const int kt_end = min(kt_begin + sp.tps, sp.kt_end);

  extern __shared__ float4 smem4[];
  float* s_q = reinterpret_cast<float*>(smem4);
  float* s_k = s_q + kHeadsPerBlock * a.row;
  float* s_p = s_k + kBK * a.kstride;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int head0 = blockIdx.y * kHeadsPerBlock;
  for (int e = threadIdx.x; e < kHeadsPerBlock * a.row; e += kThreads) {
    const int r = e / a.row;
    const int d = e - r * a.row;
    const int h = head0 + r;
    float v = 0.0f;
    if (h < a.n_heads) {
      const int64_t hr = t * a.n_heads + h;
      v = d < a.latent_dim ? a.q_latent[hr * a.latent_dim + d]
                           : a.q_rope[hr * a.rope_dim + d - a.latent_dim];
    }
    s_q[e] = v;
  }
  int head[kRowsPerWarp];  // -1: padding row
  float m[kRowsPerWarp];
  float l[kRowsPerWarp];
  float acc[kRowsPerWarp][kMaxCols];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int h = head0 + warp + kWarps * i;
    head[i] = h < a.n_heads ? h : -1;
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < kMaxCols; ++c) acc[i][c] = 0.0f;
  }
  const int cols = a.latent_dim / 32;
  const int chunks = a.row / kVec;  // 16-byte chunks per cache row
  const T* cache = static_cast<const T*>(a.cache);
  const int32_t* table =
      a.block_tables + static_cast<int64_t>(a.token_seq[t]) * a.max_blocks_per_seq;

  for (int kt = kt_begin; kt < kt_end; ++kt) {
    const int p0 = kt * kBK;
    __syncthreads();  // the previous tile (and, the first time, the query rows) are done
    for (int e = threadIdx.x; e < kBK * chunks; e += kThreads) {
      const int j = e / chunks;
      const int c = e - j * chunks;
      const int p = p0 + j;
      float v[kVec];
      if (p < ctx) {
        const int64_t slot =
            static_cast<int64_t>(table[p / a.block_size]) * a.block_size + p % a.block_size;
        load16(cache + slot * a.row + c * kVec, v);
      } else {
#pragma unroll
        for (int x = 0; x < kVec; ++x) v[x] = 0.0f;
      }
#pragma unroll
      for (int x = 0; x < kVec; x += 4) {
        *reinterpret_cast<float4*>(s_k + j * a.kstride + c * kVec + x) =
            make_float4(v[x], v[x + 1], v[x + 2], v[x + 3]);
      }
    }
    __syncthreads();

    // Scores: lane j takes row j of the tile against the warp's query rows.
    const int p = p0 + lane;
    float dot[kRowsPerWarp];
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) dot[i] = 0.0f;
    const float* krow = s_k + lane * a.kstride;
    for (int d = 0; d < a.row; d += 4) {
      const float4 k4 = *reinterpret_cast<const float4*>(krow + d);
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) {
        const float4 q4 = *reinterpret_cast<const float4*>(s_q + (warp + kWarps * i) * a.row + d);
        dot[i] = fmaf(q4.x, k4.x, dot[i]);
        dot[i] = fmaf(q4.y, k4.y, dot[i]);
        dot[i] = fmaf(q4.z, k4.z, dot[i]);
        dot[i] = fmaf(q4.w, k4.w, dot[i]);
      }
    }
    const bool in_range = p < ctx;
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const float score = in_range ? __fmul_rn(dot[i], a.scale) : -INFINITY;
      const float m_new = fmaxf(m[i], warp_max(score));  // finite: position p0 is visible
      const float prob = in_range ? expf(__fsub_rn(score, m_new)) : 0.0f;
      const float alpha = expf(__fsub_rn(m[i], m_new));  // 0 on the first tile
      l[i] = fmaf(l[i], alpha, warp_sum(prob));
      m[i] = m_new;
      s_p[(warp + kWarps * i) * kBK + lane] = prob;
#pragma unroll
      for (int c = 0; c < kMaxCols; ++c) acc[i][c] = __fmul_rn(acc[i][c], alpha);
    }
    __syncwarp();
    // Values: the first latent_dim columns of each row; lane owns columns lane + 32 c.
    for (int j = 0; j < kBK; ++j) {
      float pj[kRowsPerWarp];
#pragma unroll
      for (int i = 0; i < kRowsPerWarp; ++i) pj[i] = s_p[(warp + kWarps * i) * kBK + j];
      const float* vrow = s_k + j * a.kstride + lane;
#pragma unroll
      for (int c = 0; c < kMaxCols; ++c) {
        if (c < cols) {
          const float v = vrow[32 * c];
#pragma unroll
          for (int i = 0; i < kRowsPerWarp; ++i) acc[i][c] = fmaf(pj[i], v, acc[i][c]);
        }
      }
    }
    __syncwarp();
  }

#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    if (head[i] < 0) continue;
    const int64_t idx = (tl * a.n_heads + head[i]) * kMaxSplits + split;
    if (lane == 0) {
      a.part_ml[2 * idx] = m[i];
      a.part_ml[2 * idx + 1] = l[i];
    }
#pragma unroll
    for (int c = 0; c < kMaxCols; ++c) {
      if (c < cols) a.part_acc[idx * a.latent_dim + lane + 32 * c] = acc[i][c];
    }
  }
}

// Combine pass: grid (tokens of the launch, n_heads). Merges the token's splits in ascending
// order; zeros for a token that saw no position.
__global__ void __launch_bounds__(128) latent_combine_kernel(Params a) {
  const int64_t tl = blockIdx.x;
  const int64_t t = a.tok0 + tl;
  const int h = blockIdx.y;
  const SplitPlan sp = plan_splits(visible(a.ctx_len[t], a.capacity));
  float* out = a.out + (t * a.n_heads + h) * a.latent_dim;
  const int64_t base = (tl * a.n_heads + h) * kMaxSplits;
  float m = -INFINITY;
  for (int s = 0; s < sp.n; ++s) m = fmaxf(m, a.part_ml[2 * (base + s)]);
  for (int d = threadIdx.x; d < a.latent_dim; d += blockDim.x) {
    if (m == -INFINITY) {
      out[d] = 0.0f;
      continue;
    }
    float total = 0.0f;
    float acc = 0.0f;
    for (int s = 0; s < sp.n; ++s) {
      const float w = expf(__fsub_rn(a.part_ml[2 * (base + s)], m));
      const float l = a.part_ml[2 * (base + s) + 1];
      const float x = a.part_acc[(base + s) * a.latent_dim + d];
      total = s == 0 ? __fmul_rn(w, l) : fmaf(w, l, total);
      acc = s == 0 ? __fmul_rn(w, x) : fmaf(w, x, acc);
    }
    out[d] = total > 0.0f ? __fmul_rn(acc, __frcp_rn(total)) : 0.0f;
  }
}

template <typename T>
cudaError_t launch_latent(Params p, int64_t tokens, cudaStream_t stream) {
  const size_t smem = smem_bytes(p.row);
  const auto kernel = latent_split_kernel<T>;
  if (smem > 48 * 1024) {
    if (const cudaError_t err = cudaFuncSetAttribute(
            kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
        err != cudaSuccess) {
      return err;
    }
  }
  const int splits = num_splits_bound(p.capacity);
  const unsigned groups = static_cast<unsigned>(ceil_div(p.n_heads, kHeadsPerBlock));
  // Launches reuse the scratch one after the other (stream order).
  for (int64_t tok0 = 0; tok0 < tokens; tok0 += kLaunchTokens) {
    p.tok0 = tok0;
    const unsigned n = static_cast<unsigned>(std::min<int64_t>(kLaunchTokens, tokens - tok0));
    kernel<<<dim3(n, groups, static_cast<unsigned>(splits)), kThreads, smem, stream>>>(p);
    if (const cudaError_t err = launch_result(); err != cudaSuccess) return err;
    latent_combine_kernel<<<dim3(n, static_cast<unsigned>(p.n_heads)), 128, 0, stream>>>(p);
    if (const cudaError_t err = launch_result(); err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

}  // namespace

cudaError_t latent_kv_write(const float* latent, const float* rope, int64_t tokens,
                            int64_t latent_dim, int64_t rope_dim, const int64_t* slots, void* cache,
                            DType cache_dtype, cudaStream_t stream) {
  if (tokens < 0 || latent_dim < 0 || rope_dim < 0 || tokens > INT32_MAX) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0 || latent_dim + rope_dim == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(tokens));
  switch (cache_dtype) {
    case DType::kF32:
      latent_kv_write_kernel<float><<<grid, kWriteThreads, 0, stream>>>(
          latent, rope, latent_dim, rope_dim, slots, static_cast<float*>(cache));
      return launch_result();
    case DType::kBF16:
      latent_kv_write_kernel<uint16_t><<<grid, kWriteThreads, 0, stream>>>(
          latent, rope, latent_dim, rope_dim, slots, static_cast<uint16_t*>(cache));
      return launch_result();
    default:
      return cudaErrorInvalidValue;
  }
}

size_t latent_attention_scratch_bytes(int64_t tokens, int n_heads, int latent_dim) {
  if (tokens <= 0 || n_heads <= 0 || latent_dim <= 0) return 0;
  return static_cast<size_t>(std::min<int64_t>(tokens, kLaunchTokens)) * n_heads * kMaxSplits *
         (latent_dim + 2) * sizeof(float);
}

cudaError_t latent_attention(const LatentAttentionArgs& a, cudaStream_t stream) {
  if (a.tokens < 0) return cudaErrorInvalidValue;
  if (a.tokens == 0) return cudaSuccess;
  const int row = a.latent_dim + a.rope_dim;
  if (a.n_heads <= 0 || a.n_heads > 65535 || a.latent_dim <= 0 || a.latent_dim % 32 != 0 ||
      a.latent_dim > 32 * kMaxCols || a.rope_dim < 0 || row % 8 != 0 || a.block_size <= 0 ||
      a.max_blocks_per_seq < 0 || a.tokens > INT32_MAX || !a.q_latent || !a.out || !a.cache ||
      (a.rope_dim > 0 && !a.q_rope) || !a.block_tables || !a.token_seq || !a.ctx_len ||
      !a.scratch || !is_aligned16(a.cache)) {
    return cudaErrorInvalidValue;
  }
  Params p{};
  p.q_latent = a.q_latent;
  p.q_rope = a.q_rope;
  p.out = a.out;
  p.cache = a.cache;
  p.block_tables = a.block_tables;
  p.token_seq = a.token_seq;
  p.ctx_len = a.ctx_len;
  p.capacity = static_cast<int64_t>(a.max_blocks_per_seq) * a.block_size;
  p.n_heads = a.n_heads;
  p.latent_dim = a.latent_dim;
  p.rope_dim = a.rope_dim;
  p.row = row;
  p.kstride = row + 4;
  p.block_size = a.block_size;
  p.max_blocks_per_seq = a.max_blocks_per_seq;
  p.scale = a.scale;
  p.part_ml = static_cast<float*>(a.scratch);
  p.part_acc = p.part_ml + std::min<int64_t>(a.tokens, kLaunchTokens) * a.n_heads * kMaxSplits * 2;
  switch (a.cache_dtype) {
    case DType::kF32:
      return launch_latent<float>(p, a.tokens, stream);
    case DType::kBF16:
      return launch_latent<uint16_t>(p, a.tokens, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace sy::cuda
