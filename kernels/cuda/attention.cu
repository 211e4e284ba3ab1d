// The paged KV cache on the GPU: kv_write, and paged attention as a split-K flash-decoding kernel
// (plus a combine kernel) for one-query-per-sequence calls and a tiled flash-attention kernel for
// prefill chunks and mixed batches. Both are FMA kernels over f32 shared-memory K/V tiles.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {
namespace {

// ------------------------------------------------------------------------------------------------
// kv_write

constexpr int kKvThreads = 128;

// bf16 caches are handled as raw bits (uint16_t) so that conversions match kernels/dtype.h.
__device__ __forceinline__ void store1(float* dst, float v) { *dst = v; }
__device__ __forceinline__ void store1(uint16_t* dst, float v) { *dst = f32_to_bf16_bits(v); }

__device__ __forceinline__ void store4(float* dst, float4 v) {
  *reinterpret_cast<float4*>(dst) = v;
}
__device__ __forceinline__ void store4(uint16_t* dst, float4 v) {
  uint2 bits;
  bits.x = f32_to_bf16_bits(v.x) | (static_cast<uint32_t>(f32_to_bf16_bits(v.y)) << 16);
  bits.y = f32_to_bf16_bits(v.z) | (static_cast<uint32_t>(f32_to_bf16_bits(v.w)) << 16);
  *reinterpret_cast<uint2*>(dst) = bits;
}

// One block per token. kVec: kv_dim % 4 == 0 and every base pointer 16-byte aligned, so each
// thread moves 4 values at a time (16-byte loads; 16- or 8-byte stores).
template <typename T, bool kVec>
__global__ void __launch_bounds__(kKvThreads, 8)
    kv_write_kernel(const float* __restrict__ k, const float* __restrict__ v, int64_t kv_dim,
                    const int64_t* __restrict__ slots, T* __restrict__ k_cache,
                    T* __restrict__ v_cache) {
  const int64_t t = blockIdx.x;
  const int64_t slot = slots[t];
  if (slot < 0) return;
  const float* ks = k + t * kv_dim;
  const float* vs = v + t * kv_dim;
  T* kd = k_cache + slot * kv_dim;
  T* vd = v_cache + slot * kv_dim;
  if constexpr (kVec) {
    for (int64_t i = threadIdx.x * 4; i < kv_dim; i += kKvThreads * 4) {
      store4(kd + i, *reinterpret_cast<const float4*>(ks + i));
      store4(vd + i, *reinterpret_cast<const float4*>(vs + i));
    }
  } else {
    for (int64_t i = threadIdx.x; i < kv_dim; i += kKvThreads) {
      store1(kd + i, ks[i]);
      store1(vd + i, vs[i]);
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T>
cudaError_t launch_kv_write(const float* k, const float* v, int64_t tokens, int64_t kv_dim,
                            const int64_t* slots, void* k_cache, void* v_cache,
                            cudaStream_t stream) {
  T* kc = static_cast<T*>(k_cache);
  T* vc = static_cast<T*>(v_cache);
  const bool vec =
      kv_dim % 4 == 0 && aligned16(k) && aligned16(v) && aligned16(kc) && aligned16(vc);
  const dim3 grid(static_cast<unsigned>(tokens));
  if (vec) {
    kv_write_kernel<T, true><<<grid, kKvThreads, 0, stream>>>(k, v, kv_dim, slots, kc, vc);
  } else {
    kv_write_kernel<T, false><<<grid, kKvThreads, 0, stream>>>(k, v, kv_dim, slots, kc, vc);
  }
  return launch_result();
}

// ------------------------------------------------------------------------------------------------
// Paged attention.
//
// Both kernels share one engine: a block holds kRows query rows (a row is one (token, head) pair;
// all heads of a block share one KV head) and walks key tiles of kBK = 32 consecutive positions,
// aligned to absolute multiples of kBK. For each tile it loads K and V (converted to f32) into
// shared memory once for all rows; warp w owns rows w, w + NWARPS, ... and lane j scores key j of
// the tile, so the online softmax of a row (max, exp, sum) stays inside one warp. A row whose
// visible range misses a tile skips it entirely. The arithmetic a row goes through depends only
// on its query, its visible range and the cache (never on the other rows of the block or on which
// lane or warp holds it), which is what makes results batch invariant; explicit fmaf / __f*_rn
// intrinsics keep the compiler from contracting the same expression differently per kernel.

constexpr int kBK = 32;            // keys per tile: one per lane
constexpr int kMaxSplits = 32;     // split-K: at most this many splits per token
constexpr int kSplitTiles = 4;     // split-K: at least this many tiles per split (when possible)
constexpr int kDecodeTokens = 64;  // split-K: tokens per launch, which bounds the scratch

// Keys visible to a token: positions [first, ctx). ctx is clamped to the block table's capacity
// so that a bad ctx_len cannot make the kernels read past a block-table row.
struct Range {
  int first;
  int ctx;
};

__device__ __forceinline__ Range visible_range(int ctx_len, int64_t capacity, int window) {
  const int ctx = static_cast<int>(min(static_cast<int64_t>(ctx_len), capacity));
  return {window > 0 ? max(0, ctx - window) : 0, ctx};
}

// How a token's visible tiles [kt0, kt_end) are cut into n splits of tps tiles (the last one may
// be shorter; none is empty). A function of the token's range only, so the split count does not
// depend on the other tokens or on max_blocks_per_seq. n <= num_splits_bound(capacity).
struct SplitPlan {
  int kt0 = 0;
  int kt_end = 0;
  int tps = 1;
  int n = 0;
};

__device__ __forceinline__ SplitPlan plan_splits(Range r) {
  SplitPlan sp;
  if (r.ctx <= r.first) return sp;
  sp.kt0 = r.first / kBK;
  sp.kt_end = (r.ctx + kBK - 1) / kBK;
  const int tiles = sp.kt_end - sp.kt0;
  const int n0 = min(kMaxSplits, (tiles + kSplitTiles - 1) / kSplitTiles);
  sp.tps = (tiles + n0 - 1) / n0;
  sp.n = (tiles + sp.tps - 1) / sp.tps;
  return sp;
}

// The grid's split dimension: plan_splits(...).n for the longest range the table can hold.
int num_splits_bound(int64_t capacity) {
  const int64_t tiles = ceil_div(capacity, kBK);
  return static_cast<int>(std::clamp<int64_t>(ceil_div(tiles, kSplitTiles), 1, kMaxSplits));
}

struct AttnParams {
  const float* q;
  float* out;
  const void* k_cache;
  const void* v_cache;
  const int32_t* block_tables;
  const int32_t* token_seq;
  const int32_t* ctx_len;
  int64_t tokens;
  int64_t capacity;  // max_blocks_per_seq * block_size
  int n_heads;
  int n_kv_heads;
  int group;  // n_heads / n_kv_heads
  int block_size;
  int max_blocks_per_seq;
  int window;
  float scale;
  int hc;           // heads per block (a chunk of the group)
  int tq;           // prefill: consecutive tokens per block
  int n_chunks;     // ceil(group / hc): grid.y = n_kv_heads * n_chunks
  int64_t tok0;     // split-K: first token of this launch
  float* part_ml;   // split-K scratch: (max, sum) per (token of launch, head, split)
  float* part_acc;  // split-K scratch: head_dim unnormalised outputs per (token, head, split)
};

template <int HD, typename T, int NWARPS, int RPW>
struct Engine {
  static constexpr int kThreads = NWARPS * 32;
  static constexpr int kRows = NWARPS * RPW;
  // Accumulator columns per lane: lane owns dimensions d = lane + 32 * c < HD (for HD = 16, lanes
  // 16-31 own none: they still score keys but accumulate nothing).
  static constexpr int kCols = (HD + 31) / 32;
  static constexpr int kKStride = HD + 4;  // padding: lanes' float4 reads of K rows avoid conflicts
  static constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  static constexpr int kChunks = HD / kVec;  // 16-byte chunks per cache row
  static constexpr size_t kSmemBytes =
      sizeof(float) * (kRows * HD + kBK * kKStride + kBK * HD + kRows * kBK);
  static_assert(HD % 16 == 0 && HD % kVec == 0);

  // Whether this lane owns accumulator column c (always, unless HD is not a multiple of 32).
  static __device__ __forceinline__ bool owns(int c) {
    return HD % 32 == 0 || static_cast<int>(threadIdx.x % 32) + 32 * c < HD;
  }

  struct Smem {
    float* q;  // [kRows][HD]
    float* k;  // [kBK][kKStride]
    float* v;  // [kBK][HD]
    float* p;  // [kRows][kBK]: probabilities of the current tile
  };

  static __device__ __forceinline__ Smem carve(float* base) {
    Smem s;
    s.q = base;
    s.k = s.q + kRows * HD;
    s.v = s.k + kBK * kKStride;
    s.p = s.v + kBK * HD;
    return s;
  }

  // Online-softmax state of the rows this thread's warp owns (identical in all its lanes except
  // acc, whose column c holds dimension lane + 32 * c).
  struct Rows {
    float m[RPW];
    float l[RPW];
    float acc[RPW][kCols];
  };

  static __device__ __forceinline__ void init(Rows& st) {
#pragma unroll
    for (int i = 0; i < RPW; ++i) {
      st.m[i] = -INFINITY;
      st.l[i] = 0.0f;
#pragma unroll
      for (int c = 0; c < kCols; ++c) st.acc[i][c] = 0.0f;
    }
  }

  // Row r of the block's query tile: q[row, :] or zeros when the row is not used.
  static __device__ __forceinline__ void load_q_row(const Smem& s, int r, const float* src) {
    for (int d = threadIdx.x % 32; d < HD; d += 32) s.q[r * HD + d] = src ? src[d] : 0.0f;
  }

  // Positions [p0, p0 + kBK) of one sequence into shared memory; positions outside [lo, hi) are
  // zeros and their block-table entries are not read.
  static __device__ __forceinline__ void load_tile(const Smem& s, const AttnParams& a,
                                                   const int32_t* table, int kv_head, int p0,
                                                   int lo, int hi) {
    const T* kc = static_cast<const T*>(a.k_cache);
    const T* vc = static_cast<const T*>(a.v_cache);
#pragma unroll 4
    for (int e = threadIdx.x; e < kBK * kChunks; e += kThreads) {
      const int j = e / kChunks;
      const int c = e - j * kChunks;
      const int p = p0 + j;
      float kf[kVec];
      float vf[kVec];
      if (p >= lo && p < hi) {
        const int64_t block = table[p / a.block_size];
        const int64_t slot = block * a.block_size + p % a.block_size;
        const int64_t off = (slot * a.n_kv_heads + kv_head) * HD + c * kVec;
        load16(kc + off, kf);
        load16(vc + off, vf);
      } else {
#pragma unroll
        for (int x = 0; x < kVec; ++x) kf[x] = vf[x] = 0.0f;
      }
#pragma unroll
      for (int x = 0; x < kVec; x += 4) {
        *reinterpret_cast<float4*>(s.k + j * kKStride + c * kVec + x) =
            make_float4(kf[x], kf[x + 1], kf[x + 2], kf[x + 3]);
        *reinterpret_cast<float4*>(s.v + j * HD + c * kVec + x) =
            make_float4(vf[x], vf[x + 1], vf[x + 2], vf[x + 3]);
      }
    }
  }

  // One tile (positions p0 + lane) into the state of this warp's rows; row i sees [rf[i], rc[i]).
  static __device__ __forceinline__ void update(Rows& st, const Smem& s, const int (&rf)[RPW],
                                                const int (&rc)[RPW], int p0, float scale) {
    const int lane = threadIdx.x % 32;
    const int warp = threadIdx.x / 32;
    const int p = p0 + lane;
    float dot[RPW];
#pragma unroll
    for (int i = 0; i < RPW; ++i) dot[i] = 0.0f;
    const float* krow = s.k + lane * kKStride;
#pragma unroll 2
    for (int d = 0; d < HD; d += 4) {
      const float4 k4 = *reinterpret_cast<const float4*>(krow + d);
#pragma unroll
      for (int i = 0; i < RPW; ++i) {
        const float4 q4 = *reinterpret_cast<const float4*>(s.q + (warp + NWARPS * i) * HD + d);
        dot[i] = fmaf(q4.x, k4.x, dot[i]);
        dot[i] = fmaf(q4.y, k4.y, dot[i]);
        dot[i] = fmaf(q4.z, k4.z, dot[i]);
        dot[i] = fmaf(q4.w, k4.w, dot[i]);
      }
    }
    bool active[RPW];
#pragma unroll
    for (int i = 0; i < RPW; ++i) {
      // Warp-uniform: the row's range meets this tile.
      active[i] = rf[i] < rc[i] && rf[i] < p0 + kBK && rc[i] > p0;
      if (active[i]) {
        const bool visible = p >= rf[i] && p < rc[i];
        const float score = visible ? __fmul_rn(dot[i], scale) : -INFINITY;
        const float m_new = fmaxf(st.m[i], warp_max(score));  // finite: some key is visible
        const float prob = visible ? expf(__fsub_rn(score, m_new)) : 0.0f;
        const float alpha = expf(__fsub_rn(st.m[i], m_new));  // 0 on the row's first tile
        st.l[i] = fmaf(st.l[i], alpha, warp_sum(prob));
        st.m[i] = m_new;
        s.p[(warp + NWARPS * i) * kBK + lane] = prob;
#pragma unroll
        for (int c = 0; c < kCols; ++c) st.acc[i][c] = __fmul_rn(st.acc[i][c], alpha);
      }
    }
    __syncwarp();
#pragma unroll 1
    for (int j = 0; j < kBK; j += 4) {
      float4 p4[RPW];
#pragma unroll
      for (int i = 0; i < RPW; ++i) {
        p4[i] = *reinterpret_cast<const float4*>(s.p + (warp + NWARPS * i) * kBK + j);
      }
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        float v[kCols];
#pragma unroll
        for (int c = 0; c < kCols; ++c) v[c] = owns(c) ? s.v[(j + jj) * HD + lane + 32 * c] : 0.0f;
#pragma unroll
        for (int i = 0; i < RPW; ++i) {
          const float pj = jj == 0 ? p4[i].x : jj == 1 ? p4[i].y : jj == 2 ? p4[i].z : p4[i].w;
          if (active[i]) {
#pragma unroll
            for (int c = 0; c < kCols; ++c) st.acc[i][c] = fmaf(pj, v[c], st.acc[i][c]);
          }
        }
      }
    }
  }

  // Tiles [kt_begin, kt_end) of one sequence; the load range [lo, hi) must hold every position a
  // row sees in those tiles. Called by all threads of the block with the same tile range.
  static __device__ __forceinline__ void run(Rows& st, const Smem& s, const AttnParams& a,
                                             const int32_t* table, int kv_head, int kt_begin,
                                             int kt_end, int lo, int hi, const int (&rf)[RPW],
                                             const int (&rc)[RPW]) {
    for (int kt = kt_begin; kt < kt_end; ++kt) {
      __syncthreads();  // the previous tile (and, the first time, the query rows) are done
      load_tile(s, a, table, kv_head, kt * kBK, lo, hi);
      __syncthreads();
      update(st, s, rf, rc, kt * kBK, a.scale);
    }
  }
};

// out = acc / l (zeros for a row that saw no key); the split-K combine does the same arithmetic
// for a single split, so a token gives the same bits through either kernel when it has one split.
__device__ __forceinline__ float normalize(float acc, float l) {
  return l > 0.0f ? __fmul_rn(acc, __frcp_rn(l)) : 0.0f;
}

// Split-K pass: grid (tokens of the launch, n_kv_heads * n_chunks, splits). The block attends
// the token's heads [chunk * kRows, ...) of one KV head over one split of its visible tiles and
// writes (max, sum, unnormalised output) per head and split.
template <int HD, typename T, int NWARPS, int RPW>
__global__ void __launch_bounds__(NWARPS * 32, 24 / NWARPS) decode_split_kernel(AttnParams a) {
  using E = Engine<HD, T, NWARPS, RPW>;
  const int64_t tl = blockIdx.x;
  const int64_t t = a.tok0 + tl;
  const int kv_head = blockIdx.y / a.n_chunks;
  const int chunk = blockIdx.y % a.n_chunks;
  const int split = blockIdx.z;
  const Range range = visible_range(a.ctx_len[t], a.capacity, a.window);
  const SplitPlan sp = plan_splits(range);
  if (split >= sp.n) return;  // block-uniform, before any barrier
  const int kt_begin = sp.kt0 + split * sp.tps;
  const int kt_end = min(kt_begin + sp.tps, sp.kt_end);

  extern __shared__ float4 smem4[];
  const typename E::Smem s = E::carve(reinterpret_cast<float*>(smem4));
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  int head[RPW];  // -1: padding row (past the end of the group)
  int rf[RPW];
  int rc[RPW];
#pragma unroll
  for (int i = 0; i < RPW; ++i) {
    const int r = warp + NWARPS * i;
    const int g = chunk * E::kRows + r;
    head[i] = g < a.group ? kv_head * a.group + g : -1;
    rf[i] = head[i] >= 0 ? range.first : 0;
    rc[i] = head[i] >= 0 ? range.ctx : 0;
    E::load_q_row(s, r, head[i] >= 0 ? a.q + (t * a.n_heads + head[i]) * HD : nullptr);
  }
  typename E::Rows st;
  E::init(st);
  const int32_t* table =
      a.block_tables + static_cast<int64_t>(a.token_seq[t]) * a.max_blocks_per_seq;
  E::run(st, s, a, table, kv_head, kt_begin, kt_end, range.first, range.ctx, rf, rc);

#pragma unroll
  for (int i = 0; i < RPW; ++i) {
    if (head[i] < 0) continue;
    const int64_t idx = (tl * a.n_heads + head[i]) * kMaxSplits + split;
    if (lane == 0) {
      a.part_ml[2 * idx] = st.m[i];
      a.part_ml[2 * idx + 1] = st.l[i];
    }
#pragma unroll
    for (int c = 0; c < E::kCols; ++c) {
      if (E::owns(c)) a.part_acc[idx * HD + lane + 32 * c] = st.acc[i][c];
    }
  }
}

// Combine pass: grid (tokens of the launch, n_heads), one thread per dimension. Merges the
// token's splits in ascending order.
template <int HD>
__global__ void __launch_bounds__(HD) decode_combine_kernel(AttnParams a) {
  const int64_t tl = blockIdx.x;
  const int64_t t = a.tok0 + tl;
  const int h = blockIdx.y;
  const int d = threadIdx.x;
  const SplitPlan sp = plan_splits(visible_range(a.ctx_len[t], a.capacity, a.window));
  float* out = a.out + (t * a.n_heads + h) * HD;
  const int64_t base = (tl * a.n_heads + h) * kMaxSplits;
  float m = -INFINITY;
  for (int s = 0; s < sp.n; ++s) m = fmaxf(m, a.part_ml[2 * (base + s)]);
  if (m == -INFINITY) {  // no split saw a key (or no split at all)
    out[d] = 0.0f;
    return;
  }
  float total = 0.0f;
  float acc = 0.0f;
  for (int s = 0; s < sp.n; ++s) {
    const float w = expf(__fsub_rn(a.part_ml[2 * (base + s)], m));  // 0 for an empty split
    const float l = a.part_ml[2 * (base + s) + 1];
    const float x = a.part_acc[(base + s) * HD + d];
    total = s == 0 ? __fmul_rn(w, l) : fmaf(w, l, total);
    acc = s == 0 ? __fmul_rn(w, x) : fmaf(w, x, acc);
  }
  out[d] = normalize(acc, total);
}

// Tiled pass: grid (ceil(tokens / tq), n_kv_heads * n_chunks). The block attends tq consecutive
// tokens times hc heads (row r = token r / hc, head r % hc of the chunk). When the tokens belong
// to one sequence and their ranges chain into one interval (consecutive ranges overlap or touch,
// as in a prefill chunk) each K/V tile is loaded once for all rows; otherwise the block walks
// the tokens one at a time, loading tiles per token. A row's arithmetic is the same either way.
template <int HD, typename T, int RPW>
__global__ void __launch_bounds__(128, 2) prefill_kernel(AttnParams a) {
  constexpr int kWarps = 4;
  using E = Engine<HD, T, kWarps, RPW>;
  __shared__ int s_seq[E::kRows];
  __shared__ int s_first[E::kRows];
  __shared__ int s_ctx[E::kRows];
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * a.tq;
  const int ntok = static_cast<int>(min(static_cast<int64_t>(a.tq), a.tokens - t0));
  const int kv_head = blockIdx.y / a.n_chunks;
  const int chunk = blockIdx.y % a.n_chunks;
  if (threadIdx.x < ntok) {
    const int64_t t = t0 + threadIdx.x;
    const Range r = visible_range(a.ctx_len[t], a.capacity, a.window);
    s_seq[threadIdx.x] = a.token_seq[t];
    s_first[threadIdx.x] = r.first;
    s_ctx[threadIdx.x] = r.ctx;
  }
  extern __shared__ float4 smem4[];
  const typename E::Smem s = E::carve(reinterpret_cast<float*>(smem4));
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  int tok[RPW];   // token of the row within the block; -1: padding row
  int head[RPW];  // its head
#pragma unroll
  for (int i = 0; i < RPW; ++i) {
    const int r = warp + kWarps * i;
    const int g = chunk * a.hc + r % a.hc;
    const bool used = r < a.tq * a.hc && r / a.hc < ntok && g < a.group;
    tok[i] = used ? r / a.hc : -1;
    head[i] = used ? kv_head * a.group + g : -1;
    E::load_q_row(s, r, used ? a.q + ((t0 + tok[i]) * a.n_heads + head[i]) * HD : nullptr);
  }
  __syncthreads();  // token ranges

  bool chained = s_first[0] < s_ctx[0];
  int lo = s_first[0];
  int hi = s_ctx[0];
  for (int j = 1; j < ntok; ++j) {
    chained = chained && s_seq[j] == s_seq[0] && s_first[j] < s_ctx[j] &&
              s_first[j] <= s_ctx[j - 1] && s_first[j - 1] <= s_ctx[j];
    lo = min(lo, s_first[j]);
    hi = max(hi, s_ctx[j]);
  }
  typename E::Rows st;
  E::init(st);
  int rf[RPW];
  int rc[RPW];
  if (chained) {
#pragma unroll
    for (int i = 0; i < RPW; ++i) {
      rf[i] = tok[i] >= 0 ? s_first[tok[i]] : 0;
      rc[i] = tok[i] >= 0 ? s_ctx[tok[i]] : 0;
    }
    const int32_t* table = a.block_tables + static_cast<int64_t>(s_seq[0]) * a.max_blocks_per_seq;
    E::run(st, s, a, table, kv_head, lo / kBK, (hi + kBK - 1) / kBK, lo, hi, rf, rc);
  } else {
    for (int j = 0; j < ntok; ++j) {
      const int first = s_first[j];
      const int ctx = s_ctx[j];
      if (ctx <= first) continue;  // block-uniform
#pragma unroll
      for (int i = 0; i < RPW; ++i) {
        rf[i] = tok[i] == j ? first : 0;
        rc[i] = tok[i] == j ? ctx : 0;
      }
      const int32_t* table = a.block_tables + static_cast<int64_t>(s_seq[j]) * a.max_blocks_per_seq;
      E::run(st, s, a, table, kv_head, first / kBK, (ctx + kBK - 1) / kBK, first, ctx, rf, rc);
    }
  }

#pragma unroll
  for (int i = 0; i < RPW; ++i) {
    if (tok[i] < 0) continue;
    float* out = a.out + ((t0 + tok[i]) * a.n_heads + head[i]) * HD;
#pragma unroll
    for (int c = 0; c < E::kCols; ++c) {
      if (E::owns(c)) out[lane + 32 * c] = normalize(st.acc[i][c], st.l[i]);
    }
  }
}

template <typename Kernel>
cudaError_t allow_smem(Kernel kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

template <int HD, typename T, int NWARPS, int RPW>
cudaError_t launch_decode(AttnParams p, int splits, cudaStream_t stream) {
  using E = Engine<HD, T, NWARPS, RPW>;
  p.hc = E::kRows;
  p.tq = 1;
  p.n_chunks = static_cast<int>(ceil_div(p.group, E::kRows));
  const auto split_kernel = decode_split_kernel<HD, T, NWARPS, RPW>;
  if (const cudaError_t err = allow_smem(split_kernel, E::kSmemBytes); err != cudaSuccess) {
    return err;
  }
  // Splits of a launch go to scratch in [tokens of the launch, n_heads, kMaxSplits] order, so
  // launches reuse the scratch one after the other (stream order).
  for (int64_t tok0 = 0; tok0 < p.tokens; tok0 += kDecodeTokens) {
    p.tok0 = tok0;
    const unsigned n = static_cast<unsigned>(std::min<int64_t>(kDecodeTokens, p.tokens - tok0));
    const dim3 grid(n, static_cast<unsigned>(p.n_kv_heads * p.n_chunks),
                    static_cast<unsigned>(splits));
    split_kernel<<<grid, E::kThreads, E::kSmemBytes, stream>>>(p);
    if (const cudaError_t err = launch_result(); err != cudaSuccess) return err;
    decode_combine_kernel<HD><<<dim3(n, static_cast<unsigned>(p.n_heads)), HD, 0, stream>>>(p);
    if (const cudaError_t err = launch_result(); err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

template <int HD, typename T>
cudaError_t launch_attention(AttnParams p, bool decode, cudaStream_t stream) {
  if (decode) {
    // A block per (token, KV head, split) with the group's heads as rows: 1-4 warps of one row
    // each, or 4 warps of two rows for groups of 5-8 (and chunks of 8 for larger groups).
    const int splits = num_splits_bound(p.capacity);
    if (p.group == 1) return launch_decode<HD, T, 1, 1>(p, splits, stream);
    if (p.group == 2) return launch_decode<HD, T, 2, 1>(p, splits, stream);
    if (p.group <= 4) return launch_decode<HD, T, 4, 1>(p, splits, stream);
    return launch_decode<HD, T, 4, 2>(p, splits, stream);
  }
  // 32 rows per block (8 per warp): 32 tokens of one head down to 4 tokens of a group of 8.
  constexpr int kRpw = 8;
  using E = Engine<HD, T, 4, kRpw>;
  p.hc = std::min(p.group, E::kRows);
  p.tq = E::kRows / p.hc;
  p.n_chunks = static_cast<int>(ceil_div(p.group, p.hc));
  const auto kernel = prefill_kernel<HD, T, kRpw>;
  if (const cudaError_t err = allow_smem(kernel, E::kSmemBytes); err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>(ceil_div(p.tokens, p.tq)),
                  static_cast<unsigned>(p.n_kv_heads * p.n_chunks));
  kernel<<<grid, E::kThreads, E::kSmemBytes, stream>>>(p);
  return launch_result();
}

template <typename T>
cudaError_t dispatch_head_dim(const AttnParams& p, int head_dim, bool decode, cudaStream_t stream) {
  switch (head_dim) {
    case 16:
      return launch_attention<16, T>(p, decode, stream);
    case 32:
      return launch_attention<32, T>(p, decode, stream);
    case 64:
      return launch_attention<64, T>(p, decode, stream);
    case 128:
      return launch_attention<128, T>(p, decode, stream);
    case 256:
      return launch_attention<256, T>(p, decode, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t kv_write(const float* k, const float* v, int64_t tokens, int64_t kv_dim,
                     const int64_t* slots, void* k_cache, void* v_cache, DType cache_dtype,
                     cudaStream_t stream) {
  if (tokens < 0 || kv_dim < 0 || tokens > INT32_MAX) return cudaErrorInvalidValue;
  if (tokens == 0 || kv_dim == 0) return cudaSuccess;
  switch (cache_dtype) {
    case DType::kF32:
      return launch_kv_write<float>(k, v, tokens, kv_dim, slots, k_cache, v_cache, stream);
    case DType::kBF16:
      return launch_kv_write<uint16_t>(k, v, tokens, kv_dim, slots, k_cache, v_cache, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

size_t paged_attention_scratch_bytes(int64_t tokens, int n_heads, int head_dim) {
  if (tokens <= 0 || n_heads <= 0 || head_dim <= 0) return 0;
  return static_cast<size_t>(std::min<int64_t>(tokens, kDecodeTokens)) * n_heads * kMaxSplits *
         (head_dim + 2) * sizeof(float);
}

cudaError_t paged_attention(const PagedAttentionArgs& a, cudaStream_t stream) {
  if (a.tokens < 0) return cudaErrorInvalidValue;
  if (a.tokens == 0) return cudaSuccess;
  if (a.n_heads <= 0 || a.n_kv_heads <= 0 || a.n_heads % a.n_kv_heads != 0 || a.n_heads > 65535 ||
      a.block_size <= 0 || a.max_blocks_per_seq < 0 || a.tokens > INT32_MAX || !a.q || !a.out ||
      !a.k_cache || !a.v_cache || !a.block_tables || !a.token_seq || !a.ctx_len ||
      !aligned16(a.k_cache) || !aligned16(a.v_cache)) {
    return cudaErrorInvalidValue;
  }
  // One query per sequence: split-K over the context. Anything else: the tiled kernel.
  const bool decode = a.tokens == 1 || a.tokens == a.num_seqs;
  AttnParams p{};
  p.q = a.q;
  p.out = a.out;
  p.k_cache = a.k_cache;
  p.v_cache = a.v_cache;
  p.block_tables = a.block_tables;
  p.token_seq = a.token_seq;
  p.ctx_len = a.ctx_len;
  p.tokens = a.tokens;
  p.capacity = static_cast<int64_t>(a.max_blocks_per_seq) * a.block_size;
  p.n_heads = a.n_heads;
  p.n_kv_heads = a.n_kv_heads;
  p.group = a.n_heads / a.n_kv_heads;
  p.block_size = a.block_size;
  p.max_blocks_per_seq = a.max_blocks_per_seq;
  p.window = a.sliding_window;
  p.scale = a.scale;
  if (decode) {
    if (!a.scratch) return cudaErrorInvalidValue;
    const int64_t ml_floats =
        std::min<int64_t>(a.tokens, kDecodeTokens) * a.n_heads * kMaxSplits * 2;
    p.part_ml = static_cast<float*>(a.scratch);
    p.part_acc = p.part_ml + ml_floats;
  }
  switch (a.cache_dtype) {
    case DType::kF32:
      return dispatch_head_dim<float>(p, a.head_dim, decode, stream);
    case DType::kBF16:
      return dispatch_head_dim<uint16_t>(p, a.head_dim, decode, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace sy::cuda
