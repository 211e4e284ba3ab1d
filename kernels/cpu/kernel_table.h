// The kernels one instruction set provides, as a table of plain function pointers. Filled by
// kernels_avx2.cc / kernels_avx512.cc, chosen at run time (isa.cc), threaded by ops.cc.
#pragma once

#include <cstdint>

#include "kernels/cpu/ops.h"

namespace sy::cpu::detail {

struct MatmulArgs {
  const float* x;
  const void* w;
  const float* bias;
  float* y;
  int64_t m, n, k;
};

// Each entry works on the range it is given and on the calling thread only.
struct KernelTable {
  // Output columns [n_begin, n_end) of a matmul, for every row. Best split in whole multiples
  // of matmul_columns_per_unit columns.
  void (*matmul_f32)(const MatmulArgs& a, int64_t n_begin, int64_t n_end);
  void (*matmul_bf16)(const MatmulArgs& a, int64_t n_begin, int64_t n_end);
  void (*matmul_f16)(const MatmulArgs& a, int64_t n_begin, int64_t n_end);
  void (*matmul_i8)(const MatmulArgs& a, int64_t n_begin, int64_t n_end);  // DType::kI8 rows
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
};

#if defined(__x86_64__)
extern const KernelTable kAvx2Kernels;
extern const KernelTable kAvx512Kernels;
#endif

}  // namespace sy::cpu::detail
