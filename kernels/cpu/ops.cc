// sy::cpu: the fast ops. Each takes the active instruction set's kernel table (or falls back to
// the reference), splits the work over the pool, and does plain data movement itself.
#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/kv_rows.h"

namespace sy::cpu {
namespace {

using detail::Int4Activations;
using detail::KernelTable;
using detail::MatmulArgs;
using detail::MatmulColumns;

// Below this many multiply-adds (or elements touched), waking the pool costs more than it saves.
constexpr int64_t kMinParallelWork = int64_t{1} << 15;

// Rotary angles are computed in slices of this many pairs (a stack buffer, any rotary_dim).
constexpr int64_t kRopeSlice = 256;

ThreadPool* pool_for(ThreadPool* pool, int64_t work) {
  return work >= kMinParallelWork ? pool : nullptr;
}

// Ranks NaN as -inf (as sy::cpu::ref::route).
float rank_key(float v) { return std::isnan(v) ? -INFINITY : v; }

// The index of the largest of values[0, n) that comes after (prev, prev_id) in the order
// (value descending, index ascending).
int32_t next_best(const float* values, int64_t n, float prev, int32_t prev_id) {
  int32_t best = -1;
  float best_value = -INFINITY;
  for (int32_t i = 0; i < n; ++i) {
    const float v = rank_key(values[i]);
    const bool after_prev = v < prev || (v == prev && i > prev_id);
    if (after_prev && (best < 0 || v > best_value)) {
      best = i;
      best_value = v;
    }
  }
  return best;
}

// Bit i set for the `count` largest of values[0, n) (n <= 64), ties to the lower index.
uint64_t top_mask(const float* values, int64_t n, int64_t count) {
  uint64_t mask = 0;
  float prev = INFINITY;
  int32_t prev_id = -1;
  for (int64_t j = 0; j < count; ++j) {
    prev_id = next_best(values, n, prev, prev_id);
    prev = rank_key(values[prev_id]);
    mask |= uint64_t{1} << prev_id;
  }
  return mask;
}

// Position of element r (< 64) of a 64-element block in Int4Activations::q: the order in which
// the int4 kernels unpack a block's 32 packed bytes (low nibbles: elements 0-15 and 32-47, high
// nibbles: 16-31 and 48-63).
int64_t int4_block_position(int64_t r) {
  if (r >= 16 && r < 32) return r + 16;
  if (r >= 32 && r < 48) return r - 16;
  return r;
}

// x [m, k] quantized per group of `group` values for the int4 kernels, in buffers of this thread
// (a matmul call uses them before it returns).
Int4Activations quantize_int4_activations(const float* x, int64_t m, int64_t k, DType w_dtype) {
  thread_local std::vector<int8_t> q;
  thread_local std::vector<float> scale_sum;
  const int64_t group = int4_group_size(w_dtype);
  const int64_t groups = int4_groups(w_dtype, k);
  const int64_t padded_k = int4_padded_cols(w_dtype, k);
  q.assign(static_cast<size_t>(m * padded_k), 0);
  scale_sum.assign(static_cast<size_t>(3 * m * groups), 0.0f);
  float* scales = scale_sum.data();
  float* sums = scale_sum.data() + m * groups;
  float* residuals = scale_sum.data() + 2 * m * groups;
  for (int64_t i = 0; i < m; ++i) {
    const float* row = x + i * k;
    int8_t* qrow = q.data() + i * padded_k;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t begin = g * group;
      const int64_t end = std::min(begin + group, k);
      float max_abs = 0.0f;
      float sum = 0.0f;
      for (int64_t c = begin; c < end; ++c) {
        max_abs = std::max(max_abs, std::fabs(row[c]));
        sum += row[c];
      }
      const float scale = max_abs / 127.0f;
      const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
      float residual = 0.0f;
      for (int64_t c = begin; c < end; ++c) {
        const float v = std::clamp(row[c] * inverse, -127.0f, 127.0f);
        const auto q_c = static_cast<int8_t>(v >= 0.0f ? v + 0.5f : v - 0.5f);  // ties away
        qrow[c / 64 * 64 + int4_block_position(c % 64)] = q_c;
        residual += row[c] - scale * static_cast<float>(q_c);
      }
      scales[i * groups + g] = scale;
      sums[i * groups + g] = sum;
      residuals[i * groups + g] = residual;
    }
  }
  return {q.data(), scales, sums, residuals, padded_k, groups, group};
}

}  // namespace

