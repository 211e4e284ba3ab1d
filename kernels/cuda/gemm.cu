// Matrix products for small row counts (decode): skinny_matmul streams a weight matrix once for
// up to 16 activation rows, and grouped_expert_ffn runs all the experts of an MoE layer. Both are
// memory-bound: CUDA cores, 16-byte weight loads, f32 accumulation in a fixed order.
#include <algorithm>
#include <climits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {
namespace {

constexpr int kWarps = 8;  // warps per block, every kernel here
constexpr int kThreads = kWarps * 32;
constexpr int kCols = 4;  // weight rows one warp works on at once (one load each in flight)
// Warps a skinny_matmul grid aims for: 16 per SM of an H100 (132 SMs) keep enough 16-byte loads
// in flight to approach HBM bandwidth.
constexpr int64_t kTargetWarps = 132 * 16;
constexpr int kFfnRows = 4;                    // x rows per pass over an expert's weights
constexpr int kGateTile = kWarps * kCols / 2;  // intermediates per gate/up block
constexpr int kDownTile = kWarps * kCols;      // hidden columns per down block
constexpr int64_t kMaxGridY = 65535;

// Elements of T in one 16-byte chunk. Lanes work on whole chunks of consecutive k, always in the
// same order whatever the load path or the number of rows, so each output's summation order
// depends only on k, the dtype and the launch shape.
template <typename T>
inline constexpr int kChunk = static_cast<int>(16 / sizeof(T));

__host__ __device__ __forceinline__ bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// 16 bytes of weights, read once per pass: not allocated in L1, which then keeps x.
__device__ __forceinline__ uint4 load_weights16(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(__cvta_generic_to_global(p)));
  return v;
}

// The kChunk<T> values packed in 16 bytes, widened to f32 (exactly).
template <typename T>
__device__ __forceinline__ void unpack(uint4 v, float (&out)[kChunk<T>]);

template <>
__device__ __forceinline__ void unpack<float>(uint4 v, float (&out)[4]) {
  out[0] = __uint_as_float(v.x);
  out[1] = __uint_as_float(v.y);
  out[2] = __uint_as_float(v.z);
  out[3] = __uint_as_float(v.w);
}

template <>
__device__ __forceinline__ void unpack<__nv_bfloat16>(uint4 v, float (&out)[8]) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {  // element 2j is the low half (little endian)
    out[2 * j] = __uint_as_float(words[j] << 16);
    out[2 * j + 1] = __uint_as_float(words[j] & 0xffff0000u);
  }
}

template <>
__device__ __forceinline__ void unpack<__half>(uint4 v, float (&out)[8]) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    out[2 * j] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[j] & 0xffffu)));
    out[2 * j + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[j] >> 16)));
  }
}

// Weights row[e0, e0 + kChunk) as f32. The vector path needs row + e0 16-byte aligned; the
// scalar path reads element by element and gives zeros past k.
template <typename T, bool kVec>
__device__ __forceinline__ void load_w_chunk(const T* row, int64_t e0, int64_t k,
                                             float (&out)[kChunk<T>]) {
  if constexpr (kVec) {
    unpack<T>(load_weights16(row + e0), out);
  } else {
#pragma unroll
    for (int i = 0; i < kChunk<T>; ++i) out[i] = e0 + i < k ? to_f32(row[e0 + i]) : 0.0f;
  }
}

