// sy::cpu::ref: the oracle for every other kernel. Plain scalar loops that follow Hugging Face
// transformers' definitions literally; single-threaded (the pool argument is ignored), slow.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/kv_rows.h"

namespace sy::cpu::ref {

void matmul(const float* x, const void* w, DType w_dtype, const float* bias, float* y, int64_t m,
            int64_t n, int64_t k, ThreadPool* /*pool*/) {
  if (w_dtype == DType::kI8) {
    // Each row: its scale times the sum of x * q (the scale factors out of the sum).
    const auto* rows = static_cast<const uint8_t*>(w);
    const size_t row_bytes = dtype_row_bytes(DType::kI8, k);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        const uint8_t* row = rows + j * row_bytes;
        const int8_t* q = i8_row_values(row);
        float sum = 0.0f;
        for (int64_t kk = 0; kk < k; ++kk) sum += x[i * k + kk] * static_cast<float>(q[kk]);
        sum *= i8_row_scale(row);
        y[i * n + j] = bias != nullptr ? sum + bias[j] : sum;
      }
    }
    return;
  }
  if (is_int4(w_dtype)) {
    // x . dequantize(w)^T with every weight q * scale + min in f32 (the fast kernels quantize x
    // to int8 per group instead; their tests bound the difference).
    const auto* rows = static_cast<const uint8_t*>(w);
    const size_t row_bytes = dtype_row_bytes(w_dtype, k);
    std::vector<float> row_values(k);
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t kk = 0; kk < k; ++kk) {
        row_values[kk] = int4_row_value(w_dtype, rows + j * row_bytes, k, kk);
      }
      for (int64_t i = 0; i < m; ++i) {
        float sum = 0.0f;
        for (int64_t kk = 0; kk < k; ++kk) sum += x[i * k + kk] * row_values[kk];
        y[i * n + j] = bias != nullptr ? sum + bias[j] : sum;
      }
    }
    return;
  }
  if (w_dtype == DType::kF8) {
    // Each weight is its block's scale times its e4m3fn value, formed before the product.
    const auto* rows = static_cast<const uint8_t*>(w);
    const size_t row_bytes = dtype_row_bytes(DType::kF8, k);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        const uint8_t* row = rows + j * row_bytes;
        const uint8_t* q = f8_row_values(row, k);
        float sum = 0.0f;
        for (int64_t kk = 0; kk < k; ++kk) {
          const float weight = f8_row_scale(row, kk / kF8BlockColumns) * e4m3_to_f32(q[kk]);
          sum += x[i * k + kk] * weight;
        }
        y[i * n + j] = bias != nullptr ? sum + bias[j] : sum;
      }
    }
    return;
  }
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      float sum = 0.0f;
      for (int64_t kk = 0; kk < k; ++kk) sum += x[i * k + kk] * load_as_f32(w, w_dtype, j * k + kk);
      y[i * n + j] = bias != nullptr ? sum + bias[j] : sum;
    }
  }
}

void embedding(const int32_t* ids, int64_t n, const void* table, DType dtype, int64_t dim,
               float* out, ThreadPool* /*pool*/) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < dim; ++d) {
      out[i * dim + d] = load_as_f32(table, dtype, static_cast<int64_t>(ids[i]) * dim + d);
    }
  }
}

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t dim, float eps,
              ThreadPool* /*pool*/) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float sum_squares = 0.0f;
    for (int64_t i = 0; i < dim; ++i) sum_squares += xr[i] * xr[i];
    const float inv_rms = 1.0f / std::sqrt(sum_squares / static_cast<float>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = xr[i] * inv_rms * w[i];
  }
}

void add_rms_norm(float* residual, const float* x, const float* w, float* y, int64_t rows,
                  int64_t dim, float eps, ThreadPool* pool) {
  for (int64_t i = 0; i < rows * dim; ++i) residual[i] += x[i];
  ref::rms_norm(residual, w, y, rows, dim, eps, pool);
}

void rope_neox(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
               const int32_t* positions, const float* inv_freq, float attn_scale,
               ThreadPool* /*pool*/) {
  const int64_t half = rotary_dim / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      float* xh = x + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const float angle = static_cast<float>(positions[t]) * inv_freq[i];
        const float c = std::cos(angle) * attn_scale;
        const float s = std::sin(angle) * attn_scale;
        const float x1 = xh[i];
        const float x2 = xh[i + half];
        xh[i] = x1 * c - x2 * s;
        xh[i + half] = x2 * c + x1 * s;
      }
    }
  }
}

