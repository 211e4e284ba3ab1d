// MoE routing: the fused router (softmax or sigmoid scores, bias, group limit, top-k), the stable
// counting sort of (token, choice) pairs by expert, and the weighted combine of expert outputs
// back into token order. Each reproduces sy::cpu::ref's arithmetic order so that ids and sorted
// positions match it exactly.
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
constexpr int kSlots = kMaxExperts / 32;  // experts per lane in route

// --- route: one warp per token ---

constexpr int kRouteWarps = 4;
constexpr int kMaxGroups = 32;  // one lane per group

// The best (value desc, id asc) over the warp of each lane's candidate; lanes without one hold
// (-inf, INT_MAX). Every lane gets the winner.
__device__ __forceinline__ void warp_arg_max(float& value, int& id) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float other_value = __shfl_xor_sync(0xffffffffu, value, o);
    const int other_id = __shfl_xor_sync(0xffffffffu, id, o);
    if (other_value > value || (other_value == value && other_id < id)) {
      value = other_value;
      id = other_id;
    }
  }
}

__device__ __forceinline__ float rank_key(float v) { return v == v ? v : -INFINITY; }

// Lane e % 32 holds expert e in slot e / 32. The softmax is computed as the reference does: max,
// exp(x - max), a sequential sum in ascending expert order (one lane, from shared memory), one
// division per expert; the sigmoid as 1 / (1 + exp(-x)). The group scores: lane g scans group g's
// choices in shared memory. Group and expert top-k: rounds of a warp arg-max on (value desc, id
// asc), the order of the reference's stable sort. Blocks hold whole warps and never use
// __syncthreads, so a warp past the last token may return at once.
__global__ void __launch_bounds__(kRouteWarps * 32)
    route_kernel(const float* __restrict__ logits, int64_t tokens, int experts,
                 cpu::RouterArgs args, int32_t* __restrict__ ids, float* __restrict__ weights) {
  __shared__ float scores[kRouteWarps][kMaxExperts];
  __shared__ float choices[kRouteWarps][kMaxExperts];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kRouteWarps + warp;
  if (t >= tokens) return;
  const float* row = logits + t * experts;
  const int k = args.k;

  // 1. Scores.
  float s[kSlots];
  if (args.scoring == cpu::RouterScoring::kSoftmax) {
    float row_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kSlots; ++j) {
      const int e = lane + 32 * j;
      s[j] = e < experts ? row[e] : -INFINITY;
      row_max = fmaxf(row_max, s[j]);
    }
    row_max = warp_max(row_max);
#pragma unroll
    for (int j = 0; j < kSlots; ++j) {
      const int e = lane + 32 * j;
      if (e < experts) {
        s[j] = expf(s[j] - row_max);
        scores[warp][e] = s[j];
      }
    }
    __syncwarp();
    float sum = 0.0f;
    if (lane == 0) {
      for (int e = 0; e < experts; ++e) sum += scores[warp][e];
    }
    sum = __shfl_sync(0xffffffffu, sum, 0);
#pragma unroll
    for (int j = 0; j < kSlots; ++j) s[j] /= sum;
  } else {
#pragma unroll
    for (int j = 0; j < kSlots; ++j) {
      const int e = lane + 32 * j;
      s[j] = e < experts ? 1.0f / (1.0f + expf(-row[e])) : 0.0f;
    }
  }

  // 2. Choices: scores + bias, NaN as -inf.
  float c[kSlots];
  __syncwarp();  // lane 0 has read the exps
#pragma unroll
  for (int j = 0; j < kSlots; ++j) {
    const int e = lane + 32 * j;
    if (e < experts) {
      c[j] = rank_key(args.correction_bias != nullptr ? s[j] + args.correction_bias[e] : s[j]);
      scores[warp][e] = s[j];
      choices[warp][e] = c[j];
    }
  }
  __syncwarp();

  // 3. Group limit.
  if (args.n_group > 1) {
    const int group_size = experts / args.n_group;
    float group_score = -INFINITY;
    if (lane < args.n_group) {
      float first = -INFINITY;
      float second = -INFINITY;
      for (int e = lane * group_size; e < (lane + 1) * group_size; ++e) {
        const float v = choices[warp][e];
        if (v > first) {
          second = first;
          first = v;
        } else if (v > second) {
          second = v;
        }
      }
      group_score =
          rank_key(args.group_scoring == cpu::GroupScoring::kMax ? first : first + second);
    }
    unsigned kept = 0;
    bool taken = lane >= args.n_group;
    for (int r = 0; r < args.topk_group; ++r) {
      float best = taken ? -INFINITY : group_score;
      int best_group = taken ? INT_MAX : lane;
      warp_arg_max(best, best_group);
      kept |= 1u << best_group;
      taken = taken || lane == best_group;
    }
#pragma unroll
    for (int j = 0; j < kSlots; ++j) {
      const int e = lane + 32 * j;
      if (e < experts && (kept >> (e / group_size) & 1u) == 0) c[j] = 0.0f;
    }
  }

  // 4. The k best choices; 5. their scores as weights.
  unsigned taken_slots = 0;
  float top_s[kMaxTopK] = {};
  int top_e[kMaxTopK] = {};
#pragma unroll
  for (int r = 0; r < kMaxTopK; ++r) {
    if (r >= k) break;  // k is the same for the whole warp
    float best = -INFINITY;
    int best_e = INT_MAX;
#pragma unroll
    for (int j = 0; j < kSlots; ++j) {  // ascending ids: strict > keeps the lowest among ties
      const int e = lane + 32 * j;
      if (e < experts && (taken_slots >> j & 1u) == 0 && (best_e == INT_MAX || c[j] > best)) {
        best = c[j];
        best_e = e;
      }
    }
    warp_arg_max(best, best_e);
    if (lane == best_e % 32) taken_slots |= 1u << (best_e / 32);
    top_e[r] = best_e;
    top_s[r] = scores[warp][best_e];
  }
  float total = 0.0f;
#pragma unroll
  for (int r = 0; r < kMaxTopK; ++r) {
    if (r < k) total += top_s[r];
  }
  if (args.scoring == cpu::RouterScoring::kSigmoid) total += 1e-20f;
#pragma unroll
  for (int r = 0; r < kMaxTopK; ++r) {
    if (r < k && lane == r) {
      ids[t * k + r] = top_e[r];
      weights[t * k + r] = (args.renormalize ? top_s[r] / total : top_s[r]) * args.scaling;
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

cudaError_t route(const float* logits, int64_t tokens, int64_t experts, const cpu::RouterArgs& args,
                  int32_t* ids, float* weights, cudaStream_t stream) {
  if (tokens < 0 || experts < 1 || experts > kMaxExperts || args.k < 1 || args.k > kMaxTopK ||
      args.k > experts || args.n_group < 1 || args.n_group > kMaxGroups ||
      experts % args.n_group != 0 || args.topk_group < 1 || args.topk_group > args.n_group ||
      (args.n_group > 1 && args.group_scoring == cpu::GroupScoring::kTopTwoSum &&
       experts / args.n_group < 2)) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0) return cudaSuccess;
  const int64_t blocks = ceil_div(tokens, kRouteWarps);
  if (blocks > INT32_MAX) return cudaErrorInvalidValue;
  route_kernel<<<static_cast<unsigned>(blocks), kRouteWarps * 32, 0, stream>>>(
      logits, tokens, static_cast<int>(experts), args, ids, weights);
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