// Activations row[e0, e0 + V), as load_w_chunk (V is a multiple of 4).
template <int V, bool kVec>
__device__ __forceinline__ void load_x_chunk(const float* row, int64_t e0, int64_t k,
                                             float (&out)[V]) {
  if constexpr (kVec) {
    const float4* p = reinterpret_cast<const float4*>(row + e0);
#pragma unroll
    for (int j = 0; j < V / 4; ++j) {
      const float4 v = __ldg(p + j);
      out[4 * j] = v.x;
      out[4 * j + 1] = v.y;
      out[4 * j + 2] = v.z;
      out[4 * j + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = e0 + i < k ? __ldg(row + e0 + i) : 0.0f;
  }
}

// acc[c][r] += x[r, :] . w[c][:] over this lane's chunks first, first + step, ... of k. Rows
// r >= rows (rows <= M, the same in the whole warp) are skipped, and every row runs the same
// sequence of FMAs whatever M and rows are: a row's sum never depends on the other rows.
template <typename T, int M, bool kVec>
__device__ __forceinline__ void dot_rows(const float* x, int rows, const T* const (&w)[kCols],
                                         int64_t k, int64_t first, int64_t step,
                                         float (&acc)[kCols][M]) {
  constexpr int V = kChunk<T>;
  const int64_t chunks = (k + V - 1) / V;
#pragma unroll 1  // the kCols loads of one chunk are the loads in flight; more costs occupancy
  for (int64_t ch = first; ch < chunks; ch += step) {
    const int64_t e0 = ch * V;
    float wv[kCols][V];
#pragma unroll
    for (int c = 0; c < kCols; ++c) load_w_chunk<T, kVec>(w[c], e0, k, wv[c]);
#pragma unroll
    for (int r = 0; r < M; ++r) {
      if (r >= rows) break;
      float xv[V];
      load_x_chunk<V, kVec>(x + r * k, e0, k, xv);
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
#pragma unroll
        for (int i = 0; i < V; ++i) acc[c][r] = fmaf(xv[i], wv[c][i], acc[c][r]);
      }
    }
  }
}

// skinny_matmul. A block has kWarps / split groups of `split` warps; each group owns kCols
// consecutive output columns and its warps take interleaved chunks of k (chunk index = lane +
// 32 * warp-in-group + 32 * split * t). Each warp reduces its lanes (butterfly), then the group's
// warps are added in warp order through shared memory: a fixed order for given (k, split), and
// split depends only on n and k, never on m.
template <typename T, int M, bool kVec>
__global__ void __launch_bounds__(kThreads)
    skinny_matmul_kernel(const float* __restrict__ x, const T* __restrict__ w,
                         const float* __restrict__ bias, float* __restrict__ y, int m, int64_t n,
                         int64_t k, int split) {
  __shared__ float partial[kWarps][kCols][M];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int tile = (kWarps / split) * kCols;  // columns per block
  const int64_t block_col0 = static_cast<int64_t>(blockIdx.x) * tile;
  const int64_t col0 = block_col0 + (warp / split) * kCols;
  const T* rows[kCols];
#pragma unroll
  for (int c = 0; c < kCols; ++c) rows[c] = w + min(col0 + c, n - 1) * k;  // tail: any valid row
  float acc[kCols][M] = {};
  dot_rows<T, M, kVec>(x, m, rows, k, (warp % split) * 32 + lane, split * 32, acc);
#pragma unroll
  for (int c = 0; c < kCols; ++c) {
#pragma unroll
    for (int r = 0; r < M; ++r) {
      if (r >= m) break;
      const float s = warp_sum(acc[c][r]);
      if (lane == 0) partial[warp][c][r] = s;
    }
  }
  __syncthreads();
  // Thread t writes column t % tile of row t / tile: consecutive threads, consecutive columns.
  for (int t = threadIdx.x; t < M * tile; t += kThreads) {
    const int r = t / tile;
    const int64_t col = block_col0 + t % tile;
    if (r >= m || col >= n) continue;
    const int g = (t % tile) / kCols;
    const int c = t % kCols;
    float s = partial[g * split][c][r];
    for (int p = 1; p < split; ++p) s += partial[g * split + p][c][r];
    y[r * n + col] = bias != nullptr ? s + bias[col] : s;
  }
}

// Warps sharing one column's k (1, 2, 4 or 8): more when there are too few columns to keep
// kTargetWarps busy, as long as every lane still gets at least two chunks.
int skinny_split(int64_t n, int64_t chunks) {
  int split = 1;
  while (split < kWarps && ceil_div(n, kCols) * split < kTargetWarps &&
         chunks >= 2 * 32 * (2 * split)) {
    split *= 2;
  }
  return split;
}

template <typename T, int M>
void launch_skinny(bool vec, int64_t blocks, const float* x, const T* w, const float* bias,
                   float* y, int m, int64_t n, int64_t k, int split, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(blocks));
  if (vec) {
    skinny_matmul_kernel<T, M, true><<<grid, kThreads, 0, stream>>>(x, w, bias, y, m, n, k, split);
  } else {
    skinny_matmul_kernel<T, M, false><<<grid, kThreads, 0, stream>>>(x, w, bias, y, m, n, k, split);
  }
}