void rope_interleaved(float* x, int64_t tokens, int64_t heads, int64_t head_dim, int64_t rotary_dim,
                      const int32_t* positions, const float* inv_freq, float attn_scale,
                      ThreadPool* /*pool*/) {
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      float* xh = x + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < rotary_dim / 2; ++i) {
        const float angle = static_cast<float>(positions[t]) * inv_freq[i];
        const float c = std::cos(angle) * attn_scale;
        const float s = std::sin(angle) * attn_scale;
        const float x1 = xh[2 * i];
        const float x2 = xh[2 * i + 1];
        xh[2 * i] = x1 * c - x2 * s;
        xh[2 * i + 1] = x2 * c + x1 * s;
      }
    }
  }
}

void silu_mul(const float* gate_up, float* out, int64_t rows, int64_t inter, ThreadPool* /*pool*/) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < inter; ++i) {
      const float g = gate_up[r * 2 * inter + i];
      const float u = gate_up[r * 2 * inter + inter + i];
      out[r * inter + i] = g / (1.0f + std::exp(-g)) * u;
    }
  }
}

void softmax(float* x, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * n;
    const float row_max = *std::max_element(xr, xr + n);
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
      xr[i] = std::exp(xr[i] - row_max);
      sum += xr[i];
    }
    for (int64_t i = 0; i < n; ++i) xr[i] /= sum;
  }
}

namespace {

// Ranks NaN as -inf, so that every comparison below is a strict weak order.
float rank_key(float v) { return std::isnan(v) ? -INFINITY : v; }

// The n indices of `values` in descending order, ties to the lower index.
std::vector<int32_t> descending_order(const std::vector<float>& values) {
  std::vector<int32_t> order(values.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return rank_key(values[a]) > rank_key(values[b]); });
  return order;
}

}  // namespace

void route(const float* logits, int64_t tokens, int64_t experts, const RouterArgs& args,
           int32_t* ids, float* weights) {
  const int k = args.k;
  const int64_t group_size = experts / args.n_group;
  std::vector<float> scores(experts);
  std::vector<float> choice(experts);
  std::vector<float> group_scores(args.n_group);
  for (int64_t t = 0; t < tokens; ++t) {
    // 1. Scores.
    std::copy(logits + t * experts, logits + (t + 1) * experts, scores.begin());
    if (args.scoring == RouterScoring::kSoftmax) {
      ref::softmax(scores.data(), 1, experts);
    } else {
      ref::sigmoid(scores.data(), experts);
    }
    // 2. Choice = scores + bias.
    for (int64_t e = 0; e < experts; ++e) {
      choice[e] = args.correction_bias != nullptr ? scores[e] + args.correction_bias[e] : scores[e];
    }
    // 3. Group limit: zero the choices of every group but the topk_group best.
    if (args.n_group > 1) {
      for (int g = 0; g < args.n_group; ++g) {
        const std::vector<float> group(choice.begin() + g * group_size,
                                       choice.begin() + (g + 1) * group_size);
        const std::vector<int32_t> order = descending_order(group);
        group_scores[g] = args.group_scoring == GroupScoring::kMax
                              ? group[order[0]]
                              : group[order[0]] + group[order[1]];
      }
      const std::vector<int32_t> group_order = descending_order(group_scores);
      for (int j = args.topk_group; j < args.n_group; ++j) {
        const int64_t g = group_order[j];
        std::fill(choice.begin() + g * group_size, choice.begin() + (g + 1) * group_size, 0.0f);
      }
    }
    // 4. The k best choices.
    const std::vector<int32_t> order = descending_order(choice);
    // 5. Weights from the unbiased scores.
    float total = 0.0f;
    for (int j = 0; j < k; ++j) total += scores[order[j]];
    if (args.scoring == RouterScoring::kSigmoid) total += 1e-20f;
    for (int j = 0; j < k; ++j) {
      const float w = scores[order[j]];
      ids[t * k + j] = order[j];
      weights[t * k + j] = (args.renormalize ? w / total : w) * args.scaling;
    }
  }
}

void kv_write(const float* k, const float* v, int64_t tokens, int64_t kv_dim, const int64_t* slots,
              void* k_cache, void* v_cache, DType cache_dtype) {
  const size_t row_bytes = dtype_row_bytes(cache_dtype, kv_dim);
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] < 0) continue;
    write_kv_row(k + t * kv_dim, kv_dim, cache_dtype,
                 static_cast<uint8_t*>(k_cache) + slots[t] * row_bytes);
    write_kv_row(v + t * kv_dim, kv_dim, cache_dtype,
                 static_cast<uint8_t*>(v_cache) + slots[t] * row_bytes);
  }
}

