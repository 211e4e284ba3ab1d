// Memory-bound kernels: embedding lookup, RMS norms, rotary embedding, SiLU-and-multiply, row
// gather, gated row add, sigmoid and f32 -> bf16/f16 conversion. Row reductions take one block
// per row; the rest are flat grid-stride loops, with 16-byte accesses wherever alignment allows.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace sy::cuda {
namespace {

constexpr int kThreads = 256;
// Flat grids stop growing here and loop instead (any size stays a valid launch).
constexpr int64_t kMaxFlatBlocks = int64_t{1} << 20;

int64_t flat_blocks(int64_t units) { return std::min(ceil_div(units, kThreads), kMaxFlatBlocks); }

// Threads for a block that walks `units` items of one row: a multiple of 32, 32..kThreads.
int row_threads(int64_t units) {
  return static_cast<int>(std::clamp<int64_t>(ceil_div(units, 32) * 32, 32, kThreads));
}

__device__ __forceinline__ int64_t flat_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t flat_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// kVec elements of T from p, as f32 (kVec * sizeof(T) == 16: one 16-byte load).
template <typename T, int kVec>
__device__ __forceinline__ void load_as_f32(const T* p, float (&v)[kVec]) {
  if constexpr (kVec * sizeof(T) == 16) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    // memcpy, not a pointer cast: reading a uint4 through a T* breaks strict aliasing (g++ -O2
    // then reads garbage); nvcc turns this into register moves.
    T e[kVec];
    memcpy(e, &raw, sizeof(raw));
#pragma unroll
    for (int i = 0; i < kVec; ++i) v[i] = to_f32(e[i]);
  } else {
#pragma unroll
    for (int i = 0; i < kVec; ++i) v[i] = to_f32(p[i]);
  }
}

// --- embedding, gather_rows: one block per output row ---

template <typename T, int kVec>
__global__ void embedding_kernel(const int32_t* __restrict__ ids, const T* __restrict__ table,
                                 int64_t dim, float* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const T* src = table + static_cast<int64_t>(ids[row]) * dim;
  float* dst = out + row * dim;
  for (int64_t c = threadIdx.x * int64_t{kVec}; c < dim; c += blockDim.x * int64_t{kVec}) {
    float v[kVec];
    load_as_f32<T, kVec>(src + c, v);
    if constexpr (kVec == 8) {
      store_floats<4>(dst + c, {v[0], v[1], v[2], v[3]});
      store_floats<4>(dst + c + 4, {v[4], v[5], v[6], v[7]});
    } else {
      store_floats<kVec>(dst + c, v);
    }
  }
}

template <DType D>
cudaError_t launch_embedding(const int32_t* ids, int64_t n, const void* table, int64_t dim,
                             float* out, cudaStream_t stream) {
  using T = typename Elem<D>::T;
  constexpr int kVec = 16 / sizeof(T);  // 4 for f32, 8 for bf16/f16
  const T* t = static_cast<const T*>(table);
  if (dim % kVec == 0 && is_aligned16(table) && is_aligned16(out)) {
    embedding_kernel<T, kVec>
        <<<static_cast<unsigned>(n), row_threads(dim / kVec), 0, stream>>>(ids, t, dim, out);
  } else {
    embedding_kernel<T, 1>
        <<<static_cast<unsigned>(n), row_threads(dim), 0, stream>>>(ids, t, dim, out);
  }
  return launch_result();
}

template <int kVec>
__global__ void gather_rows_kernel(const float* __restrict__ src, const int32_t* __restrict__ idx,
                                   int64_t dim, float* __restrict__ dst) {
  const int64_t row = blockIdx.x;
  const float* s = src + static_cast<int64_t>(idx[row]) * dim;
  float* d = dst + row * dim;
  for (int64_t c = threadIdx.x * int64_t{kVec}; c < dim; c += blockDim.x * int64_t{kVec}) {
    float v[kVec];
    load_floats<kVec>(s + c, v);
    store_floats<kVec>(d + c, v);
  }
}