template <typename T>
cudaError_t skinny_matmul_typed(const float* x, const T* w, const float* bias, float* y, int m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  const int split = skinny_split(n, ceil_div(k, kChunk<T>));
  const int64_t blocks = ceil_div(n, (kWarps / split) * kCols);
  if (blocks > INT_MAX) return cudaErrorInvalidValue;
  // 16-byte loads need every row of w and x 16-byte aligned: k * sizeof(T) % 16 == 0 also
  // makes k a multiple of 4 (x rows) when the bases are aligned.
  const bool vec = k * static_cast<int64_t>(sizeof(T)) % 16 == 0 && aligned16(x) && aligned16(w);
  if (m <= 1) {
    launch_skinny<T, 1>(vec, blocks, x, w, bias, y, m, n, k, split, stream);
  } else if (m <= 2) {
    launch_skinny<T, 2>(vec, blocks, x, w, bias, y, m, n, k, split, stream);
  } else if (m <= 4) {
    launch_skinny<T, 4>(vec, blocks, x, w, bias, y, m, n, k, split, stream);
  } else if (m <= 8) {
    launch_skinny<T, 8>(vec, blocks, x, w, bias, y, m, n, k, split, stream);
  } else {
    launch_skinny<T, 16>(vec, blocks, x, w, bias, y, m, n, k, split, stream);
  }
  return launch_result();
}

// An expert and its rows [begin, end) of the grouped activations.
struct ExpertRows {
  int64_t expert;
  int64_t begin;
  int64_t end;
};

// The expert of block slot blockIdx.x and its rows: the blockIdx.x-th expert (ascending) that
// has rows. The grid has min(experts, rows) slots, enough for every expert with rows, so a
// decode step (few rows, many experts) launches few blocks; surplus slots get no rows. Each warp
// finds its expert alone (no shared memory, no barrier): lane l counts the non-empty experts of
// its contiguous range, a prefix sum over lanes finds the lane holding the slot's expert.
__device__ __forceinline__ ExpertRows slot_rows(const int32_t* offsets, int64_t experts,
                                                int64_t rows) {
  const int lane = threadIdx.x % 32;
  const int64_t per_lane = (experts + 31) / 32;
  const int64_t first = min(lane * per_lane, experts);
  const int64_t last = min(first + per_lane, experts);
  int count = 0;
  for (int64_t e = first; e < last; ++e) count += offsets[e + 1] > offsets[e] ? 1 : 0;
  int inclusive = count;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int v = __shfl_up_sync(0xffffffffu, inclusive, o);
    if (lane >= o) inclusive += v;
  }
  const int64_t slot = blockIdx.x;
  const int64_t before = inclusive - count;  // non-empty experts in lower lanes' ranges
  const bool mine = slot >= before && slot < before + count;
  int64_t expert = -1;
  if (mine) {
    int64_t skip = slot - before;
    for (int64_t e = first; e < last; ++e) {
      if (offsets[e + 1] > offsets[e] && skip-- == 0) {
        expert = e;
        break;
      }
    }
  }
  const unsigned owner = __ballot_sync(0xffffffffu, mine);
  if (owner == 0) return {-1, 0, 0};  // fewer experts with rows than slots
  expert = __shfl_sync(0xffffffffu, expert, __ffs(owner) - 1);
  return {expert, offsets[expert], min(static_cast<int64_t>(offsets[expert + 1]), rows)};
}

// Runs pass.run<R, kVec>(first row, count) over the expert's rows, kFfnRows at a time, each
// chunk with the smallest row bucket R that holds it. The scalar path (odd sizes, or misaligned
// weights, which tensors never are) goes one row at a time; a row's sum order is the same on
// either path, whatever R.
template <typename Pass>
__device__ __forceinline__ void for_row_chunks(const Pass& pass, ExpertRows er, bool vec) {
  static_assert(kFfnRows == 4, "the buckets below cover 1..4 rows");
  if (!vec) {
    for (int64_t r = er.begin; r < er.end; ++r) pass.template run<1, false>(r, 1);
    return;
  }
  for (int64_t r0 = er.begin; r0 < er.end; r0 += kFfnRows) {
    const int count = static_cast<int>(min(static_cast<int64_t>(kFfnRows), er.end - r0));
    if (count > 2) {
      pass.template run<4, true>(r0, count);
    } else if (count == 2) {
      pass.template run<2, true>(r0, count);
    } else {
      pass.template run<1, true>(r0, count);
    }
  }
}

