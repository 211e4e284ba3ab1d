// Read-bandwidth measurement: page-touch in parallel (so pages spread like the weights will),
// then time best-of-reps parallel sums over the buffer with the active ISA's vector kernel.
#include "kernels/cpu/membw.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cpu/isa.h"
#include "kernels/cpu/kernel_table.h"
#include "kernels/cpu/thread_pool.h"

namespace sy::cpu {
namespace {

float scalar_sum(const float* x, int64_t n) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += x[i];
  return sum;
}

}  // namespace

double measure_read_bandwidth_gbs(size_t bytes, int reps, ThreadPool* pool) {
  const auto n = static_cast<int64_t>(bytes / sizeof(float));
  if (n == 0 || reps < 1) return 0.0;
  const std::unique_ptr<float[]> buffer(new float[n]);
  float* data = buffer.get();
  const int threads = pool != nullptr ? pool->size() : 1;
  run_parallel(pool, threads, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      std::fill(data + n * c / threads, data + n * (c + 1) / threads, 1.0f);
    }
  });
  const detail::KernelTable* kt = detail::active_kernels();
  float (*sum)(const float*, int64_t) = kt != nullptr ? kt->sum : &scalar_sum;
  std::vector<float> partial(threads);
  double best_seconds = 0.0;
  for (int rep = 0; rep < reps; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    run_parallel(pool, threads, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        partial[c] = sum(data + n * c / threads, n * (c + 1) / threads - n * c / threads);
      }
    });
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (rep == 0 || seconds < best_seconds) best_seconds = seconds;
  }
  // Every element is 1: a wrong sum means the loads were skipped or the buffer was not read.
  float total = 0.0f;
  for (float p : partial) total += p;
  if (total <= 0.0f) return 0.0;
  return static_cast<double>(n) * sizeof(float) / best_seconds / 1e9;
}

}  // namespace sy::cpu
