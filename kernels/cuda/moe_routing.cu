// MoE routing: the fused softmax top-k router, the stable counting sort of (token, choice) pairs
// by expert, and the weighted combine of expert outputs back into token order. Each reproduces
// sy::cpu::ref's arithmetic order so that ids and sorted positions match it exactly.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {
namespace {

constexpr int kMaxExperts = 512;
constexpr int kMaxTopK = 16;
constexpr int kSlots = kMaxExperts / 32;  // logits per lane in route_topk

// --- route_topk: one warp per token ---

constexpr int kRouteWarps = 4;

// The softmax is computed as the reference does: max, exp(x - max), a sequential sum in
// ascending expert order (one lane, from shared memory), one division per expert. Top-k then
// takes k rounds of a warp arg-max on (probability desc, expert id asc), which is the order of
// the reference's stable sort. Blocks hold whole warps and never use __syncthreads, so a warp
// past the last token may return at once.
__global__ void __launch_bounds__(kRouteWarps * 32)
    route_topk_kernel(const float* __restrict__ logits, int64_t tokens, int experts, int k,
                      bool renormalize, int32_t* __restrict__ ids, float* __restrict__ weights) {
  __shared__ float exps[kRouteWarps][kMaxExperts];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kRouteWarps + warp;
  if (t >= tokens) return;
  const float* row = logits + t * experts;

  float p[kSlots];
  float row_max = -INFINITY;
#pragma unroll
  for (int j = 0; j < kSlots; ++j) {
    const int e = lane + 32 * j;
    p[j] = e < experts ? row[e] : -INFINITY;
    row_max = fmaxf(row_max, p[j]);
  }
  row_max = warp_max(row_max);
#pragma unroll
  for (int j = 0; j < kSlots; ++j) {
    const int e = lane + 32 * j;
    if (e < experts) {
      p[j] = expf(p[j] - row_max);
      exps[warp][e] = p[j];
    }
  }
  __syncwarp();
  float sum = 0.0f;
  if (lane == 0) {
    for (int e = 0; e < experts; ++e) sum += exps[warp][e];
  }
  sum = __shfl_sync(0xffffffffu, sum, 0);
  // Probabilities are >= 0; -1 marks slots past the last expert and experts already taken. A NaN
  // (from NaN logits) becomes -0.5: still chosen after every real probability, so the ids stay
  // valid experts whatever the input (downstream kernels index by them).
#pragma unroll
  for (int j = 0; j < kSlots; ++j) {
    const float q = p[j] / sum;
    p[j] = lane + 32 * j < experts ? (q == q ? q : -0.5f) : -1.0f;
  }

  float top_p[kMaxTopK] = {};
  int top_e[kMaxTopK] = {};
#pragma unroll
  for (int r = 0; r < kMaxTopK; ++r) {
    if (r >= k) break;  // k is the same for the whole warp
    float best_p = -2.0f;
    int best_e = INT_MAX;
#pragma unroll
    for (int j = 0; j < kSlots; ++j) {  // ascending ids: strict > keeps the lowest among ties
      if (p[j] > best_p) {
        best_p = p[j];
        best_e = lane + 32 * j;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float other_p = __shfl_xor_sync(0xffffffffu, best_p, o);
      const int other_e = __shfl_xor_sync(0xffffffffu, best_e, o);
      if (other_p > best_p || (other_p == best_p && other_e < best_e)) {
        best_p = other_p;
        best_e = other_e;
      }
    }
    top_p[r] = best_p;
    top_e[r] = best_e;
#pragma unroll
    for (int j = 0; j < kSlots; ++j) {
      if (lane + 32 * j == best_e) p[j] = -1.0f;
    }
  }
  float total = 0.0f;
#pragma unroll
  for (int r = 0; r < kMaxTopK; ++r) {
    if (r < k) total += top_p[r];
  }
#pragma unroll
  for (int r = 0; r < kMaxTopK; ++r) {
    if (r < k && lane == r) {
      ids[t * k + r] = top_e[r];
      weights[t * k + r] = renormalize ? top_p[r] / total : top_p[r];
    }
  }
}

// --- sort_by_expert: one block ---

constexpr int kSortWarps = 16;
static_assert(kSortWarps * 32 >= kMaxExperts, "one thread per expert in the scan");

// Each warp owns a contiguous segment of the n pairs. (1) Each warp counts its segment's pairs
// per expert. (2) Thread e turns those counts into each warp's first position for expert e:
// offsets[e] plus the counts of expert e in earlier segments (a scan over experts, then over
// warps). (3) Each warp walks its segment in order, 32 pairs at a time; __match_any_sync ranks
// the lanes holding the same expert, and the group's leader advances the warp's cursor. Pairs
// therefore land in flat-index order within each expert: the reference's stable counting sort.
// Ids outside [0, experts) are skipped.
__global__ void __launch_bounds__(kSortWarps * 32)
    sort_by_expert_kernel(const int32_t* __restrict__ ids, int64_t n, int k, int experts,
                          int32_t* __restrict__ offsets, int32_t* __restrict__ sorted) {
  __shared__ int32_t cursor[kSortWarps][kMaxExperts];
  __shared__ int32_t warp_total[kSortWarps];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t seg = (n + kSortWarps * 32 - 1) / (kSortWarps * 32) * 32;
  const int64_t begin = std::min(n, warp * seg);
  const int64_t end = std::min(n, begin + seg);
  const unsigned lanes_below = (1u << lane) - 1;

  for (int i = threadIdx.x; i < kSortWarps * kMaxExperts; i += blockDim.x) {
    cursor[i / kMaxExperts][i % kMaxExperts] = 0;
  }
  __syncthreads();

  // (1) Per-segment counts. Different groups have different experts, so their leaders write
  // different counters; __syncwarp orders one chunk's writes before the next chunk's.
  for (int64_t j0 = begin; j0 < end; j0 += 32) {
    const int64_t j = j0 + lane;
    const int e = j < end ? ids[j] : -1;
    const bool valid = e >= 0 && e < experts;
    const unsigned peers = __match_any_sync(0xffffffffu, valid ? e : -1);
    if (valid && (peers & lanes_below) == 0) cursor[warp][e] += __popc(peers);
    __syncwarp();
  }
  __syncthreads();

  // (2) Thread e: exclusive scan over warps of expert e's counts, then over experts of totals.
  const int e = threadIdx.x;
  int count = 0;
  if (e < experts) {
    for (int w = 0; w < kSortWarps; ++w) {
      const int c = cursor[w][e];
      cursor[w][e] = count;
      count += c;
    }
  }
  int inclusive = count;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int v = __shfl_up_sync(0xffffffffu, inclusive, o);
    if (lane >= o) inclusive += v;
  }
  if (lane == 31) warp_total[warp] = inclusive;
  __syncthreads();
  int first = inclusive - count;
  for (int w = 0; w < warp; ++w) first += warp_total[w];
  if (e < experts) {
    offsets[e] = first;
    for (int w = 0; w < kSortWarps; ++w) cursor[w][e] += first;
  }
  if (e == experts - 1) offsets[experts] = first + count;
  __syncthreads();

  // (3) Scatter in flat-index order.
  for (int64_t j0 = begin; j0 < end; j0 += 32) {
    const int64_t j = j0 + lane;
    const int ej = j < end ? ids[j] : -1;
    const bool valid = ej >= 0 && ej < experts;
    const unsigned peers = __match_any_sync(0xffffffffu, valid ? ej : -1);
    if (valid) {
      const int32_t pos = cursor[warp][ej] + __popc(peers & lanes_below);
      sorted[pos] = static_cast<int32_t>(j / k);
      sorted[n + pos] = static_cast<int32_t>(j);
      sorted[2 * n + j] = pos;
    }
    __syncwarp();  // every lane has read its cursor before the leader moves it
    if (valid && (peers & lanes_below) == 0) cursor[warp][ej] += __popc(peers);
    __syncwarp();
  }
}

// --- combine_experts: one block per token ---

constexpr int kMaxCombineK = 64;
constexpr int kCombineThreads = 256;

// Thread c < k ranks pair c by its position (ties, impossible for a valid inverse, by c), so
// the block sums the pairs in ascending position like the reference, with unfused products and
// sums: the reference's bits.
template <int kVec>
__global__ void combine_experts_kernel(const float* __restrict__ ys,
                                       const int32_t* __restrict__ inverse,
                                       const float* __restrict__ weights, int k, int64_t dim,
                                       float* __restrict__ out) {
  __shared__ int32_t pos[kMaxCombineK];
  __shared__ float wt[kMaxCombineK];
  const int64_t t = blockIdx.x;
  const int32_t* inv = inverse + t * k;
  if (static_cast<int>(threadIdx.x) < k) {
    const int c = threadIdx.x;
    const int32_t mine = inv[c];
    int rank = 0;
    for (int o = 0; o < k; ++o) rank += inv[o] < mine || (inv[o] == mine && o < c);
    pos[rank] = mine;
    wt[rank] = weights[t * k + c];
  }
  __syncthreads();
  for (int64_t col = threadIdx.x * int64_t{kVec}; col < dim; col += blockDim.x * int64_t{kVec}) {
    float acc[kVec];
#pragma unroll
    for (int i = 0; i < kVec; ++i) acc[i] = 0.0f;
    for (int r = 0; r < k; ++r) {
      float v[kVec];
      load_floats<kVec>(ys + static_cast<int64_t>(pos[r]) * dim + col, v);
#pragma unroll
      for (int i = 0; i < kVec; ++i) acc[i] = __fadd_rn(acc[i], __fmul_rn(wt[r], v[i]));
    }
    store_floats<kVec>(out + t * dim + col, acc);
  }
}

}  // namespace