// act[r, i] = silu(x[r, :] . gate[i, :]) * (x[r, :] . up[i, :]) for the warp's intermediates
// i0 and i0 + 1 (w: gate rows i0, i0 + 1, then up rows i0, i0 + 1), as ref::matmul and
// ref::silu_mul compute it.
template <typename T>
struct GateUpPass {
  const float* x;
  float* act;
  const T* w[kCols];
  int64_t hidden;
  int64_t inter;
  int64_t i0;

  template <int R, bool kVec>
  __device__ __forceinline__ void run(int64_t r0, int count) const {
    const int lane = threadIdx.x % 32;
    float acc[kCols][R] = {};
    dot_rows<T, R, kVec>(x + r0 * hidden, count, w, hidden, lane, 32, acc);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r >= count) break;
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const float g = warp_sum(acc[c][r]);
        const float u = warp_sum(acc[2 + c][r]);
        if (lane == 0 && i0 + c < inter) {
          act[(r0 + r) * inter + i0 + c] = g / (1.0f + expf(-g)) * u;
        }
      }
    }
  }
};

// y[r, n0 + c] = act[r, :] . down[n0 + c, :] for the warp's kCols hidden columns.
template <typename T>
struct DownPass {
  const float* act;
  float* y;
  const T* w[kCols];
  int64_t hidden;
  int64_t inter;
  int64_t n0;

  template <int R, bool kVec>
  __device__ __forceinline__ void run(int64_t r0, int count) const {
    const int lane = threadIdx.x % 32;
    float acc[kCols][R] = {};
    dot_rows<T, R, kVec>(act + r0 * inter, count, w, inter, lane, 32, acc);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r >= count) break;
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const float s = warp_sum(acc[c][r]);
        if (lane == 0 && n0 + c < hidden) y[(r0 + r) * hidden + n0 + c] = s;
      }
    }
  }
};

// Gate/up products with SiLU-and-multiply fused, for the expert of slot blockIdx.x: warp w owns
// intermediates i0 = 2 * (blockIdx.y * kWarps + w) and i0 + 1 for all the expert's rows. No
// __syncthreads, so blocks without an expert return at once.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    expert_gate_up_kernel(const float* __restrict__ x, const int32_t* __restrict__ offsets,
                          int64_t experts, const void* const* __restrict__ gate_up_ptrs,
                          int64_t hidden, int64_t inter, int64_t rows, bool vec,
                          float* __restrict__ act) {
  const ExpertRows er = slot_rows(offsets, experts, rows);
  if (er.begin >= er.end) return;
  const T* gate_up = static_cast<const T*>(gate_up_ptrs[er.expert]);
  const int64_t i0 = (static_cast<int64_t>(blockIdx.y) * kWarps + threadIdx.x / 32) * 2;
  const int64_t ia = min(i0, inter - 1);  // past the end: any valid row (never stored)
  const int64_t ib = min(i0 + 1, inter - 1);
  const GateUpPass<T> pass{x,
                           act,
                           {gate_up + ia * hidden, gate_up + ib * hidden,
                            gate_up + (inter + ia) * hidden, gate_up + (inter + ib) * hidden},
                           hidden,
                           inter,
                           i0};
  for_row_chunks(pass, er, vec && aligned16(gate_up));
}

// Down products for the expert of slot blockIdx.x: warp w owns hidden columns
// n0 = kCols * (blockIdx.y * kWarps + w) .. n0 + kCols - 1. No __syncthreads, as above.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    expert_down_kernel(const float* __restrict__ act, const int32_t* __restrict__ offsets,
                       int64_t experts, const void* const* __restrict__ down_ptrs, int64_t hidden,
                       int64_t inter, int64_t rows, bool vec, float* __restrict__ y) {
  const ExpertRows er = slot_rows(offsets, experts, rows);
  if (er.begin >= er.end) return;
  const T* down = static_cast<const T*>(down_ptrs[er.expert]);
  const int64_t n0 = (static_cast<int64_t>(blockIdx.y) * kWarps + threadIdx.x / 32) * kCols;
  DownPass<T> pass{act, y, {}, hidden, inter, n0};
#pragma unroll
  for (int c = 0; c < kCols; ++c) pass.w[c] = down + min(n0 + c, hidden - 1) * inter;
  for_row_chunks(pass, er, vec && aligned16(down));
}

