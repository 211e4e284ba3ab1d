// sy::cpu: the fast latent-attention ops. head_matmul runs the active ISA's matmul kernels per
// head; latent_attention cuts each token's context into pieces, runs the pieces (and, for small
// batches, groups of heads) on the pool, then merges each token's pieces in order.
#include "kernels/cpu/latent_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/kv_rows.h"

namespace sy::cpu {
namespace {

using detail::KernelTable;
using detail::LatentSpan;
using detail::MatmulArgs;

// Below this many multiply-adds, waking the pool costs more than it saves (as in ops.cc).
constexpr int64_t kMinParallelWork = int64_t{1} << 15;

ThreadPool* pool_for(ThreadPool* pool, int64_t work) {
  return work >= kMinParallelWork ? pool : nullptr;
}

// head_matmul: rows of x per pass, so that a head's gathered rows (and its weights, re-read per
// pass) stay bounded; the matmul kernels stream the weights once per 256 rows too.
constexpr int64_t kHeadRowsPerPass = 256;

// latent_attention: a token's context is cut into at most kMaxPieces pieces of at least
// kKeysPerPiece positions (rounded to whole key chunks). The cut depends on ctx_len alone.
constexpr int64_t kKeysPerPiece = 256;
constexpr int64_t kMaxPieces = 16;
constexpr int64_t kPieceRounding = 16;
// Floats of unnormalised piece outputs held at once (pieces after a token's first; the first
// goes straight to `out`): tokens are processed in batches that fit.
constexpr int64_t kPartialFloats = int64_t{1} << 22;

struct PiecePlan {
  int64_t count = 0;
  int64_t len = 0;
};

PiecePlan plan_pieces(int64_t ctx) {
  if (ctx <= 0) return {};
  const int64_t wanted = std::min(kMaxPieces, (ctx + kKeysPerPiece - 1) / kKeysPerPiece);
  int64_t len = (ctx + wanted - 1) / wanted;
  len = (len + kPieceRounding - 1) / kPieceRounding * kPieceRounding;
  return {(ctx + len - 1) / len, len};
}

// One span of work: a piece of a token's context for a group of its heads.
struct Unit {
  int64_t token;
  int64_t piece;  // index of the piece among the token's pieces
  int64_t p_begin, p_end;
  int h_begin, h_end;
};

struct LatentScratch {
  std::vector<float> partial;  // unnormalised rows of pieces after a token's first
  std::vector<float> stats;    // (max[heads], denom[heads]) per piece
  std::vector<Unit> units;
  // Per token of the batch (and one past the end): index of its first piece, and of its first
  // row of partial.
  std::vector<int64_t> first_piece, first_extra;
  std::vector<int64_t> cost_end;  // cumulative cost of the units
};

// Folds piece partials (max, denom, unnormalised row) into the running (m, d, o) of one head.
void merge_piece(float& m, float& d, float* o, float mi, float di, const float* oi, int64_t n) {
  if (di == 0.0f) return;
  const float new_max = std::max(m, mi);
  const float a0 = d > 0.0f ? std::exp(m - new_max) : 0.0f;
  const float a1 = std::exp(mi - new_max);
  for (int64_t i = 0; i < n; ++i) o[i] = o[i] * a0 + oi[i] * a1;
  d = d * a0 + di * a1;
  m = new_max;
}

}  // namespace

void head_matmul(const float* x, const void* w, DType w_dtype, float* y, int64_t m, int64_t heads,
                 int64_t n, int64_t k, ThreadPool* pool) {
  if (m <= 0 || heads <= 0 || n <= 0) return;
  const size_t head_bytes = static_cast<size_t>(n) * dtype_row_bytes(w_dtype, k);
  const KernelTable* kt = detail::active_kernels();
  const detail::MatmulColumns columns =
      kt != nullptr && !is_int4(w_dtype) ? detail::matmul_columns(*kt, w_dtype) : nullptr;
  if (columns == nullptr) {
    // Int4 (whose kernels take x quantized per call) and processors without vector kernels:
    // one cpu::matmul per head over that head's gathered rows of x.
    std::vector<float> xs(m * k), ys(m * n);
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t r = 0; r < m; ++r) {
        std::memcpy(xs.data() + r * k, x + (r * heads + h) * k, k * sizeof(float));
      }
      matmul(xs.data(), static_cast<const uint8_t*>(w) + h * head_bytes, w_dtype, nullptr,
             ys.data(), m, n, k, pool);
      for (int64_t r = 0; r < m; ++r) {
        std::memcpy(y + (r * heads + h) * n, ys.data() + r * n, n * sizeof(float));
      }
    }
    return;
  }
  const int64_t unit = kt->matmul_columns_per_unit;
  const int64_t units_per_head = (n + unit - 1) / unit;
  for (int64_t row0 = 0; row0 < m; row0 += kHeadRowsPerPass) {
    const int64_t rows = std::min(kHeadRowsPerPass, m - row0);
    // Items (head, column unit); a thread's items are contiguous, so it gathers each head's rows
    // of x once. One row needs no gathering: head h's slice of x and y is contiguous.
    run_parallel(pool_for(pool, rows * heads * n * k), heads * units_per_head,
                 [&](int64_t begin, int64_t end) {
                   thread_local std::vector<float> xs, ys;
                   if (rows > 1) {
                     xs.resize(rows * k);
                     ys.resize(rows * n);
                   }
                   int64_t gathered = -1;
                   for (int64_t item = begin; item < end; ++item) {
                     const int64_t h = item / units_per_head;
                     const int64_t j0 = item % units_per_head * unit;
                     const int64_t j1 = std::min(j0 + unit, n);
                     const float* xh = x + (row0 * heads + h) * k;
                     float* yh = y + (row0 * heads + h) * n;
                     if (rows > 1 && gathered != h) {
                       for (int64_t r = 0; r < rows; ++r) {
                         std::memcpy(xs.data() + r * k, xh + r * heads * k, k * sizeof(float));
                       }
                       gathered = h;
                     }
                     const MatmulArgs args{rows > 1 ? xs.data() : xh,
                                           static_cast<const uint8_t*>(w) + h * head_bytes,
                                           nullptr,
                                           rows > 1 ? ys.data() : yh,
                                           rows,
                                           n,
                                           k};
                     columns(args, j0, j1);
                     if (rows > 1) {
                       for (int64_t r = 0; r < rows; ++r) {
                         std::memcpy(yh + r * heads * n + j0, ys.data() + r * n + j0,
                                     (j1 - j0) * sizeof(float));
                       }
                     }
                   }
                 });
  }
}