void matmul(const float* x, const void* w, DType w_dtype, const float* bias, float* y, int64_t m,
            int64_t n, int64_t k, ThreadPool* pool) {
  const KernelTable* kt = detail::active_kernels();
  const MatmulColumns columns = kt != nullptr ? detail::matmul_columns(*kt, w_dtype) : nullptr;
  if (columns == nullptr) return ref::matmul(x, w, w_dtype, bias, y, m, n, k, pool);
  if (m <= 0 || n <= 0) return;
  // Threads split the output columns: every thread streams its own slice of the weights once.
  Int4Activations x_int4{};
  MatmulArgs args{x, w, bias, y, m, n, k};
  if (is_int4(w_dtype)) {
    x_int4 = quantize_int4_activations(x, m, k, w_dtype);
    args.x_int4 = &x_int4;
  }
  const int64_t unit = kt->matmul_columns_per_unit;
  run_parallel(pool_for(pool, m * n * k), (n + unit - 1) / unit, [&](int64_t begin, int64_t end) {
    columns(args, begin * unit, std::min(end * unit, n));
  });
}

void embedding(const int32_t* ids, int64_t n, const void* table, DType dtype, int64_t dim,
               float* out, ThreadPool* pool) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr || (dtype != DType::kF32 && dtype != DType::kBF16 && dtype != DType::kF16)) {
    return ref::embedding(ids, n, table, dtype, dim, out, pool);
  }
  const auto row_bytes = static_cast<int64_t>(dim * dtype_size(dtype));
  const auto* bytes = static_cast<const uint8_t*>(table);
  run_parallel(pool_for(pool, n * dim), n, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint8_t* row = bytes + ids[i] * row_bytes;
      if (dtype == DType::kF32) {
        std::memcpy(out + i * dim, row, row_bytes);
      } else {
        const auto* half = reinterpret_cast<const uint16_t*>(row);
        (dtype == DType::kBF16 ? kt->bf16_to_f32 : kt->f16_to_f32)(half, out + i * dim, dim);
      }
    }
  });
}

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps,
              ThreadPool* pool) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr) return ref::rms_norm(x, w, y, rows, dim, eps, pool);
  run_parallel(pool_for(pool, rows * dim), rows, [&](int64_t begin, int64_t end) {
    kt->rms_norm(x + begin * dim, w, y + begin * dim, end - begin, dim, eps);
  });
}

void add_rms_norm(float* residual, const float* x, const float* w, float* y, int64_t rows,
                  int64_t dim, float eps, ThreadPool* pool) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr) return ref::add_rms_norm(residual, x, w, y, rows, dim, eps, pool);
  run_parallel(pool_for(pool, rows * dim), rows, [&](int64_t begin, int64_t end) {
    kt->add_rms_norm(residual + begin * dim, x + begin * dim, w, y + begin * dim, end - begin, dim,
                     eps);
  });
}

void rope_neox(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
               const int32_t* positions, const float* inv_freq, float attn_scale,
               ThreadPool* pool) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr) {
    return ref::rope_neox(x, tokens, heads, head_dim, rotary_dim, positions, inv_freq, attn_scale,
                          pool);
  }
  const int64_t half = rotary_dim / 2;
  run_parallel(
      pool_for(pool, tokens * heads * rotary_dim), tokens, [&](int64_t begin, int64_t end) {
        // The angles depend on the token only: computed once, applied to every head.
        float cos[kRopeSlice];
        float sin[kRopeSlice];
        for (int64_t t = begin; t < end; ++t) {
          const auto position = static_cast<float>(positions[t]);
          for (int64_t i0 = 0; i0 < half; i0 += kRopeSlice) {
            const int64_t count = std::min(kRopeSlice, half - i0);
            for (int64_t i = 0; i < count; ++i) {
              const float angle = position * inv_freq[i0 + i];
              cos[i] = std::cos(angle) * attn_scale;
              sin[i] = std::sin(angle) * attn_scale;
            }
            kt->rope(x + t * heads * head_dim + i0, cos, sin, heads, head_dim, half, count);
          }
        }
      });
}

void rope_interleaved(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
                      const int32_t* positions, const float* inv_freq, float attn_scale,
                      ThreadPool* pool) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr) {
    return ref::rope_interleaved(x, tokens, heads, head_dim, rotary_dim, positions, inv_freq,
                                 attn_scale, pool);
  }
  // As rope_neox, with the pairs adjacent: a plain loop (DeepSeek rotates 64 dimensions a head).
  const int64_t half = rotary_dim / 2;
  run_parallel(pool_for(pool, tokens * heads * rotary_dim), tokens,
               [&](int64_t begin, int64_t end) {
                 float cos[kRopeSlice];
                 float sin[kRopeSlice];
                 for (int64_t t = begin; t < end; ++t) {
                   const auto position = static_cast<float>(positions[t]);
                   for (int64_t i0 = 0; i0 < half; i0 += kRopeSlice) {
                     const int64_t count = std::min(kRopeSlice, half - i0);
                     for (int64_t i = 0; i < count; ++i) {
                       const float angle = position * inv_freq[i0 + i];
                       cos[i] = std::cos(angle) * attn_scale;
                       sin[i] = std::sin(angle) * attn_scale;
                     }
                     for (int64_t h = 0; h < heads; ++h) {
                       float* pairs = x + (t * heads + h) * head_dim + 2 * i0;
                       for (int64_t i = 0; i < count; ++i) {
                         const float x1 = pairs[2 * i];
                         const float x2 = pairs[2 * i + 1];
                         pairs[2 * i] = x1 * cos[i] - x2 * sin[i];
                         pairs[2 * i + 1] = x2 * cos[i] + x1 * sin[i];
                       }
                     }
                   }
                 }
               });
}

