// The kernels one instruction set provides, as a table of plain function pointers. Filled by
// kernels_avx2.cc / kernels_avx512.cc, chosen at run time (isa.cc), threaded by ops.cc.
#pragma once

#include <cstdint>

#include "kernels/cpu/latent_ops.h"
#include "kernels/cpu/ops.h"

namespace sy::cpu::detail {

// x quantized for the int4 matmul kernels (ops.cc makes it once per call, the same bits on every
// instruction set): each row's values in groups of the weights' group size, symmetric int8 with
// scale max|x| / 127 per group, padded with zeros to padded_k (int4_padded_cols). Within each
// 64-element block the values are stored in the order the kernels unpack weight nibbles
// (kInt4BlockOrder): elements 0-15, 32-47, 16-31, 48-63.
struct Int4Activations {
  const int8_t* q;     // [m, padded_k]
  const float* scale;  // [m, groups]
  const float* sum;    // [m, groups]: the sum of the group's f32 values (for the weights' mins)
  // [m, groups]: sum over the group of x - scale * q, the rounding that the kernels give back
  // with the weights' centre (8 * scale), so that only q - 8 meets rounded x (half the error of
  // q against rounded x).
  const float* residual;
  int64_t padded_k, groups, group_size;
};

struct MatmulArgs {
  const float* x;
  const void* w;
  const float* bias;
  float* y;
  int64_t m, n, k;
  const Int4Activations* x_int4 = nullptr;  // set for int4 weights only
};

// One token's latent attention over positions [p_begin, p_end) of its sequence for heads
// [h_begin, h_end), left unnormalised: for each head (row r = h - h_begin), max[r] is the highest
// score, denom[r] = sum_p exp(s_p - max[r]) and out row r (latent_dim values) = sum_p
// exp(s_p - max[r]) c_p. An empty range gives max -inf, denom 0 and zeros.
struct LatentSpan {
  int64_t token;
  int64_t p_begin, p_end;
  int h_begin, h_end;
  float* out;
  float* max;
  float* denom;
};

// Each entry works on the range it is given and on the calling thread only.
struct KernelTable {
  // Output columns [n_begin, n_end) of a matmul, for every row. Best split in whole multiples
  // of matmul_columns_per_unit columns.
  void (*matmul_f32)(const MatmulArgs& a, int64_t n_begin, int64_t n_end);
  void (*matmul_bf16)(const MatmulArgs& a, int64_t n_begin, int64_t n_end);
  void (*matmul_f16)(const MatmulArgs& a, int64_t n_begin, int64_t n_end);
  void (*matmul_i8)(const MatmulArgs& a, int64_t n_begin, int64_t n_end);  // DType::kI8 rows
  // DType::kI4G* rows, with a.x_int4: int8 x times 4-bit weights in integer dot products.
  void (*matmul_i4)(const MatmulArgs& a, int64_t n_begin, int64_t n_end);
  void (*matmul_f8)(const MatmulArgs& a, int64_t n_begin, int64_t n_end);  // DType::kF8 rows
  int64_t matmul_columns_per_unit;
  // Attention for work items [begin, end), item = token * n_kv_heads + kv_head (all the query
  // heads that share the KV head).
  void (*paged_attention)(const PagedAttentionArgs& a, int64_t begin, int64_t end);
  void (*rms_norm)(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps);
  void (*add_rms_norm)(float* residual, const float* x, const float* w, float* y, int64_t rows,
                       int64_t dim, float eps);
  // One token, every head h: rotates the pairs (x[h*head_dim + i], x[h*head_dim + half + i])
  // for i < count by cos[i], sin[i].
  void (*rope)(float* x, const float* cos, const float* sin, int64_t heads, int64_t head_dim,
               int64_t half, int64_t count);
  void (*silu_mul)(const float* gate_up, float* out, int64_t rows, int64_t inter);
  void (*softmax)(float* x, int64_t rows, int64_t n);
  void (*sigmoid)(float* x, int64_t n);
  void (*axpy)(float a, const float* x, float* y, int64_t n);  // y += a * x
  void (*add)(const float* a, const float* b, float* y, int64_t n);
  void (*bf16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  void (*f16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  float (*sum)(const float* x, int64_t n);  // streams x once: the read-bandwidth kernel
  void (*latent_attention_span)(const LatentAttentionArgs& a, const LatentSpan& span);
};

using MatmulColumns = void (*)(const MatmulArgs& a, int64_t n_begin, int64_t n_end);

// The matmul kernel of `kt` for weight rows of `w_dtype` (the VNNI one for int4 where the
// processor has it), or null for dtypes it lacks. Int4 kernels need MatmulArgs::x_int4.
MatmulColumns matmul_columns(const KernelTable& kt, DType w_dtype);

#if defined(__x86_64__)
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvx512Kernels;
// kAvx512Kernels.matmul_i4 with VNNI's vpdpbusd (kernels_avx512_vnni.cc), which ops.cc uses
// instead where the processor has AVX512-VNNI.
void matmul_i4_avx512_vnni(const MatmulArgs& a, int64_t n_begin, int64_t n_end);
bool has_avx512_vnni();
#endif

}  // namespace sy::cpu::detail