// --- rms_norm, add_rms_norm: one block per row ---

// Row length in kVec units at most kItems * blockDim.x: each thread keeps its kItems units in
// registers between the sum of squares and the output, so every input is read once. kItems == 0:
// rows too long for that; the second pass re-reads the row (x, or the residual just written).
// Each thread touches the same indices in both passes, which makes x == y (and y == residual or
// y == x in the fused form) safe.
template <int kVec, int kItems, bool kAdd>
__global__ void __launch_bounds__(1024)
    rms_norm_kernel(float* residual, const float* x, const float* __restrict__ w, float* y,
                    int64_t dim, float eps) {
  __shared__ float reduce[32];
  const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
  const int64_t units = dim / kVec;
  float sum_squares = 0.0f;
  // Loads unit u of the row (adding x into the residual in the fused form).
  auto load_row = [&](int64_t u, float(&v)[kVec]) {
    load_floats<kVec>(x + base + u * kVec, v);
    if constexpr (kAdd) {
      float r[kVec];
      load_floats<kVec>(residual + base + u * kVec, r);
#pragma unroll
      for (int i = 0; i < kVec; ++i) v[i] = r[i] + v[i];
      store_floats<kVec>(residual + base + u * kVec, v);
    }
#pragma unroll
    for (int i = 0; i < kVec; ++i) sum_squares += v[i] * v[i];
  };
  auto store_row = [&](int64_t u, const float(&v)[kVec], float inv_rms) {
    float g[kVec];
    load_floats<kVec>(w + u * kVec, g);
    float out[kVec];
#pragma unroll
    for (int i = 0; i < kVec; ++i) out[i] = v[i] * inv_rms * g[i];
    store_floats<kVec>(y + base + u * kVec, out);
  };
  if constexpr (kItems > 0) {
    float v[kItems][kVec];
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const int64_t u = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
      if (u < units) load_row(u, v[j]);
    }
    const float total = block_sum(sum_squares, reduce);
    const float inv_rms = 1.0f / sqrtf(total / static_cast<float>(dim) + eps);
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const int64_t u = threadIdx.x + static_cast<int64_t>(j) * blockDim.x;
      if (u < units) store_row(u, v[j], inv_rms);
    }
  } else {
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      float v[kVec];
      load_row(u, v);
    }
    const float total = block_sum(sum_squares, reduce);
    const float inv_rms = 1.0f / sqrtf(total / static_cast<float>(dim) + eps);
    for (int64_t u = threadIdx.x; u < units; u += blockDim.x) {
      float v[kVec];
      load_floats<kVec>((kAdd ? residual : x) + base + u * kVec, v);
      store_row(u, v, inv_rms);
    }
  }
}

// Picks the register-cached variant with the fewest units per thread that still fits a block of
// at most kThreads threads (or up to 1024 threads at the largest kItems), else the two-pass one.
template <int kVec, bool kAdd>
cudaError_t launch_rms_norm(float* residual, const float* x, const float* w, float* y, int64_t rows,
                            int64_t dim, float eps, cudaStream_t stream) {
  // At most 16 cached floats per thread keeps 1024-thread blocks within 64 registers.
  constexpr int kMaxItems = 16 / kVec;
  const int64_t units = dim / kVec;
  int items = 1;
  while (items < kMaxItems && units > int64_t{items} * kThreads) items *= 2;
  const int64_t threads = ceil_div(ceil_div(units, items), 32) * 32;
  const unsigned grid = static_cast<unsigned>(rows);
  if (threads > 1024) {
    rms_norm_kernel<kVec, 0, kAdd><<<grid, 1024, 0, stream>>>(residual, x, w, y, dim, eps);
    return launch_result();
  }
  const int block = static_cast<int>(threads);
  switch (items) {
    case 1:
      rms_norm_kernel<kVec, 1, kAdd><<<grid, block, 0, stream>>>(residual, x, w, y, dim, eps);
      break;
    case 2:
      rms_norm_kernel<kVec, 2, kAdd><<<grid, block, 0, stream>>>(residual, x, w, y, dim, eps);
      break;
    case 4:
      rms_norm_kernel<kVec, 4, kAdd><<<grid, block, 0, stream>>>(residual, x, w, y, dim, eps);
      break;
    case 8:
      if constexpr (kMaxItems >= 8) {
        rms_norm_kernel<kVec, 8, kAdd><<<grid, block, 0, stream>>>(residual, x, w, y, dim, eps);
      }
      break;
    default:
      if constexpr (kMaxItems >= 16) {
        rms_norm_kernel<kVec, 16, kAdd><<<grid, block, 0, stream>>>(residual, x, w, y, dim, eps);
      }
      break;
  }
  return launch_result();
}

