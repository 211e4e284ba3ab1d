// Matrix products with int8 (DType::kI8) and int4 (DType::kI4G32/64/128) weight rows
// (kernels/dtype.h), and the entry points that pick these or fp8_gemm.cu's kernels by dtype.
// Weight-only: the weights are dequantized to exactly the values sy::cpu::ref::matmul uses, the
// activations are never quantized, accumulation is f32.
//   Decode (m <= kQuantGemvMaxRows): one warp per output column streams its weight row once per
//   8 rows of x (twice for 9-16), 16-byte loads, dequantized in registers, f32 activations; each
//   lane takes whole 16-byte chunks in a fixed order, then a butterfly: a row's result never
//   depends on m.
//   More rows: bf16 tensor cores (wmma), 64 x 64 outputs per block, 32-column k tiles of x and
//   the dequantized weights rounded to bf16 in shared memory (as the bf16 cuBLAS path rounds
//   x). Needs sm_80 or newer.
//   Experts: as fp8_gemm.cu, a block per (expert, 8 outputs) over the expert's rows, 4 at a time,
//   with the decode kernel's dot (the same bits as quantized_matmul for up to 16 rows).
//   MLA's per-head products (quantized_head_matmul): the same two kernels, one grid layer a head.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <climits>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "kernels/cuda/quant_gemm.cu needs sm_80 or newer (bf16 wmma): set CMAKE_CUDA_ARCHITECTURES"
#endif

namespace sy::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kExpertRows = 4;  // x rows per pass of the expert kernels
constexpr int kTileN = 64;      // tensor-core kernel: output columns per block
constexpr int kTileM = 64;      // rows per block
constexpr int kTileK = 32;      // k per shared-memory tile
constexpr int64_t kMaxGridY = 65535;