template <typename T>
cudaError_t grouped_expert_ffn_typed(const float* x, const int32_t* offsets, int64_t experts,
                                     const void* const* gate_up_ptrs, const void* const* down_ptrs,
                                     int64_t hidden, int64_t inter, int64_t rows, float* act,
                                     float* y, cudaStream_t stream) {
  // Expert slots (see slot_rows): no more experts than rows can have rows.
  const int64_t slots = std::min(experts, rows);
  const int64_t gate_tiles = ceil_div(inter, kGateTile);
  const int64_t down_tiles = ceil_div(hidden, kDownTile);
  if (slots > INT_MAX || gate_tiles > kMaxGridY || down_tiles > kMaxGridY) {
    return cudaErrorInvalidValue;
  }
  const int64_t size = sizeof(T);
  if (inter > 0) {  // else act is empty and y is all zeros (a sum over nothing)
    const bool vec = hidden * size % 16 == 0 && aligned16(x);
    const dim3 grid(static_cast<unsigned>(slots), static_cast<unsigned>(gate_tiles));
    expert_gate_up_kernel<T><<<grid, kThreads, 0, stream>>>(x, offsets, experts, gate_up_ptrs,
                                                            hidden, inter, rows, vec, act);
    const cudaError_t err = launch_result();
    if (err != cudaSuccess) return err;
  }
  const bool vec = inter * size % 16 == 0 && aligned16(act);
  const dim3 grid(static_cast<unsigned>(slots), static_cast<unsigned>(down_tiles));
  expert_down_kernel<T><<<grid, kThreads, 0, stream>>>(act, offsets, experts, down_ptrs, hidden,
                                                       inter, rows, vec, y);
  return launch_result();
}

}  // namespace

cudaError_t skinny_matmul(const float* x, const void* w, DType w_dtype, const float* bias, float* y,
                          int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  if (m < 0 || m > kSkinnyMaxRows || n < 0 || k < 0) return cudaErrorInvalidValue;
  if (m == 0 || n == 0) return cudaSuccess;
  const int rows = static_cast<int>(m);
  switch (w_dtype) {
    case DType::kF32:
      return skinny_matmul_typed(x, static_cast<const float*>(w), bias, y, rows, n, k, stream);
    case DType::kBF16:
      return skinny_matmul_typed(x, static_cast<const __nv_bfloat16*>(w), bias, y, rows, n, k,
                                 stream);
    case DType::kF16:
      return skinny_matmul_typed(x, static_cast<const __half*>(w), bias, y, rows, n, k, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

cudaError_t grouped_expert_ffn(const float* x, const int32_t* offsets, int64_t experts,
                               const void* const* gate_up_ptrs, const void* const* down_ptrs,
                               DType w_dtype, int64_t hidden, int64_t inter, int64_t rows,
                               float* act, float* y, cudaStream_t stream) {
  if (experts < 0 || hidden < 0 || inter < 0 || rows < 0) return cudaErrorInvalidValue;
  if (rows == 0 || hidden == 0) return cudaSuccess;
  if (experts == 0) return cudaErrorInvalidValue;  // rows with no expert to go to
  switch (w_dtype) {
    case DType::kF32:
      return grouped_expert_ffn_typed<float>(x, offsets, experts, gate_up_ptrs, down_ptrs, hidden,
                                             inter, rows, act, y, stream);
    case DType::kBF16:
      return grouped_expert_ffn_typed<__nv_bfloat16>(x, offsets, experts, gate_up_ptrs, down_ptrs,
                                                     hidden, inter, rows, act, y, stream);
    case DType::kF16:
      return grouped_expert_ffn_typed<__half>(x, offsets, experts, gate_up_ptrs, down_ptrs, hidden,
                                              inter, rows, act, y, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace sy::cuda