void paged_attention(const PagedAttentionArgs& a, ThreadPool* /*pool*/) {
  const int group = a.n_heads / a.n_kv_heads;
  const size_t row_bytes =
      dtype_row_bytes(a.cache_dtype, static_cast<int64_t>(a.n_kv_heads) * a.head_dim);
  std::vector<float> scores;
  for (int64_t t = 0; t < a.tokens; ++t) {
    const int64_t seq = a.token_seq[t];
    const int64_t ctx = a.ctx_len[t];
    const int64_t first =
        a.sliding_window > 0 ? std::max<int64_t>(0, ctx - a.sliding_window) : int64_t{0};
    for (int h = 0; h < a.n_heads; ++h) {
      const int kv_head = h / group;
      const float* q = a.q + (t * a.n_heads + h) * a.head_dim;
      float* out = a.out + (t * a.n_heads + h) * a.head_dim;
      // Element d of this KV head at position p in either cache, through the sequence's block
      // table.
      auto cache_value = [&](const void* cache, int64_t p, int d) {
        const int64_t block = a.block_tables[seq * a.max_blocks_per_seq + p / a.block_size];
        const int64_t slot = block * a.block_size + p % a.block_size;
        return kv_row_value(static_cast<const uint8_t*>(cache) + slot * row_bytes, a.cache_dtype,
                            static_cast<int64_t>(kv_head) * a.head_dim + d);
      };
      scores.assign(std::max<int64_t>(0, ctx - first), 0.0f);
      float max_score = -INFINITY;
      for (int64_t p = first; p < ctx; ++p) {
        float dot = 0.0f;
        for (int d = 0; d < a.head_dim; ++d) dot += q[d] * cache_value(a.k_cache, p, d);
        scores[p - first] = dot * a.scale;
        max_score = std::max(max_score, scores[p - first]);
      }
      float total = 0.0f;
      for (float& s : scores) {
        s = std::exp(s - max_score);
        total += s;
      }
      for (int d = 0; d < a.head_dim; ++d) out[d] = 0.0f;
      for (int64_t p = first; p < ctx; ++p) {
        for (int d = 0; d < a.head_dim; ++d) {
          out[d] += scores[p - first] / total * cache_value(a.v_cache, p, d);
        }
      }
    }
  }
}

void gather_rows(const float* src, const int32_t* idx, int64_t n, int64_t dim, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < dim; ++d) dst[i * dim + d] = src[idx[i] * dim + d];
  }
}

void add_gated_rows(const float* src, const float* gate, int64_t rows, int64_t dim, float* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t d = 0; d < dim; ++d) dst[r * dim + d] += gate[r] * src[r * dim + d];
  }
}

void add(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = a[i] + b[i];
}

void sigmoid(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

void sort_by_expert(const int32_t* ids, int64_t tokens, int k, int64_t experts, int32_t* offsets,
                    int32_t* sorted) {
  const int64_t n = tokens * k;
  for (int64_t e = 0; e <= experts; ++e) offsets[e] = 0;
  for (int64_t j = 0; j < n; ++j) ++offsets[ids[j] + 1];
  for (int64_t e = 0; e < experts; ++e) offsets[e + 1] += offsets[e];
  std::vector<int32_t> cursor(offsets, offsets + experts);
  for (int64_t j = 0; j < n; ++j) {
    const int32_t pos = cursor[ids[j]]++;
    sorted[pos] = static_cast<int32_t>(j / k);
    sorted[n + pos] = static_cast<int32_t>(j);
    sorted[2 * n + j] = pos;
  }
}

void combine_experts(const float* ys, const int32_t* inverse, const float* weights, int64_t tokens,
                     int k, int64_t dim, float* out) {
  std::vector<int32_t> order(k);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int c = 0; c < k; ++c) order[c] = c;
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return inverse[t * k + a] < inverse[t * k + b]; });
    float* o = out + t * dim;
    for (int64_t d = 0; d < dim; ++d) o[d] = 0.0f;
    for (int c : order) {
      const float w = weights[t * k + c];
      const float* y = ys + static_cast<int64_t>(inverse[t * k + c]) * dim;
      for (int64_t d = 0; d < dim; ++d) o[d] += w * y[d];
    }
  }
}

}  // namespace sy::cpu::ref
