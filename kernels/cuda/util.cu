// Utility kernels: random weight fill (bit-identical to sy::cpu::fill_random), f32 fill, and the
// 16-byte copy whose bandwidth is the benchmarks' roofline.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // larger sizes loop (grid-stride)

unsigned blocks_for(int64_t units) {
  return static_cast<unsigned>(std::clamp<int64_t>(ceil_div(units, kThreads), 1, kMaxBlocks));
}

__device__ __forceinline__ int64_t flat_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t flat_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// sy::cpu::random_uniform_at, step for step: the integer hash is exact, z >> 40 < 2^24 converts
// to float exactly, and the float steps are each one correctly rounded operation (the _rn
// intrinsics keep nvcc from contracting them into an FMA).
__device__ __forceinline__ float random_uniform_at(uint64_t seed, int64_t i, float scale) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (static_cast<uint64_t>(i) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  const float u = __fmul_rn(__ull2float_rn(z >> 40), 1.0f / 16777216.0f);
  return __fmul_rn(__fsub_rn(__fmul_rn(2.0f, u), 1.0f), scale);
}

template <DType D>
__global__ void fill_random_kernel(void* data, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = flat_index(); i < n; i += flat_stride()) {
    const float v = random_uniform_at(seed, i, scale);
    if constexpr (D == DType::kF32) {
      static_cast<float*>(data)[i] = v;
    } else if constexpr (D == DType::kBF16) {
      static_cast<uint16_t*>(data)[i] = f32_to_bf16_bits(v);
    } else {
      static_cast<uint16_t*>(data)[i] = f32_to_f16_bits(v);
    }
  }
}

// 16-byte stores over the first n / 4 * 4 values, then the n % 4 tail (data 16-byte aligned).
__global__ void fill_f32_kernel(float* data, int64_t n, float value) {
  const int64_t units = n / 4;
  for (int64_t u = flat_index(); u < units; u += flat_stride()) {
    __stwb(reinterpret_cast<float4*>(data) + u, make_float4(value, value, value, value));
  }
  const int64_t tail = units * 4 + flat_index();
  if (tail < n) data[tail] = value;
}

__global__ void fill_f32_scalar_kernel(float* data, int64_t n, float value) {
  for (int64_t i = flat_index(); i < n; i += flat_stride()) data[i] = value;
}

// Four independent 16-byte loads in flight per thread before their stores.
constexpr int kCopyUnroll = 4;

__global__ void copy_kernel(uint4* __restrict__ dst, const uint4* __restrict__ src, int64_t n) {
  const int64_t stride = flat_stride();
  for (int64_t i = flat_index(); i < n; i += stride * kCopyUnroll) {
    uint4 v[kCopyUnroll];
#pragma unroll
    for (int j = 0; j < kCopyUnroll; ++j) {
      if (i + j * stride < n) v[j] = __ldcs(src + i + j * stride);
    }
#pragma unroll
    for (int j = 0; j < kCopyUnroll; ++j) {
      if (i + j * stride < n) __stcs(dst + i + j * stride, v[j]);
    }
  }
}

}  // namespace

cudaError_t fill_random(void* data, DType dtype, int64_t n, uint64_t seed, float scale,
                        cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kF32:
      fill_random_kernel<DType::kF32><<<blocks_for(n), kThreads, 0, stream>>>(data, n, seed, scale);
      break;
    case DType::kBF16:
      fill_random_kernel<DType::kBF16>
          <<<blocks_for(n), kThreads, 0, stream>>>(data, n, seed, scale);
      break;
    case DType::kF16:
      fill_random_kernel<DType::kF16><<<blocks_for(n), kThreads, 0, stream>>>(data, n, seed, scale);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return launch_result();
}

cudaError_t fill_f32(float* data, int64_t n, float value, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (reinterpret_cast<uintptr_t>(data) % 16 == 0) {
    fill_f32_kernel<<<blocks_for(n / 4), kThreads, 0, stream>>>(data, n, value);
  } else {
    fill_f32_scalar_kernel<<<blocks_for(n), kThreads, 0, stream>>>(data, n, value);
  }
  return launch_result();
}

cudaError_t copy_bytes(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes % 16 != 0 || reinterpret_cast<uintptr_t>(dst) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(src) % 16 != 0) {
    return cudaErrorInvalidValue;
  }
  if (bytes == 0) return cudaSuccess;
  const int64_t n = static_cast<int64_t>(bytes / 16);
  copy_kernel<<<blocks_for(ceil_div(n, kCopyUnroll)), kThreads, 0, stream>>>(
      static_cast<uint4*>(dst), static_cast<const uint4*>(src), n);
  return launch_result();
}

}  // namespace sy::cuda
