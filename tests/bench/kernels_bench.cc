// CPU kernel benchmark (a program, not a test): read bandwidth, then matmul weight GB/s, GFLOP/s
// and fraction of read bandwidth per shape, batch size, dtype and threads, then decode attention
// and decode latent attention (DeepSeek MLA).
//
// Usage: kernels_bench [--isa=avx512|avx2|scalar] [--quick] [--only=matmul|attention|latent].
// Prints a table and one JSON line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/latent_ops.h"
#include "kernels/cpu/membw.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/testing.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/kv_rows.h"

namespace sy::cpu {
namespace {

struct Options {
  Isa isa = best_isa();
  bool quick = false;  // smaller bandwidth buffer, shorter timing
  std::string only;    // one section (matmul, attention, latent) after the bandwidth; "" = all
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    bool known = arg == "--quick";
    if (known) o.quick = true;
    for (const char* section : {"matmul", "attention", "latent"}) {
      if (arg == std::string("--only=") + section) {
        o.only = section;
        known = true;
      }
    }
    for (Isa isa : supported_isas()) {
      if (arg == "--isa=" + std::string(isa_name(isa))) {
        o.isa = isa;
        known = true;
      }
    }
    if (!known) {
      std::fprintf(stderr,
                   "usage: %s [--isa=avx512|avx2|scalar] [--quick] "
                   "[--only=matmul|attention|latent]\n",
                   argv[0]);
      std::exit(2);
    }
  }
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Best time of fn(1), fn(2), ... over at least `calls` calls and `min_seconds`, after a warm-up
// fn(0). (Callers cycling through cold copies of their data: call 1 must not reuse call 0's.)
template <typename Fn>
double best_time(size_t calls, double min_seconds, const Fn& fn) {
  fn(size_t{0});
  double best = 1e30;
  double spent = 0.0;
  for (size_t call = 1; call <= calls || spent < min_seconds; ++call) {
    const auto start = std::chrono::steady_clock::now();
    fn(call);
    const double s = seconds_since(start);
    best = std::min(best, s);
    spent += s;
  }
  return best;
}

// Copies of the weights are cycled through so that together they exceed the last-level cache:
// every call streams its weights from memory, as decode does.
constexpr size_t kColdBytes = size_t{256} << 20;

struct MatmulResult {
  int64_t k, n, m;
  DType dtype;
  int threads;
  double seconds, gbs, gflops, bw_fraction;
};

MatmulResult time_matmul(int64_t k, int64_t n, int64_t m, DType dtype, ThreadPool& pool,
                         double read_gbs, double min_seconds) {
  const size_t weight_bytes = static_cast<size_t>(n) * dtype_row_bytes(dtype, k);
  const size_t copies = std::max<size_t>(1, (kColdBytes + weight_bytes - 1) / weight_bytes);
  const std::vector<Weights> weights(copies, random_weight_matrix(dtype, n, k, -1, 1, 1));
  const std::vector<float> x = random_floats(m * k, -1, 1, 2);
  std::vector<float> y(m * n);
  const double seconds = best_time(2 * copies, min_seconds, [&](size_t call) {
    matmul(x.data(), weights[call % copies].data(), dtype, nullptr, y.data(), m, n, k, &pool);
  });
  const double gbs = static_cast<double>(weight_bytes) / seconds / 1e9;
  return {
      k, n, m, dtype, pool.size(), seconds, gbs, 2.0 * m * n * k / seconds / 1e9, gbs / read_gbs};
}

// Decode attention: one new token for each of `seqs` sequences of `ctx` cached positions, over a
// K/V cache of `cache_dtype` (f32, bf16 or kF8Row). Returns GB/s of K and V bytes read (each kv
// head's rows once; GQA heads re-read them from cache) and the time of one call in *seconds.
double time_decode_attention(ThreadPool& pool, double min_seconds, DType cache_dtype,
                             double* seconds) {
  constexpr int kSeqs = 16, kCtx = 2048, kHeads = 16, kKvHeads = 4, kHeadDim = 128, kBlock = 16;
  constexpr int kBlocksPerSeq = kCtx / kBlock;
  constexpr int64_t kSlots = static_cast<int64_t>(kSeqs) * kCtx;
  constexpr int64_t kKvDim = static_cast<int64_t>(kKvHeads) * kHeadDim;
  const size_t cache_bytes = kSlots * dtype_row_bytes(cache_dtype, kKvDim);
  std::vector<uint8_t> k_cache(cache_bytes), v_cache(cache_bytes);
  {
    const std::vector<float> k = random_floats(kSlots * kKvDim, -1, 1, 3);
    const std::vector<float> v = random_floats(kSlots * kKvDim, -1, 1, 4);
    std::vector<int64_t> slots(kSlots);
    for (int64_t i = 0; i < kSlots; ++i) slots[i] = i;
    kv_write(k.data(), v.data(), kSlots, kKvDim, slots.data(), k_cache.data(), v_cache.data(),
             cache_dtype);
  }
  const std::vector<float> q = random_floats(kSeqs * kHeads * kHeadDim, -1, 1, 5);
  std::vector<float> out(q.size());
  std::vector<int32_t> tables(kSeqs * kBlocksPerSeq);
  for (size_t b = 0; b < tables.size(); ++b) tables[b] = static_cast<int32_t>(b);
  std::vector<int32_t> token_seq(kSeqs);
  for (int s = 0; s < kSeqs; ++s) token_seq[s] = s;
  const std::vector<int32_t> ctx_len(kSeqs, kCtx);
  PagedAttentionArgs a;
  a.q = q.data();
  a.out = out.data();
  a.k_cache = k_cache.data();
  a.v_cache = v_cache.data();
  a.cache_dtype = cache_dtype;
  a.block_tables = tables.data();
  a.token_seq = token_seq.data();
  a.ctx_len = ctx_len.data();
  a.tokens = kSeqs;
  a.n_heads = kHeads;
  a.n_kv_heads = kKvHeads;
  a.head_dim = kHeadDim;
  a.block_size = kBlock;
  a.max_blocks_per_seq = kBlocksPerSeq;
  a.scale = 0.088f;
  *seconds = best_time(3, min_seconds, [&](size_t) { paged_attention(a, &pool); });
  return 2.0 * static_cast<double>(cache_bytes) / *seconds / 1e9;
}

struct LatentResult {
  DType cache;
  int tokens, ctx, threads;
  double seconds, gbs, gflops, bw_fraction;
};

// Decode latent attention (DeepSeek-V3 shapes: 16 heads of a 512 + 64 latent cache row): one new
// token for each of `tokens` sequences of `ctx` cached positions. GB/s counts each token's cache
// rows once (all heads share them), in `cache_dtype` (f32, bf16 or kF8Row); copies of the cache
// are cycled through so that every call reads from memory.
LatentResult time_latent_attention(DType cache_dtype, int tokens, int ctx, ThreadPool& pool,
                                   double read_gbs, double min_seconds) {
  constexpr int kHeads = 16, kLatent = 512, kRope = 64, kBlock = 64;
  constexpr int64_t kRow = kLatent + kRope;
  const int blocks_per_seq = ctx / kBlock;
  const size_t row_bytes = dtype_row_bytes(cache_dtype, kRow);
  const size_t cache_bytes = static_cast<size_t>(tokens) * ctx * row_bytes;
  const size_t copies = std::max<size_t>(1, (kColdBytes + cache_bytes - 1) / cache_bytes);
  const size_t rows = copies * tokens * ctx;
  std::vector<uint8_t> cache(rows * row_bytes);
  {
    const std::vector<float> values = random_floats(rows * kRow, -1, 1, 6);
    for (size_t r = 0; r < rows; ++r) {
      write_kv_row(values.data() + r * kRow, kRow, cache_dtype, cache.data() + r * row_bytes);
    }
  }
  // Copy c's block table rows: sequence s owns blocks (c * tokens + s) * blocks_per_seq + b.
  std::vector<int32_t> tables(copies * tokens * blocks_per_seq);
  for (size_t b = 0; b < tables.size(); ++b) tables[b] = static_cast<int32_t>(b);
  std::vector<int32_t> token_seq(tokens);
  for (int t = 0; t < tokens; ++t) token_seq[t] = t;
  const std::vector<int32_t> ctx_len(tokens, ctx);
  const std::vector<float> q_latent = random_floats(tokens * kHeads * kLatent, -0.1f, 0.1f, 7);
  const std::vector<float> q_rope = random_floats(tokens * kHeads * kRope, -0.1f, 0.1f, 8);
  std::vector<float> out(q_latent.size());
  LatentAttentionArgs a;
  a.q_latent = q_latent.data();
  a.q_rope = q_rope.data();
  a.out = out.data();
  a.cache = cache.data();
  a.cache_dtype = cache_dtype;
  a.token_seq = token_seq.data();
  a.ctx_len = ctx_len.data();
  a.tokens = tokens;
  a.n_heads = kHeads;
  a.latent_dim = kLatent;
  a.rope_dim = kRope;
  a.block_size = kBlock;
  a.max_blocks_per_seq = blocks_per_seq;
  a.scale = 0.072f;
  const double seconds = best_time(2 * copies, min_seconds, [&](size_t call) {
    a.block_tables = tables.data() + call % copies * tokens * blocks_per_seq;
    latent_attention(a, &pool);
  });
  const double gbs = static_cast<double>(cache_bytes) / seconds / 1e9;
  const double flops = 2.0 * tokens * ctx * kHeads * (kRow + kLatent);
  return {cache_dtype,           tokens,        ctx, pool.size(), seconds, gbs,
          flops / seconds / 1e9, gbs / read_gbs};
}

std::string to_json(Isa isa, const std::vector<double>& read_gbs,
                    const std::vector<MatmulResult>& results,
                    const std::vector<double>& attention_gbs,
                    const std::vector<LatentResult>& latent) {
  std::ostringstream j;
  j.precision(4);
  auto per_thread = [&j](const char* name, const std::vector<double>& values) {
    j << ",\"" << name << "\":{";
    for (size_t t = 0; t < values.size(); ++t)
      j << (t ? "," : "") << "\"" << t + 1 << "\":" << values[t];
    j << "}";
  };
  j << "{\"bench\":\"kernels\",\"isa\":\"" << isa_name(isa) << "\"";
  per_thread("read_bw_gbs", read_gbs);
  per_thread("decode_attention_kv_gbs", attention_gbs);
  j << ",\"matmul\":[";
  for (size_t i = 0; i < results.size(); ++i) {
    const MatmulResult& r = results[i];
    j << (i ? "," : "") << "{\"k\":" << r.k << ",\"n\":" << r.n << ",\"m\":" << r.m
      << ",\"dtype\":\"" << dtype_name(r.dtype) << "\",\"threads\":" << r.threads
      << ",\"us\":" << r.seconds * 1e6 << ",\"weight_gbs\":" << r.gbs << ",\"gflops\":" << r.gflops
      << ",\"bw_fraction\":" << r.bw_fraction << "}";
  }
  j << "],\"latent_attention\":[";
  for (size_t i = 0; i < latent.size(); ++i) {
    const LatentResult& r = latent[i];
    j << (i ? "," : "") << "{\"cache\":\"" << dtype_name(r.cache) << "\",\"tokens\":" << r.tokens
      << ",\"ctx\":" << r.ctx << ",\"threads\":" << r.threads << ",\"us\":" << r.seconds * 1e6
      << ",\"cache_gbs\":" << r.gbs << ",\"gflops\":" << r.gflops
      << ",\"bw_fraction\":" << r.bw_fraction << "}";
  }
  j << "]}";
  return j.str();
}

int run(const Options& o) {
  set_active_isa(o.isa);
  const int max_threads = std::min(2, static_cast<int>(std::thread::hardware_concurrency()));
  std::vector<std::unique_ptr<ThreadPool>> owned;
  for (int threads = 1; threads <= std::max(max_threads, 1); ++threads) {
    owned.push_back(std::make_unique<ThreadPool>(threads));
  }
  std::printf("kernels_bench: isa=%s (best %s), threads 1..%zu\n",
              std::string(isa_name(active_isa())).c_str(),
              std::string(isa_name(best_isa())).c_str(), owned.size());

  const size_t bw_bytes = o.quick ? size_t{256} << 20 : size_t{1} << 30;
  std::vector<double> read_gbs;
  for (const auto& pool : owned) {
    read_gbs.push_back(measure_read_bandwidth_gbs(bw_bytes, o.quick ? 3 : 5, pool.get()));
    std::printf("read bandwidth, %d thread(s): %.1f GB/s\n", pool->size(), read_gbs.back());
  }

  const double min_seconds = o.quick ? 0.05 : 0.2;
  auto wants = [&o](const char* section) { return o.only.empty() || o.only == section; };
  std::vector<MatmulResult> results;
  if (wants("matmul")) {
    std::printf("\nmatmul y[m,n] = x[m,k] w[n,k]^T; GB/s = weight bytes / time\n");
    std::printf("%6s %6s %5s %5s %3s %10s %8s %8s %7s\n", "k", "n", "m", "dtype", "thr", "us",
                "GB/s", "GFLOP/s", "of bw");
    struct Shape {
      int64_t k, n;
    };
    for (const Shape& s : {Shape{1024, 2816}, Shape{2816, 1024}, Shape{1024, 32000}}) {
      for (int64_t m : {1, 4, 16, 64, 128}) {
        for (DType dtype :
             {DType::kF32, DType::kBF16, DType::kF16, DType::kI8, DType::kI4G128, DType::kF8}) {
          for (size_t t = 0; t < owned.size(); ++t) {
            const MatmulResult r =
                time_matmul(s.k, s.n, m, dtype, *owned[t], read_gbs[t], min_seconds);
            results.push_back(r);
            std::printf("%6lld %6lld %5lld %5s %3d %10.1f %8.1f %8.1f %6.0f%%\n",
                        static_cast<long long>(r.k), static_cast<long long>(r.n),
                        static_cast<long long>(r.m), std::string(dtype_name(dtype)).c_str(),
                        r.threads, r.seconds * 1e6, r.gbs, r.gflops, 100 * r.bw_fraction);
          }
        }
      }
    }
  }

  std::vector<double> attention_gbs;
  if (wants("attention")) {
    std::printf("\ndecode attention (16 seqs x 2048 ctx, 16/4 heads, head_dim 128):\n");
    std::vector<double> attention_gbs;
    for (size_t t = 0; t < owned.size(); ++t) {
      for (DType cache : {DType::kF32, DType::kBF16, DType::kF8Row}) {
        double seconds = 0;
        const double gbs = time_decode_attention(*owned[t], min_seconds, cache, &seconds);
        if (cache == DType::kF32) attention_gbs.push_back(gbs);
        std::printf(
            "  %d thread(s), %-12s cache: %8.0f us, %.1f GB/s of K+V (%.0f%% of read "
            "bandwidth)\n",
            owned[t]->size(), std::string(dtype_name(cache)).c_str(), seconds * 1e6, gbs,
            100 * gbs / read_gbs[t]);
      }
    }
  }

  std::vector<LatentResult> latent;
  if (wants("latent")) {
    std::printf(
        "\ndecode latent attention (MLA: 16 heads, 512 + 64 cache row; GB/s = cache bytes / "
        "time)\n");
    std::printf("%-12s %6s %6s %3s %10s %8s %8s %7s\n", "cache", "tokens", "ctx", "thr", "us",
                "GB/s", "GFLOP/s", "of bw");
    for (DType cache : {DType::kF32, DType::kBF16, DType::kF8Row}) {
      for (int tokens : {1, 8}) {
        for (int ctx : {1024, 4096}) {
          for (size_t t = 0; t < owned.size(); ++t) {
            const LatentResult r =
                time_latent_attention(cache, tokens, ctx, *owned[t], read_gbs[t], min_seconds);
            latent.push_back(r);
            std::printf("%-12s %6d %6d %3d %10.1f %8.1f %8.1f %6.0f%%\n",
                        std::string(dtype_name(cache)).c_str(), r.tokens, r.ctx, r.threads,
                        r.seconds * 1e6, r.gbs, r.gflops, 100 * r.bw_fraction);
          }
        }
      }
    }
  }
  std::printf("\n%s\n", to_json(active_isa(), read_gbs, results, attention_gbs, latent).c_str());
  return 0;
}

}  // namespace
}  // namespace sy::cpu

int main(int argc, char** argv) { return sy::cpu::run(sy::cpu::parse(argc, argv)); }