template <bool kAdd>
cudaError_t rms_norm_any(float* residual, const float* x, const float* w, float* y, int64_t rows,
                         int64_t dim, float eps, cudaStream_t stream) {
  if (rows < 0 || dim < 0) return cudaErrorInvalidValue;
  if (rows == 0 || dim == 0) return cudaSuccess;
  const bool vec = dim % 4 == 0 && is_aligned16(x) && is_aligned16(w) && is_aligned16(y) &&
                   (!kAdd || is_aligned16(residual));
  return vec ? launch_rms_norm<4, kAdd>(residual, x, w, y, rows, dim, eps, stream)
             : launch_rms_norm<1, kAdd>(residual, x, w, y, rows, dim, eps, stream);
}

// --- rope_neox, rope_interleaved: one block per token; cos/sin computed once per token in shared
// memory. Pair i is (i, i + half) or, interleaved, (2i, 2i + 1). ---

template <bool kInterleaved>
__global__ void rope_kernel(float* x, int64_t heads, int64_t head_dim, int64_t half,
                            const int32_t* __restrict__ positions,
                            const float* __restrict__ inv_freq, float attn_scale) {
  extern __shared__ float cos_sin[];  // [2 * half]: cos then sin, both times attn_scale
  const int64_t t = blockIdx.x;
  const float pos = static_cast<float>(positions[t]);
  for (int64_t i = threadIdx.x; i < half; i += blockDim.x) {
    // Precise sincosf (not __sinf): positions can make the angle large. As the reference:
    // one f32 product for the angle, then cos and sin each times attn_scale.
    const float angle = __fmul_rn(pos, inv_freq[i]);
    float s;
    float c;
    sincosf(angle, &s, &c);
    cos_sin[i] = __fmul_rn(c, attn_scale);
    cos_sin[half + i] = __fmul_rn(s, attn_scale);
  }
  __syncthreads();
  float* xt = x + t * heads * head_dim;
  for (int64_t p = threadIdx.x; p < heads * half; p += blockDim.x) {
    const int64_t h = p / half;
    const int64_t i = p - h * half;
    float* xh = xt + h * head_dim;
    const float c = cos_sin[i];
    const float s = cos_sin[half + i];
    const int64_t i1 = kInterleaved ? 2 * i : i;
    const int64_t i2 = kInterleaved ? 2 * i + 1 : i + half;
    const float x1 = xh[i1];
    const float x2 = xh[i2];
    // Unfused products, as the reference computes them.
    xh[i1] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
    xh[i2] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
  }
}

// --- silu_mul, add_gated_rows: flat loops over kVec-float units of [rows, cols] ---