// The f32 at an address that may not be 4-byte aligned (a kI8 row's scale).
__device__ __forceinline__ float load_unaligned_f32(const uint8_t* p) {
  const uint32_t bits = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                        (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
  return __uint_as_float(bits);
}

// The int8 whose two's-complement byte is b, as f32: 2^23 + (b ^ 0x80) is exact in f32, and
// b ^ 0x80 is the value plus 128.
__device__ __forceinline__ float i8_value(uint32_t b) {
  return __uint_as_float(0x4B000000u | ((b & 0xffu) ^ 0x80u)) - 8388736.0f;
}

// An int4 weight: q * scale + min, each step rounded as the CPU's int4_row_value does (no FMA).
__device__ __forceinline__ float i4_value(uint32_t q, float scale, float min) {
  return __fadd_rn(__fmul_rn(__uint_as_float(0x4B000000u | q) - 8388608.0f, scale), min);
}

// Group g's scale and min of an int4 row (the row is 4-byte aligned: every int4 row is a
// multiple of 4 bytes long).
__device__ __forceinline__ void i4_group(const uint8_t* row, int64_t g, float* scale, float* min) {
  const uint32_t bits = __ldg(reinterpret_cast<const uint32_t*>(row + g * 4));
  *scale = __half2float(__ushort_as_half(static_cast<unsigned short>(bits & 0xffffu)));
  *min = __half2float(__ushort_as_half(static_cast<unsigned short>(bits >> 16)));
}

// V consecutive activations from p; vec: p is 16-byte aligned.
template <int V>
__device__ __forceinline__ void load_x(const float* p, bool vec, float (&out)[V]) {
  if (vec) {
#pragma unroll
    for (int j = 0; j < V / 4; ++j) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(p) + j);
      out[4 * j] = v.x;
      out[4 * j + 1] = v.y;
      out[4 * j + 2] = v.z;
      out[4 * j + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = __ldg(p + i);
  }
}

// acc[r] += x[r * ldx + e0 + i] * w[i] for i < V in order, rows r < rows; x is read 4 values
// at a time (V == 1 or a multiple of 4), which keeps registers for the weights.
template <int M, int V>
__device__ __forceinline__ void accumulate(const float* x, int64_t ldx, int rows, int64_t e0,
                                           bool vec, const float (&w)[V], float (&acc)[M]) {
  constexpr int kStep = V < 4 ? V : 4;
#pragma unroll
  for (int r = 0; r < M; ++r) {
    if (r >= rows) break;
#pragma unroll
    for (int j = 0; j < V; j += kStep) {
      float xv[kStep];
      load_x<kStep>(x + r * ldx + e0 + j, vec, xv);
#pragma unroll
      for (int i = 0; i < kStep; ++i) acc[r] = fmaf(xv[i], w[j + i], acc[r]);
    }
  }
}

// out[r] = x[r] . row for r < rows (rows <= M; x rows ldx apart), the whole warp together; every
// lane gets the sums. kI8: the row's scale times the sum of x * q, as the reference. The row's
// values split at 16-byte boundaries: up to 15 head values before the first, whole chunks, up to
// 15 tail values; lane l takes head value l or tail value l - 16, then chunks l, l + 32, ...
// (two loads in flight). vec_x: x and ldx allow 16-byte loads wherever the chunks start at a
// multiple of 4 elements (the same values either way).
template <int M>
__device__ __forceinline__ void warp_dot_i8(const float* x, int64_t ldx, int rows,
                                            const uint8_t* row, int64_t k, bool vec_x,
                                            float (&out)[M]) {
  const int lane = threadIdx.x % 32;
  const uint8_t* v = row + kI8RowScaleBytes;
  const int64_t head =
      min(k, static_cast<int64_t>((16 - reinterpret_cast<uintptr_t>(v) % 16) % 16));
  const int64_t body = (k - head) / 16;
  const int64_t tail0 = head + body * 16;
  float acc[M];
#pragma unroll
  for (int r = 0; r < M; ++r) acc[r] = 0.0f;
  const int64_t edge = lane < 16 ? (lane < head ? lane : -1) : tail0 + lane - 16;
  if (edge >= 0 && edge < k) {
    const float w[1] = {i8_value(__ldg(v + edge))};
    accumulate<M, 1>(x, ldx, rows, edge, false, w, acc);
  }
  const bool vec = vec_x && head % 4 == 0;
  for (int64_t c = lane; c < body; c += 64) {
    const bool second = c + 32 < body;
    const uint4 a = __ldg(reinterpret_cast<const uint4*>(v + head + 16 * c));
    const uint4 b = second ? __ldg(reinterpret_cast<const uint4*>(v + head + 16 * (c + 32)))
                           : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      if (half == 1 && !second) break;
      const uint4 p = half == 0 ? a : b;
      const uint32_t words[4] = {p.x, p.y, p.z, p.w};
      float w[16];
#pragma unroll
      for (int i = 0; i < 16; ++i) w[i] = i8_value(words[i / 4] >> (8 * (i % 4)));
      accumulate<M, 16>(x, ldx, rows, head + 16 * (c + 32 * half), vec, w, acc);
    }
  }
  const float scale = load_unaligned_f32(row);
#pragma unroll
  for (int r = 0; r < M; ++r) out[r] = warp_sum(acc[r]) * scale;
}