void silu_mul(const float* gate_up, float* out, int64_t rows, int64_t inter, ThreadPool* pool) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr) return ref::silu_mul(gate_up, out, rows, inter, pool);
  run_parallel(pool_for(pool, rows * inter), rows, [&](int64_t begin, int64_t end) {
    kt->silu_mul(gate_up + begin * 2 * inter, out + begin * inter, end - begin, inter);
  });
}

void softmax(float* x, int64_t rows, int64_t n) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr) return ref::softmax(x, rows, n);
  kt->softmax(x, rows, n);
}

void route(const float* logits, int64_t tokens, int64_t experts, const RouterArgs& args,
           int32_t* ids, float* weights) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr || args.n_group > 64) {
    return ref::route(logits, tokens, experts, args, ids, weights);
  }
  const int k = args.k;
  const int64_t group_size = experts / args.n_group;
  // Grow once; no allocation in steady state.
  thread_local std::vector<float> scores;
  thread_local std::vector<float> choice;
  thread_local std::vector<float> group_scores;
  scores.resize(experts);
  choice.resize(experts);
  group_scores.resize(args.n_group);
  for (int64_t t = 0; t < tokens; ++t) {
    std::memcpy(scores.data(), logits + t * experts, experts * sizeof(float));
    if (args.scoring == RouterScoring::kSoftmax) {
      kt->softmax(scores.data(), 1, experts);
    } else {
      kt->sigmoid(scores.data(), experts);
    }
    const float* bias = args.correction_bias;
    for (int64_t e = 0; e < experts; ++e) {
      choice[e] = bias != nullptr ? scores[e] + bias[e] : scores[e];
    }
    if (args.n_group > 1) {
      for (int64_t g = 0; g < args.n_group; ++g) {
        // The two largest of the group (NaN as -inf); equal values count twice.
        float first = -INFINITY;
        float second = -INFINITY;
        for (int64_t e = g * group_size; e < (g + 1) * group_size; ++e) {
          const float c = rank_key(choice[e]);
          if (c > first) {
            second = first;
            first = c;
          } else if (c > second) {
            second = c;
          }
        }
        group_scores[g] = args.group_scoring == GroupScoring::kMax ? first : first + second;
      }
      const uint64_t kept = top_mask(group_scores.data(), args.n_group, args.topk_group);
      for (int64_t g = 0; g < args.n_group; ++g) {
        if ((kept >> g & 1) == 0) {
          std::fill(choice.begin() + g * group_size, choice.begin() + (g + 1) * group_size, 0.0f);
        }
      }
    }
    // Pick by (choice descending, id ascending): each pick is the best expert that comes after
    // the previous pick in that order, so nothing needs marking.
    float total = 0.0f;
    float prev = INFINITY;
    int32_t prev_id = -1;
    for (int j = 0; j < k; ++j) {
      const int32_t best = next_best(choice.data(), experts, prev, prev_id);
      ids[t * k + j] = best;
      weights[t * k + j] = scores[best];
      total += scores[best];
      prev = rank_key(choice[best]);
      prev_id = best;
    }
    if (args.scoring == RouterScoring::kSigmoid) total += 1e-20f;
    for (int j = 0; j < k; ++j) {
      const float w = weights[t * k + j];
      weights[t * k + j] = (args.renormalize ? w / total : w) * args.scaling;
    }
  }
}

void kv_write(const float* k, const float* v, int64_t tokens, int64_t kv_dim, const int64_t* slots,
              void* k_cache, void* v_cache, DType cache_dtype) {
  // A step writes one row per token and layer: converting them scalar is cheap next to attention.
  const size_t row_bytes = dtype_row_bytes(cache_dtype, kv_dim);
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] < 0) continue;
    write_kv_row(k + t * kv_dim, kv_dim, cache_dtype,
                 static_cast<uint8_t*>(k_cache) + slots[t] * row_bytes);
    write_kv_row(v + t * kv_dim, kv_dim, cache_dtype,
                 static_cast<uint8_t*>(v_cache) + slots[t] * row_bytes);
  }
}