template <int kVec>
__global__ void silu_mul_kernel(const float* __restrict__ gate_up, float* __restrict__ out,
                                int64_t rows, int64_t inter) {
  const int64_t row_units = inter / kVec;
  const int64_t units = rows * row_units;
  for (int64_t u = flat_index(); u < units; u += flat_stride()) {
    const int64_t r = u / row_units;
    const int64_t c = (u - r * row_units) * kVec;
    float g[kVec];
    float up[kVec];
    load_floats<kVec>(gate_up + r * 2 * inter + c, g);
    load_floats<kVec>(gate_up + r * 2 * inter + inter + c, up);
#pragma unroll
    for (int i = 0; i < kVec; ++i) g[i] = g[i] / (1.0f + expf(-g[i])) * up[i];
    store_floats<kVec>(out + r * inter + c, g);
  }
}

template <int kVec>
__global__ void add_gated_rows_kernel(const float* __restrict__ src, const float* __restrict__ gate,
                                      int64_t rows, int64_t dim, float* __restrict__ dst) {
  const int64_t row_units = dim / kVec;
  const int64_t units = rows * row_units;
  for (int64_t u = flat_index(); u < units; u += flat_stride()) {
    const int64_t r = u / row_units;
    const int64_t off = r * dim + (u - r * row_units) * kVec;
    const float g = gate[r];
    float s[kVec];
    float d[kVec];
    load_floats<kVec>(src + off, s);
    load_floats<kVec>(dst + off, d);
    // Unfused, as the reference: the same bits.
#pragma unroll
    for (int i = 0; i < kVec; ++i) d[i] = __fadd_rn(d[i], __fmul_rn(g, s[i]));
    store_floats<kVec>(dst + off, d);
  }
}

// --- sigmoid, convert_f32: flat over n with 4-float units, then the n % 4 tail ---

__device__ __forceinline__ float sigmoid_f32(float v) { return 1.0f / (1.0f + expf(-v)); }

template <bool kVec>
__global__ void sigmoid_kernel(float* __restrict__ x, int64_t n) {
  if constexpr (kVec) {
    const int64_t units = n / 4;
    for (int64_t u = flat_index(); u < units; u += flat_stride()) {
      float v[4];
      load_floats<4>(x + u * 4, v);
#pragma unroll
      for (int i = 0; i < 4; ++i) v[i] = sigmoid_f32(v[i]);
      store_floats<4>(x + u * 4, v);
    }
    const int64_t tail = units * 4 + flat_index();
    if (tail < n) x[tail] = sigmoid_f32(x[tail]);
  } else {
    for (int64_t i = flat_index(); i < n; i += flat_stride()) x[i] = sigmoid_f32(x[i]);
  }
}

template <int kVec>
__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t u = flat_index(); u < n / kVec; u += flat_stride()) {
    float va[kVec];
    float vb[kVec];
    load_floats<kVec>(a + u * kVec, va);
    load_floats<kVec>(b + u * kVec, vb);
#pragma unroll
    for (int i = 0; i < kVec; ++i) va[i] = __fadd_rn(va[i], vb[i]);
    store_floats<kVec>(y + u * kVec, va);
  }
}

template <DType D>
__device__ __forceinline__ uint16_t to_bits(float v) {
  if constexpr (D == DType::kBF16) {
    return f32_to_bf16_bits(v);
  } else {
    return f32_to_f16_bits(v);
  }
}

// f32 -> 16-bit: 4 floats in (16 bytes), 4 halves out (8 bytes) per unit when aligned.
template <DType D, bool kVec>
__global__ void convert_f32_kernel(const float* __restrict__ x, int64_t n,
                                   uint16_t* __restrict__ y) {
  if constexpr (kVec) {
    const int64_t units = n / 4;
    for (int64_t u = flat_index(); u < units; u += flat_stride()) {
      float v[4];
      load_floats<4>(x + u * 4, v);
      const uint32_t lo = to_bits<D>(v[0]) | (static_cast<uint32_t>(to_bits<D>(v[1])) << 16);
      const uint32_t hi = to_bits<D>(v[2]) | (static_cast<uint32_t>(to_bits<D>(v[3])) << 16);
      *reinterpret_cast<uint2*>(y + u * 4) = make_uint2(lo, hi);
    }
    const int64_t tail = units * 4 + flat_index();
    if (tail < n) y[tail] = to_bits<D>(x[tail]);
  } else {
    for (int64_t i = flat_index(); i < n; i += flat_stride()) y[i] = to_bits<D>(x[i]);
  }
}

