// Matrix products with FP8 weights (DType::kF8 rows: f32 scale per 128 columns, then e4m3fn
// bytes; kernels/dtype.h). Correctness first: one warp per output column, lanes interleaved
// over k, a butterfly reduction; the same per-row order for any number of rows, so results are
// batch-invariant, and the grouped expert kernels give exactly the per-expert matmul's values.
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerBlock = 16;  // x rows per block of fp8_matmul (accumulators per lane)
constexpr int64_t kMaxGridY = 65535;

__device__ __forceinline__ int64_t header_bytes(int64_t k) { return (k + 127) / 128 * 4; }

// The f32 at an address that may not be 4-byte aligned (rows of k + header bytes).
__device__ __forceinline__ float load_unaligned_f32(const uint8_t* p) {
  const uint32_t bits = static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
                        (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
  return __uint_as_float(bits);
}

// Weight kk of a kF8 row: its block's scale times e4m3fn(q). The byte read as the f16 bit
// pattern ((b & 0x80) << 8) | ((b & 0x7f) << 7) is exactly e4m3fn(b) * 2^-8, and the scale times
// 2^8 is exact: the product is the CPU kernels' and the reference's.
__device__ __forceinline__ float f8_weight(const uint8_t* row, int64_t k, int64_t kk) {
  const uint32_t b = __ldg(row + header_bytes(k) + kk);
  const float decoded = __half2float(
      __ushort_as_half(static_cast<unsigned short>(((b & 0x80u) << 8) | ((b & 0x7fu) << 7))));
  return decoded * (load_unaligned_f32(row + kk / 128 * 4) * 256.0f);
}

// sum over kk of x[kk] * w(kk), lane l taking kk = l, l + 32, ...; every lane gets the sum.
__device__ __forceinline__ float warp_dot_f8(const float* x, const uint8_t* row, int64_t k) {
  float acc = 0.0f;
  for (int64_t kk = threadIdx.x % 32; kk < k; kk += 32)
    acc = fmaf(x[kk], f8_weight(row, k, kk), acc);
  return warp_sum(acc);
}

// y[r, j] for the block's rows and the warp's column j.
__global__ void fp8_matmul_kernel(const float* __restrict__ x, const uint8_t* __restrict__ w,
                                  const float* __restrict__ bias, float* __restrict__ y, int64_t m,
                                  int64_t n, int64_t k) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (j >= n) return;
  const uint8_t* row = w + j * (k + header_bytes(k));
  for (int64_t r0 = static_cast<int64_t>(blockIdx.y) * kRowsPerBlock; r0 < m;
       r0 += static_cast<int64_t>(gridDim.y) * kRowsPerBlock) {
    const int rows = m - r0 < kRowsPerBlock ? static_cast<int>(m - r0) : kRowsPerBlock;
    float acc[kRowsPerBlock];
#pragma unroll
    for (int r = 0; r < kRowsPerBlock; ++r) acc[r] = 0.0f;
    for (int64_t kk = threadIdx.x % 32; kk < k; kk += 32) {
      const float wv = f8_weight(row, k, kk);
#pragma unroll
      for (int r = 0; r < kRowsPerBlock; ++r) {
        if (r < rows) acc[r] = fmaf(x[(r0 + r) * k + kk], wv, acc[r]);
      }
    }
#pragma unroll
    for (int r = 0; r < kRowsPerBlock; ++r) {
      const float sum = warp_sum(acc[r]);
      if (r < rows && threadIdx.x % 32 == 0) {
        y[(r0 + r) * n + j] = bias != nullptr ? sum + bias[j] : sum;
      }
    }
  }
}

// act[r, i] = silu(x[r] . gate_i) * (x[r] . up_i) over the rows of expert blockIdx.x.
__global__ void fp8_gate_up_kernel(const float* __restrict__ x, const int32_t* __restrict__ offsets,
                                   const void* const* __restrict__ gate_up_ptrs, int64_t hidden,
                                   int64_t inter, float* __restrict__ act) {
  const int64_t i = static_cast<int64_t>(blockIdx.y) * kWarps + threadIdx.x / 32;
  if (i >= inter) return;
  const auto* w = static_cast<const uint8_t*>(gate_up_ptrs[blockIdx.x]);
  const int64_t row_bytes = hidden + header_bytes(hidden);
  for (int64_t r = offsets[blockIdx.x]; r < offsets[blockIdx.x + 1]; ++r) {
    const float g = warp_dot_f8(x + r * hidden, w + i * row_bytes, hidden);
    const float u = warp_dot_f8(x + r * hidden, w + (inter + i) * row_bytes, hidden);
    if (threadIdx.x % 32 == 0) act[r * inter + i] = g / (1.0f + expf(-g)) * u;
  }
}

// y[r, h] = act[r] . down_h over the rows of expert blockIdx.x.
__global__ void fp8_down_kernel(const float* __restrict__ act, const int32_t* __restrict__ offsets,
                                const void* const* __restrict__ down_ptrs, int64_t hidden,
                                int64_t inter, float* __restrict__ y) {
  const int64_t h = static_cast<int64_t>(blockIdx.y) * kWarps + threadIdx.x / 32;
  if (h >= hidden) return;
  const auto* w = static_cast<const uint8_t*>(down_ptrs[blockIdx.x]);
  const int64_t row_bytes = inter + header_bytes(inter);
  for (int64_t r = offsets[blockIdx.x]; r < offsets[blockIdx.x + 1]; ++r) {
    const float sum = warp_dot_f8(act + r * inter, w + h * row_bytes, inter);
    if (threadIdx.x % 32 == 0) y[r * hidden + h] = sum;
  }
}

}  // namespace

cudaError_t fp8_matmul(const float* x, const void* w, const float* bias, float* y, int64_t m,
                       int64_t n, int64_t k, cudaStream_t stream) {
  if (m < 0 || n < 0 || k < 0) return cudaErrorInvalidValue;
  if (m == 0 || n == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(ceil_div(n, kWarps)),
                  static_cast<unsigned>(std::min(ceil_div(m, kRowsPerBlock), kMaxGridY)));
  fp8_matmul_kernel<<<grid, kThreads, 0, stream>>>(x, static_cast<const uint8_t*>(w), bias, y, m, n,
                                                   k);
  return launch_result();
}

cudaError_t fp8_grouped_expert_ffn(const float* x, const int32_t* offsets, int64_t experts,
                                   const void* const* gate_up_ptrs, const void* const* down_ptrs,
                                   int64_t hidden, int64_t inter, int64_t rows, float* act,
                                   float* y, cudaStream_t stream) {
  if (experts < 0 || hidden <= 0 || inter <= 0 || rows < 0) return cudaErrorInvalidValue;
  if (experts == 0 || rows == 0) return cudaSuccess;
  if (ceil_div(inter, kWarps) > kMaxGridY || ceil_div(hidden, kWarps) > kMaxGridY) {
    return cudaErrorInvalidValue;
  }
  const dim3 gate_grid(static_cast<unsigned>(experts),
                       static_cast<unsigned>(ceil_div(inter, kWarps)));
  fp8_gate_up_kernel<<<gate_grid, kThreads, 0, stream>>>(x, offsets, gate_up_ptrs, hidden, inter,
                                                         act);
  const cudaError_t err = launch_result();
  if (err != cudaSuccess) return err;
  const dim3 down_grid(static_cast<unsigned>(experts),
                       static_cast<unsigned>(ceil_div(hidden, kWarps)));
  fp8_down_kernel<<<down_grid, kThreads, 0, stream>>>(act, offsets, down_ptrs, hidden, inter, y);
  return launch_result();
}

}  // namespace sy::cuda