void paged_attention(const PagedAttentionArgs& a, ThreadPool* pool) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr) return ref::paged_attention(a, pool);
  const int64_t items = a.tokens * a.n_kv_heads;  // (token, KV head) pairs
  const int threads = pool != nullptr ? pool->size() : 1;
  if (threads == 1 || items <= 1) return kt->paged_attention(a, 0, items);
  // Tokens see different numbers of keys (a prefill chunk: 1, 2, ..., n), so threads split the
  // items by keys visited, not by count. An item's cost: its token's visible keys + 1.
  auto item_cost = [&a](int64_t token) {
    const int64_t ctx = std::max<int64_t>(a.ctx_len[token], 0);
    return (a.sliding_window > 0 ? std::min<int64_t>(ctx, a.sliding_window) : ctx) + 1;
  };
  int64_t total = 0;
  for (int64_t t = 0; t < a.tokens; ++t) total += item_cost(t) * a.n_kv_heads;
  // The item whose cost range holds `offset` (items for offset == total).
  auto item_at = [&](int64_t offset) {
    int64_t before = 0;
    for (int64_t t = 0; t < a.tokens; ++t) {
      const int64_t cost = item_cost(t);
      if (offset < before + cost * a.n_kv_heads) return t * a.n_kv_heads + (offset - before) / cost;
      before += cost * a.n_kv_heads;
    }
    return items;
  };
  run_parallel(pool, threads, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      kt->paged_attention(a, item_at(total * c / threads), item_at(total * (c + 1) / threads));
    }
  });
}

void gather_rows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(dst + i * dim, src + idx[i] * dim, static_cast<size_t>(dim) * sizeof(float));
  }
}

void add_gated_rows(const float* src, const float* gate, int64_t rows, int64_t dim, float* dst) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr) return ref::add_gated_rows(src, gate, rows, dim, dst);
  for (int64_t r = 0; r < rows; ++r) kt->axpy(gate[r], src + r * dim, dst + r * dim, dim);
}

void add(const float* a, const float* b, float* y, int64_t n) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr) return ref::add(a, b, y, n);
  kt->add(a, b, y, n);
}

void sigmoid(float* x, int64_t n) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr) return ref::sigmoid(x, n);
  kt->sigmoid(x, n);
}

void sort_by_expert(const int32_t* ids, int64_t tokens, int k, int64_t experts, int32_t* offsets,
                    int32_t* sorted) {
  ref::sort_by_expert(ids, tokens, k, experts, offsets, sorted);
}

void combine_experts(const float* ys, const int32_t* inverse, const float* weights, int64_t tokens,
                     int k, int64_t dim, float* out) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr || k > 64) {
    return ref::combine_experts(ys, inverse, weights, tokens, k, dim, out);
  }
  // Each token's pairs in ascending position, the reference's summation order, so the results
  // stay bit-identical to it.
  int32_t order[64];
  for (int64_t t = 0; t < tokens; ++t) {
    const int32_t* inv = inverse + t * k;
    int n = 0;
    for (int c = 0; c < k; ++c) {
      int at = n++;
      while (at > 0 && inv[order[at - 1]] > inv[c]) {
        order[at] = order[at - 1];
        --at;
      }
      order[at] = c;
    }
    float* o = out + t * dim;
    std::memset(o, 0, static_cast<size_t>(dim) * sizeof(float));
    for (int i = 0; i < n; ++i) {
      kt->axpy(weights[t * k + order[i]], ys + static_cast<int64_t>(inv[order[i]]) * dim, o, dim);
    }
  }
}

void fill_random(void* data, DType dtype, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = random_uniform_at(seed, i, scale);
    if (dtype == DType::kF32) {
      static_cast<float*>(data)[i] = v;
    } else {
      static_cast<uint16_t*>(data)[i] = dtype == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
    }
  }
}

namespace detail {

MatmulColumns matmul_columns(const KernelTable& kt, DType w_dtype) {
  switch (w_dtype) {
    case DType::kF32:
      return kt.matmul_f32;
    case DType::kBF16:
      return kt.matmul_bf16;
    case DType::kF16:
      return kt.matmul_f16;
    case DType::kI8:
      return kt.matmul_i8;
    case DType::kI4G32:
    case DType::kI4G64:
    case DType::kI4G128:
#if defined(__x86_64__)
      if (&kt == &detail::kAvx512Kernels && detail::has_avx512_vnni()) {
        return &detail::matmul_i4_avx512_vnni;
      }
#endif
      return kt.matmul_i4;
    case DType::kF8:
      return kt.matmul_f8;
    default:
      return nullptr;
  }
}

}  // namespace detail

}  // namespace sy::cpu