template <DType D>
cudaError_t launch_convert(const float* x, int64_t n, void* y, cudaStream_t stream) {
  uint16_t* out = static_cast<uint16_t*>(y);
  if (is_aligned16(x) && reinterpret_cast<uintptr_t>(y) % 8 == 0) {
    convert_f32_kernel<D, true>
        <<<static_cast<unsigned>(flat_blocks(std::max<int64_t>(n / 4, 1))), kThreads, 0, stream>>>(
            x, n, out);
  } else {
    convert_f32_kernel<D, false>
        <<<static_cast<unsigned>(flat_blocks(n)), kThreads, 0, stream>>>(x, n, out);
  }
  return launch_result();
}

}  // namespace

cudaError_t embedding(const int32_t* ids, int64_t n, const void* table, DType dtype, int64_t dim,
                      float* out, cudaStream_t stream) {
  if (n < 0 || dim < 0 || n > INT32_MAX) return cudaErrorInvalidValue;
  if (n == 0 || dim == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kF32:
      return launch_embedding<DType::kF32>(ids, n, table, dim, out, stream);
    case DType::kBF16:
      return launch_embedding<DType::kBF16>(ids, n, table, dim, out, stream);
    case DType::kF16:
      return launch_embedding<DType::kF16>(ids, n, table, dim, out, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

cudaError_t rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps,
                     cudaStream_t stream) {
  if (rows > INT32_MAX) return cudaErrorInvalidValue;
  return rms_norm_any<false>(nullptr, x, w, y, rows, dim, eps, stream);
}

cudaError_t add_rms_norm(float* residual, const float* x, const float* w, float* y, int64_t rows,
                         int64_t dim, float eps, cudaStream_t stream) {
  if (rows > INT32_MAX) return cudaErrorInvalidValue;
  return rms_norm_any<true>(residual, x, w, y, rows, dim, eps, stream);
}

namespace {

template <bool kInterleaved>
cudaError_t launch_rope(float* x, int64_t tokens, int64_t heads, int64_t head_dim,
                        int64_t rotary_dim, const int32_t* positions, const float* inv_freq,
                        float attn_scale, cudaStream_t stream) {
  const int64_t half = rotary_dim / 2;
  // cos/sin of one token must fit the default 48 KiB of shared memory.
  if (tokens < 0 || heads < 0 || rotary_dim < 0 || rotary_dim > head_dim || tokens > INT32_MAX ||
      half * 2 * static_cast<int64_t>(sizeof(float)) > 48 * 1024) {
    return cudaErrorInvalidValue;
  }
  if (tokens == 0 || heads == 0 || half == 0) return cudaSuccess;
  const size_t shared = static_cast<size_t>(half) * 2 * sizeof(float);
  rope_kernel<kInterleaved>
      <<<static_cast<unsigned>(tokens), row_threads(heads * half), shared, stream>>>(
          x, heads, head_dim, half, positions, inv_freq, attn_scale);
  return launch_result();
}

}  // namespace

cudaError_t rope_neox(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
                      const int32_t* positions, const float* inv_freq, float attn_scale,
                      cudaStream_t stream) {
  return launch_rope<false>(x, tokens, heads, head_dim, rotary_dim, positions, inv_freq, attn_scale,
                            stream);
}

cudaError_t rope_interleaved(float* x, int64_t tokens, int64_t heads, int64_t head_dim,
                             int64_t rotary_dim, const int32_t* positions, const float* inv_freq,
                             float attn_scale, cudaStream_t stream) {
  return launch_rope<true>(x, tokens, heads, head_dim, rotary_dim, positions, inv_freq, attn_scale,
                           stream);
}

cudaError_t silu_mul(const float* gate_up, float* out, int64_t rows, int64_t inter,
                     cudaStream_t stream) {
  if (rows < 0 || inter < 0) return cudaErrorInvalidValue;
  if (rows == 0 || inter == 0) return cudaSuccess;
  if (inter % 4 == 0 && is_aligned16(gate_up) && is_aligned16(out)) {
    silu_mul_kernel<4>
        <<<static_cast<unsigned>(flat_blocks(rows * (inter / 4))), kThreads, 0, stream>>>(
            gate_up, out, rows, inter);
  } else {
    silu_mul_kernel<1><<<static_cast<unsigned>(flat_blocks(rows * inter)), kThreads, 0, stream>>>(
        gate_up, out, rows, inter);
  }
  return launch_result();
}

cudaError_t gather_rows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst,
                        cudaStream_t stream) {
  if (n < 0 || dim < 0 || n > INT32_MAX) return cudaErrorInvalidValue;
  if (n == 0 || dim == 0) return cudaSuccess;
  if (dim % 4 == 0 && is_aligned16(src) && is_aligned16(dst)) {
    gather_rows_kernel<4>
        <<<static_cast<unsigned>(n), row_threads(dim / 4), 0, stream>>>(src, idx, dim, dst);
  } else {
    gather_rows_kernel<1>
        <<<static_cast<unsigned>(n), row_threads(dim), 0, stream>>>(src, idx, dim, dst);
  }
  return launch_result();
}

cudaError_t add_gated_rows(const float* src, const float* gate, int64_t rows, int64_t dim,
                           float* dst, cudaStream_t stream) {
  if (rows < 0 || dim < 0) return cudaErrorInvalidValue;
  if (rows == 0 || dim == 0) return cudaSuccess;
  if (dim % 4 == 0 && is_aligned16(src) && is_aligned16(dst)) {
    add_gated_rows_kernel<4>
        <<<static_cast<unsigned>(flat_blocks(rows * (dim / 4))), kThreads, 0, stream>>>(
            src, gate, rows, dim, dst);
  } else {
    add_gated_rows_kernel<1>
        <<<static_cast<unsigned>(flat_blocks(rows * dim)), kThreads, 0, stream>>>(src, gate, rows,
                                                                                  dim, dst);
  }
  return launch_result();
}

cudaError_t sigmoid(float* x, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (is_aligned16(x)) {
    // At least one block, so that the n % 4 tail is covered when n < 4.
    sigmoid_kernel<true>
        <<<static_cast<unsigned>(flat_blocks(std::max<int64_t>(n / 4, 1))), kThreads, 0, stream>>>(
            x, n);
  } else {
    sigmoid_kernel<false><<<static_cast<unsigned>(flat_blocks(n)), kThreads, 0, stream>>>(x, n);
  }
  return launch_result();
}

cudaError_t add(const float* a, const float* b, float* y, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (n % 4 == 0 && is_aligned16(a) && is_aligned16(b) && is_aligned16(y)) {
    add_kernel<4><<<static_cast<unsigned>(flat_blocks(n / 4)), kThreads, 0, stream>>>(a, b, y, n);
  } else {
    add_kernel<1><<<static_cast<unsigned>(flat_blocks(n)), kThreads, 0, stream>>>(a, b, y, n);
  }
  return launch_result();
}

cudaError_t convert_f32(const float* x, int64_t n, DType dtype, void* y, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  switch (dtype) {
    case DType::kF32:
      if (y == x) return cudaSuccess;
      return cudaMemcpyAsync(y, x, static_cast<size_t>(n) * sizeof(float), cudaMemcpyDeviceToDevice,
                             stream);
    case DType::kBF16:
      return launch_convert<DType::kBF16>(x, n, y, stream);
    case DType::kF16:
      return launch_convert<DType::kF16>(x, n, y, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace sy::cuda