cudaError_t route_topk(const float* logits, int64_t tokens, int64_t experts, int k,
                       bool renormalize, int32_t* ids, float* weights, cudaStream_t stream) {
  if (tokens < 0 || experts < 1 || experts > kMaxExperts || k < 1 || k > kMaxTopK || k > experts) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  const int64_t blocks = ceil_div(tokens, kRouteWarps);
  if (blocks > INT32_MAX) return cudaErrorInvalidValue;
  route_topk_kernel<<<static_cast<unsigned>(blocks), kRouteWarps * 32, 0, stream>>>(
      logits, tokens, static_cast<int>(experts), k, renormalize, ids, weights);
  return launch_result();
}

cudaError_t sort_by_expert(const int32_t* ids, int64_t tokens, int k, int64_t experts,
                           int32_t* offsets, int32_t* sorted, cudaStream_t stream) {
  if (tokens < 0 || k < 1 || experts < 1 || experts > kMaxExperts || tokens * k > INT32_MAX) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  sort_by_expert_kernel<<<1, kSortWarps * 32, 0, stream>>>(
      ids, tokens * k, k, static_cast<int>(experts), offsets, sorted);
  return launch_result();
}

cudaError_t combine_experts(const float* ys, const int32_t* inverse, const float* weights,
                            int64_t tokens, int k, int64_t dim, float* out, cudaStream_t stream) {
  if (tokens < 0 || dim < 0 || k < 0 || k > kMaxCombineK || tokens > INT32_MAX) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0 || dim == 0) return cudaSuccess;
  const bool vec = dim % 4 == 0 && is_aligned16(ys) && is_aligned16(out);
  const int64_t units = vec ? dim / 4 : dim;
  // At least k threads (one per pair to rank), at most kCombineThreads.
  const int threads = static_cast<int>(
      std::clamp<int64_t>(ceil_div(std::max<int64_t>(units, k), 32) * 32, 32, kCombineThreads));
  const unsigned grid = static_cast<unsigned>(tokens);
  if (vec) {
    combine_experts_kernel<4><<<grid, threads, 0, stream>>>(ys, inverse, weights, k, dim, out);
  } else {
    combine_experts_kernel<1><<<grid, threads, 0, stream>>>(ys, inverse, weights, k, dim, out);
  }
  return launch_result();
}

}  // namespace sy::cuda