// As warp_dot_i8 for an int4 row with groups of `group` columns: lane l takes the 32-element
// chunks (16 packed bytes each) l, l + 32, ..., dequantizes each in registers and applies it to
// the rows; elements past k (the chunk padding) are skipped.
template <int M>
__device__ __forceinline__ void warp_dot_i4(const float* x, int64_t ldx, int rows,
                                            const uint8_t* row, int64_t k, int group, bool vec_x,
                                            float (&out)[M]) {
  const int lane = threadIdx.x % 32;
  const int64_t groups = (k + group - 1) / group;
  const uint8_t* packed = row + groups * 4;
  const bool packed16 = reinterpret_cast<uintptr_t>(packed) % 16 == 0;
  const int64_t chunks = (k + 31) / 32;
  float acc[M];
#pragma unroll
  for (int r = 0; r < M; ++r) acc[r] = 0.0f;
  for (int64_t c = lane; c < chunks; c += 32) {
    uint4 p;
    if (packed16) {
      p = __ldg(reinterpret_cast<const uint4*>(packed + 16 * c));
    } else {
      const uint32_t* q = reinterpret_cast<const uint32_t*>(packed + 16 * c);
      p = make_uint4(__ldg(q), __ldg(q + 1), __ldg(q + 2), __ldg(q + 3));
    }
    float scale, min;
    i4_group(row, c * 32 / group, &scale, &min);
    const uint32_t words[4] = {p.x, p.y, p.z, p.w};
    // Elements 0-15 are the low nibbles of bytes 0-15, elements 16-31 the high ones: one half
    // of the chunk at a time, in element order.
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float w[16];
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const uint32_t byte = words[i / 4] >> (8 * (i % 4));
        w[i] = i4_value((half == 0 ? byte : byte >> 4) & 0xfu, scale, min);
      }
      const int64_t e0 = 32 * c + 16 * half;
      if (e0 + 16 <= k) {
        accumulate<M, 16>(x, ldx, rows, e0, vec_x, w, acc);
      } else {
#pragma unroll
        for (int r = 0; r < M; ++r) {
          if (r >= rows) break;
#pragma unroll
          for (int i = 0; i < 16; ++i) {
            if (e0 + i < k) acc[r] = fmaf(__ldg(x + r * ldx + e0 + i), w[i], acc[r]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < M; ++r) out[r] = warp_sum(acc[r]);
}

// The weight rows of one matrix: kI8 or int4 (group > 0), row_bytes apart.
struct QuantRows {
  const uint8_t* w;
  size_t row_bytes;
  int group;  // int4 group size; 0 for kI8
};

// The two formats are separate instantiations (kInt4), each with the registers it needs.
template <bool kInt4, int M>
__device__ __forceinline__ void warp_dot(const float* x, int64_t ldx, int rows, QuantRows q,
                                         int64_t j, int64_t k, bool vec_x, float (&out)[M]) {
  const uint8_t* row = q.w + j * q.row_bytes;
  if constexpr (kInt4) {
    warp_dot_i4<M>(x, ldx, rows, row, k, q.group, vec_x, out);
  } else {
    warp_dot_i8<M>(x, ldx, rows, row, k, vec_x, out);
  }
}

// Head blockIdx.z of quantized_head_matmul (the whole product when gridDim.z is 1): where its
// slice of x's and y's rows starts, and their row strides.
struct HeadSlice {
  int64_t head, x_offset, y_offset, ldx, ldy;
};
__device__ __forceinline__ HeadSlice head_slice(int64_t n, int64_t k) {
  const int64_t head = blockIdx.z;
  return {head, head * k, head * n, gridDim.z * k, gridDim.z * n};
}

// Decode: y[r, j] for the warp's column j and every row, M rows per pass.
template <bool kInt4, int M>
__global__ void __launch_bounds__(kThreads, 2)
    quant_gemv_kernel(const float* __restrict__ x, QuantRows q, const float* __restrict__ bias,
                      float* __restrict__ y, int64_t m, int64_t n, int64_t k, bool vec_x) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (j >= n) return;
  const HeadSlice hs = head_slice(n, k);
  const int64_t ldx = hs.ldx, ldy = hs.ldy;
  x += hs.x_offset;
  y += hs.y_offset;
  q.w += hs.head * n * q.row_bytes;
  for (int64_t r0 = 0; r0 < m; r0 += M) {
    const int rows = static_cast<int>(min(static_cast<int64_t>(M), m - r0));
    float out[M];
    warp_dot<kInt4, M>(x + r0 * ldx, ldx, rows, q, j, k, vec_x, out);
#pragma unroll
    for (int r = 0; r < M; ++r) {
      if (r < rows && threadIdx.x % 32 == 0) {
        y[(r0 + r) * ldy + j] = bias != nullptr ? out[r] + bias[j] : out[r];
      }
    }
  }
}

// Weight e of row j as the tensor-core kernel stages it: q for kI8 (the scale is applied to the
// sum), the dequantized value for int4.
__device__ __forceinline__ float tile_weight(QuantRows q, int64_t j, int64_t k, int64_t e) {
  const uint8_t* row = q.w + j * q.row_bytes;
  if (q.group == 0) return i8_value(__ldg(row + kI8RowScaleBytes + e));
  const int64_t groups = (k + q.group - 1) / q.group;
  const uint32_t byte = __ldg(row + groups * 4 + e / 32 * 16 + e % 16);
  float scale, min;
  i4_group(row, e / q.group, &scale, &min);
  return i4_value(e % 32 >= 16 ? byte >> 4 : byte & 0xfu, scale, min);
}

// More rows, on bf16 tensor cores (wmma 16x16x16, f32 accumulation): block (bx, by) computes
// the 64 x 64 outputs of rows by * 64 and columns bx * 64, warp w the 16 rows 16 * (w / 2) and
// 32 columns 32 * (w % 2). Per 32-column k tile, x and the dequantized weights (each rounded to
// bf16, as cuBLAS products of bf16 weights round x) are staged in shared memory, rows padded
// by 8 elements against bank conflicts (wmma needs 16-byte row strides, 32-byte aligned tiles).
// The accumulators go through shared memory to the int8 row scales, the bias and y.
__global__ void __launch_bounds__(kThreads)
    quant_mma_kernel(const float* __restrict__ x, QuantRows q, const float* __restrict__ bias,
                     float* __restrict__ y, int64_t m, int64_t n, int64_t k) {
  constexpr int kLd = kTileK + 8;     // bf16 elements per staged row
  constexpr int kOutLd = kTileN + 4;  // floats per row of the staged outputs
  __shared__ __align__(32) __nv_bfloat16 xs[kTileM][kLd];
  __shared__ __align__(32) __nv_bfloat16 ws[kTileN][kLd];
  __shared__ __align__(32) float out[kTileM][kOutLd];
  const HeadSlice hs = head_slice(n, k);
  const int64_t ldx = hs.ldx, ldy = hs.ldy;
  x += hs.x_offset;
  y += hs.y_offset;
  q.w += hs.head * n * q.row_bytes;
  const int64_t col0 = static_cast<int64_t>(blockIdx.x) * kTileN;
  const int64_t row0 = static_cast<int64_t>(blockIdx.y) * kTileM;
  const int warp = threadIdx.x / 32;
  const int warp_row = (warp / 2) * 16;
  const int warp_col = (warp % 2) * 32;
  nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> acc[2];
  nvcuda::wmma::fill_fragment(acc[0], 0.0f);
  nvcuda::wmma::fill_fragment(acc[1], 0.0f);
  for (int64_t k0 = 0; k0 < k; k0 += kTileK) {
    // Consecutive threads take consecutive k of one row: coalesced reads of w and x. Past n, m
    // or k: zeros.
    for (int idx = threadIdx.x; idx < kTileN * kTileK; idx += kThreads) {
      const int c = idx / kTileK, kk = idx % kTileK;
      const bool in = col0 + c < n && k0 + kk < k;
      ws[c][kk] = __float2bfloat16_rn(in ? tile_weight(q, col0 + c, k, k0 + kk) : 0.0f);
    }
    for (int idx = threadIdx.x; idx < kTileM * kTileK; idx += kThreads) {
      const int r = idx / kTileK, kk = idx % kTileK;
      const bool in = row0 + r < m && k0 + kk < k;
      xs[r][kk] = __float2bfloat16_rn(in ? __ldg(x + (row0 + r) * ldx + k0 + kk) : 0.0f);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; kk += 16) {
      // A = x tile (row-major, m x k); B = w tile transposed (k x n), ws[c][kk] is B(kk, c):
      // column-major.
      nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __nv_bfloat16,
                             nvcuda::wmma::row_major>
          a;
      nvcuda::wmma::load_matrix_sync(a, &xs[warp_row][kk], kLd);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __nv_bfloat16,
                               nvcuda::wmma::col_major>
            b;
        nvcuda::wmma::load_matrix_sync(b, &ws[warp_col + 16 * i][kk], kLd);
        nvcuda::wmma::mma_sync(acc[i], a, b, acc[i]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    nvcuda::wmma::store_matrix_sync(&out[warp_row][warp_col + 16 * i], acc[i], kOutLd,
                                    nvcuda::wmma::mem_row_major);
  }
  __syncthreads();
  // Thread t writes column t % 64 of rows t / 64, t / 64 + 4, ...: consecutive columns.
  const int c = threadIdx.x % kTileN;
  const int64_t col = col0 + c;
  if (col >= n) return;
  const float scale = q.group == 0 ? load_unaligned_f32(q.w + col * q.row_bytes) : 1.0f;
  for (int r = threadIdx.x / kTileN; r < kTileM && row0 + r < m; r += kThreads / kTileN) {
    const float v = out[r][c] * scale;
    y[(row0 + r) * ldy + col] = bias != nullptr ? v + bias[col] : v;
  }
}

// act[r, i] = silu(x[r] . gate_i) * (x[r] . up_i) over the rows of expert blockIdx.x.
template <bool kInt4>
__global__ void __launch_bounds__(kThreads, 2)
    quant_gate_up_kernel(const float* __restrict__ x, const int32_t* __restrict__ offsets,
                         const void* const* __restrict__ gate_up_ptrs, size_t row_bytes, int group,
                         int64_t hidden, int64_t inter, bool vec_x, float* __restrict__ act) {
  const int64_t i = static_cast<int64_t>(blockIdx.y) * kWarps + threadIdx.x / 32;
  if (i >= inter) return;
  const QuantRows q{static_cast<const uint8_t*>(gate_up_ptrs[blockIdx.x]), row_bytes, group};
  const int64_t end = offsets[blockIdx.x + 1];
  for (int64_t r0 = offsets[blockIdx.x]; r0 < end; r0 += kExpertRows) {
    const int rows = static_cast<int>(min(static_cast<int64_t>(kExpertRows), end - r0));
    float g[kExpertRows], u[kExpertRows];
    warp_dot<kInt4, kExpertRows>(x + r0 * hidden, hidden, rows, q, i, hidden, vec_x, g);
    warp_dot<kInt4, kExpertRows>(x + r0 * hidden, hidden, rows, q, inter + i, hidden, vec_x, u);
#pragma unroll
    for (int r = 0; r < kExpertRows; ++r) {
      if (r < rows && threadIdx.x % 32 == 0) {
        act[(r0 + r) * inter + i] = g[r] / (1.0f + expf(-g[r])) * u[r];
      }
    }
  }
}

// y[r, h] = act[r] . down_h over the rows of expert blockIdx.x.
template <bool kInt4>
__global__ void __launch_bounds__(kThreads, 2)
    quant_down_kernel(const float* __restrict__ act, const int32_t* __restrict__ offsets,
                      const void* const* __restrict__ down_ptrs, size_t row_bytes, int group,
                      int64_t hidden, int64_t inter, bool vec_x, float* __restrict__ y) {
  const int64_t h = static_cast<int64_t>(blockIdx.y) * kWarps + threadIdx.x / 32;
  if (h >= hidden) return;
  const QuantRows q{static_cast<const uint8_t*>(down_ptrs[blockIdx.x]), row_bytes, group};
  const int64_t end = offsets[blockIdx.x + 1];
  for (int64_t r0 = offsets[blockIdx.x]; r0 < end; r0 += kExpertRows) {
    const int rows = static_cast<int>(min(static_cast<int64_t>(kExpertRows), end - r0));
    float s[kExpertRows];
    warp_dot<kInt4, kExpertRows>(act + r0 * inter, inter, rows, q, h, inter, vec_x, s);
#pragma unroll
    for (int r = 0; r < kExpertRows; ++r) {
      if (r < rows && threadIdx.x % 32 == 0) y[(r0 + r) * hidden + h] = s[r];
    }
  }
}

bool is_int_quantized(DType t) { return t == DType::kI8 || is_int4(t); }

// Int4 rows are read 4 bytes at a time (headers, unaligned packed chunks).
bool rows_readable(const void* w, DType t) {
  return t == DType::kI8 || reinterpret_cast<uintptr_t>(w) % 4 == 0;
}

template <int M>
void launch_gemv(dim3 grid, const float* x, QuantRows q, const float* bias, float* y, int64_t m,
                 int64_t n, int64_t k, bool vec_x, cudaStream_t stream) {
  if (q.group > 0) {
    quant_gemv_kernel<true, M><<<grid, kThreads, 0, stream>>>(x, q, bias, y, m, n, k, vec_x);
  } else {
    quant_gemv_kernel<false, M><<<grid, kThreads, 0, stream>>>(x, q, bias, y, m, n, k, vec_x);
  }
}

// `heads` products side by side (quantized_head_matmul), one grid layer each; 1: a plain matmul.
cudaError_t int_matmul(const float* x, const void* w, DType w_dtype, const float* bias, float* y,
                       int64_t m, int64_t heads, int64_t n, int64_t k, cudaStream_t stream) {
  if (m < 0 || heads < 0 || heads > kMaxGridY || n < 0 || k < 0 || !rows_readable(w, w_dtype)) {
    return cudaErrorInvalidValue;
  }
  if (m == 0 || heads == 0 || n == 0) return cudaSuccess;
  const QuantRows q{static_cast<const uint8_t*>(w), dtype_row_bytes(w_dtype, k),
                    static_cast<int>(int4_group_size(w_dtype))};
  if (m > kQuantGemvMaxRows) {
    const int64_t row_tiles = ceil_div(m, kTileM);
    if (ceil_div(n, kTileN) > INT_MAX || row_tiles > kMaxGridY) return cudaErrorInvalidValue;
    const dim3 grid(static_cast<unsigned>(ceil_div(n, kTileN)), static_cast<unsigned>(row_tiles),
                    static_cast<unsigned>(heads));
    quant_mma_kernel<<<grid, kThreads, 0, stream>>>(x, q, bias, y, m, n, k);
    return launch_result();
  }
  const int64_t blocks = ceil_div(n, kWarps);
  if (blocks > INT_MAX) return cudaErrorInvalidValue;
  const bool vec_x = is_aligned16(x) && k % 4 == 0;  // every head's slice then is too
  const dim3 grid(static_cast<unsigned>(blocks), 1, static_cast<unsigned>(heads));
  if (m <= 1) {
    launch_gemv<1>(grid, x, q, bias, y, m, n, k, vec_x, stream);
  } else if (m <= 2) {
    launch_gemv<2>(grid, x, q, bias, y, m, n, k, vec_x, stream);
  } else if (m <= 4) {
    launch_gemv<4>(grid, x, q, bias, y, m, n, k, vec_x, stream);
  } else {
    launch_gemv<8>(grid, x, q, bias, y, m, n, k, vec_x, stream);
  }
  return launch_result();
}

cudaError_t int_grouped_expert_ffn(const float* x, const int32_t* offsets, int64_t experts,
                                   const void* const* gate_up_ptrs, const void* const* down_ptrs,
                                   DType w_dtype, int64_t hidden, int64_t inter, int64_t rows,
                                   float* act, float* y, cudaStream_t stream) {
  if (experts < 0 || hidden <= 0 || inter <= 0 || rows < 0) return cudaErrorInvalidValue;
  if (experts == 0 || rows == 0) return cudaSuccess;
  if (experts > INT_MAX || ceil_div(inter, kWarps) > kMaxGridY ||
      ceil_div(hidden, kWarps) > kMaxGridY) {
    return cudaErrorInvalidValue;
  }
  const int group = static_cast<int>(int4_group_size(w_dtype));
  const dim3 gate_grid(static_cast<unsigned>(experts),
                       static_cast<unsigned>(ceil_div(inter, kWarps)));
  const size_t gate_row_bytes = dtype_row_bytes(w_dtype, hidden);
  const bool gate_vec = is_aligned16(x) && hidden % 4 == 0;
  if (group > 0) {
    quant_gate_up_kernel<true><<<gate_grid, kThreads, 0, stream>>>(
        x, offsets, gate_up_ptrs, gate_row_bytes, group, hidden, inter, gate_vec, act);
  } else {
    quant_gate_up_kernel<false><<<gate_grid, kThreads, 0, stream>>>(
        x, offsets, gate_up_ptrs, gate_row_bytes, group, hidden, inter, gate_vec, act);
  }
  const cudaError_t err = launch_result();
  if (err != cudaSuccess) return err;
  const dim3 down_grid(static_cast<unsigned>(experts),
                       static_cast<unsigned>(ceil_div(hidden, kWarps)));
  const size_t down_row_bytes = dtype_row_bytes(w_dtype, inter);
  const bool down_vec = is_aligned16(act) && inter % 4 == 0;
  if (group > 0) {
    quant_down_kernel<true><<<down_grid, kThreads, 0, stream>>>(
        act, offsets, down_ptrs, down_row_bytes, group, hidden, inter, down_vec, y);
  } else {
    quant_down_kernel<false><<<down_grid, kThreads, 0, stream>>>(
        act, offsets, down_ptrs, down_row_bytes, group, hidden, inter, down_vec, y);
  }
  return launch_result();
}

}  // namespace

cudaError_t quantized_matmul(const float* x, const void* w, DType w_dtype, const float* bias,
                             float* y, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  if (w_dtype == DType::kF8) return fp8_matmul(x, w, bias, y, m, n, k, stream);
  if (!is_int_quantized(w_dtype)) return cudaErrorInvalidValue;
  return int_matmul(x, w, w_dtype, bias, y, m, 1, n, k, stream);
}

cudaError_t quantized_head_matmul(const float* x, const void* w, DType w_dtype, float* y, int64_t m,
                                  int64_t heads, int64_t n, int64_t k, cudaStream_t stream) {
  if (!is_int_quantized(w_dtype)) return cudaErrorInvalidValue;
  return int_matmul(x, w, w_dtype, nullptr, y, m, heads, n, k, stream);
}

cudaError_t quantized_grouped_expert_ffn(const float* x, const int32_t* offsets, int64_t experts,
                                         const void* const* gate_up_ptrs,
                                         const void* const* down_ptrs, DType w_dtype,
                                         int64_t hidden, int64_t inter, int64_t rows, float* act,
                                         float* y, cudaStream_t stream) {
  if (w_dtype == DType::kF8) {
    return fp8_grouped_expert_ffn(x, offsets, experts, gate_up_ptrs, down_ptrs, hidden, inter, rows,
                                  act, y, stream);
  }
  if (!is_int_quantized(w_dtype)) return cudaErrorInvalidValue;
  return int_grouped_expert_ffn(x, offsets, experts, gate_up_ptrs, down_ptrs, w_dtype, hidden,
                                inter, rows, act, y, stream);
}

}  // namespace sy::cuda