void latent_kv_write(const float* latent, const float* rope, int64_t tokens, int64_t latent_dim,
                     int64_t rope_dim, const int64_t* slots, void* cache, DType cache_dtype) {
  const int64_t row = latent_dim + rope_dim;
  const size_t row_bytes = dtype_row_bytes(cache_dtype, row);
  std::vector<float> values(cache_dtype == DType::kF32 ? 0 : row);  // a row to convert at once
  for (int64_t t = 0; t < tokens; ++t) {
    if (slots[t] < 0) continue;
    uint8_t* dst = static_cast<uint8_t*>(cache) + slots[t] * row_bytes;
    float* joined = cache_dtype == DType::kF32 ? reinterpret_cast<float*>(dst) : values.data();
    std::memcpy(joined, latent + t * latent_dim, latent_dim * sizeof(float));
    std::memcpy(joined + latent_dim, rope + t * rope_dim, rope_dim * sizeof(float));
    if (cache_dtype != DType::kF32) write_kv_row(joined, row, cache_dtype, dst);
  }
}

void latent_attention(const LatentAttentionArgs& a, ThreadPool* pool) {
  const KernelTable* kt = detail::active_kernels();
  if (kt == nullptr) return ref::latent_attention(a, pool);
  const int64_t heads = a.n_heads;
  const int64_t latent_dim = a.latent_dim;
  const int64_t head_floats = heads * latent_dim;
  const int threads = pool != nullptr ? pool->size() : 1;
  // Scratch of the calling thread (grows once), reached by the workers through this reference: a
  // thread_local named inside the lambdas would be each worker's own.
  thread_local LatentScratch calling_thread_scratch;
  LatentScratch& scratch = calling_thread_scratch;
  std::vector<float>& partial = scratch.partial;
  std::vector<float>& stats = scratch.stats;
  std::vector<Unit>& units = scratch.units;
  std::vector<int64_t>& first_piece = scratch.first_piece;
  std::vector<int64_t>& first_extra = scratch.first_extra;
  std::vector<int64_t>& cost_end = scratch.cost_end;
  for (int64_t t0 = 0; t0 < a.tokens;) {
    int64_t t1 = t0;
    int64_t pieces = 0;
    int64_t extra = 0;
    first_piece.clear();
    first_extra.clear();
    while (t1 < a.tokens) {
      const PiecePlan plan = plan_pieces(a.ctx_len[t1]);
      const int64_t more = std::max<int64_t>(plan.count - 1, 0);
      if (t1 > t0 && (extra + more) * head_floats > kPartialFloats) break;
      first_piece.push_back(pieces);
      first_extra.push_back(extra);
      pieces += plan.count;
      extra += more;
      ++t1;
    }
    first_piece.push_back(pieces);
    first_extra.push_back(extra);
    partial.resize(extra * head_floats);
    stats.resize(2 * pieces * heads);
    // Small batches also split the heads, so that every thread has work.
    const int64_t groups = pieces > 0 && pieces < 2 * threads
                               ? std::min(heads, (2 * threads + pieces - 1) / pieces)
                               : 1;
    const int64_t per_group = (heads + groups - 1) / groups;
    units.clear();
    cost_end.clear();
    int64_t total_cost = 0;
    for (int64_t t = t0; t < t1; ++t) {
      const PiecePlan plan = plan_pieces(a.ctx_len[t]);
      for (int64_t i = 0; i < plan.count; ++i) {
        const int64_t p_begin = i * plan.len;
        const int64_t p_end = std::min<int64_t>(p_begin + plan.len, a.ctx_len[t]);
        for (int64_t h0 = 0; h0 < heads; h0 += per_group) {
          const int64_t h1 = std::min(heads, h0 + per_group);
          units.push_back({t, i, p_begin, p_end, static_cast<int>(h0), static_cast<int>(h1)});
          total_cost += (p_end - p_begin + 1) * (h1 - h0);
          cost_end.push_back(total_cost);
        }
      }
    }
    // Where piece i of token t keeps its unnormalised rows (the first piece: in out) and its
    // (max, denom) per head.
    auto piece_rows = [&](int64_t t, int64_t i) {
      if (i == 0) return a.out + t * head_floats;
      return partial.data() + (first_extra[t - t0] + i - 1) * head_floats;
    };
    auto piece_stats = [&](int64_t t, int64_t i) {
      return stats.data() + 2 * (first_piece[t - t0] + i) * heads;
    };
    auto run_units = [&](int64_t begin, int64_t end) {
      for (int64_t u = begin; u < end; ++u) {
        const Unit& unit = units[u];
        float* st = piece_stats(unit.token, unit.piece);
        const LatentSpan span{
            unit.token,        unit.p_begin,
            unit.p_end,        unit.h_begin,
            unit.h_end,        piece_rows(unit.token, unit.piece) + unit.h_begin * latent_dim,
            st + unit.h_begin, st + heads + unit.h_begin};
        kt->latent_attention_span(a, span);
      }
    };
    const int64_t n_units = static_cast<int64_t>(units.size());
    ThreadPool* work_pool = pool_for(pool, total_cost * latent_dim);
    if (work_pool == nullptr || threads == 1 || n_units <= 1) {
      run_units(0, n_units);
    } else {
      // Threads split the units by cost (keys times heads), not by count: a unit goes to the
      // thread whose share of the total cost holds the unit's last unit of cost.
      auto unit_at = [&](int64_t offset) {
        return static_cast<int64_t>(std::upper_bound(cost_end.begin(), cost_end.end(), offset) -
                                    cost_end.begin());
      };
      run_parallel(work_pool, threads, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
          run_units(unit_at(total_cost * c / threads), unit_at(total_cost * (c + 1) / threads));
        }
      });
    }
    // Each token's pieces merged in order, then normalised.
    run_parallel(pool_for(pool, (extra + t1 - t0) * head_floats), t1 - t0,
                 [&](int64_t begin, int64_t end) {
                   for (int64_t t = t0 + begin; t < t0 + end; ++t) {
                     const int64_t count = first_piece[t - t0 + 1] - first_piece[t - t0];
                     float* out = a.out + t * head_floats;
                     if (count == 0) {
                       std::memset(out, 0, head_floats * sizeof(float));
                       continue;
                     }
                     const float* st0 = piece_stats(t, 0);
                     for (int64_t h = 0; h < heads; ++h) {
                       float m = st0[h];
                       float d = st0[heads + h];
                       float* o = out + h * latent_dim;
                       for (int64_t i = 1; i < count; ++i) {
                         const float* st = piece_stats(t, i);
                         merge_piece(m, d, o, st[h], st[heads + h],
                                     piece_rows(t, i) + h * latent_dim, latent_dim);
                       }
                       const float inverse = d > 0.0f ? 1.0f / d : 0.0f;
                       for (int64_t e = 0; e < latent_dim; ++e) o[e] *= inverse;
                     }
                   }
                 });
    t0 = t1;
  }
}

}  // namespace sy::cpu
