// ThreadPool: chunks cover [0, n) exactly once, contiguously, on at most size() threads; many
// back-to-back calls stay correct. Also a smoke test of the read-bandwidth measurement.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/cpu/membw.h"
#include "kernels/cpu/thread_pool.h"

namespace sy::cpu {
namespace {

TEST(KernelsThreadPool, SizeCountsTheCaller) {
  EXPECT_EQ(ThreadPool(1).size(), 1);
  EXPECT_EQ(ThreadPool(3).size(), 3);
  const int hardware = static_cast<int>(std::thread::hardware_concurrency());
  EXPECT_EQ(ThreadPool(0).size(), std::max(hardware, 1));
}

TEST(KernelsThreadPool, ChunksCoverTheRangeOnce) {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 3, 5, 100, 1001}) {
      std::mutex mu;
      std::vector<std::pair<int64_t, int64_t>> chunks;
      std::vector<std::thread::id> ids;
      pool.parallel_for(n, [&](int64_t begin, int64_t end) {
        const std::lock_guard<std::mutex> lock(mu);
        chunks.emplace_back(begin, end);
        ids.push_back(std::this_thread::get_id());
      });
      std::sort(chunks.begin(), chunks.end());
      ASSERT_EQ(chunks.size(), static_cast<size_t>(std::min<int64_t>(n, threads)))
          << "threads=" << threads << " n=" << n;
      int64_t next = 0;
      for (const auto& [begin, end] : chunks) {
        EXPECT_EQ(begin, next);
        EXPECT_LT(begin, end);
        next = end;
      }
      EXPECT_EQ(next, n);
      std::sort(ids.begin(), ids.end());
      EXPECT_EQ(std::unique(ids.begin(), ids.end()), ids.end()) << "one chunk per thread";
    }
  }
}

TEST(KernelsThreadPool, ManyBackToBackCalls) {
  ThreadPool pool(3);
  std::vector<int64_t> slots(1000, 0);
  for (int call = 0; call < 20000; ++call) {
    pool.parallel_for(static_cast<int64_t>(slots.size()), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) slots[i] += 1;
    });
  }
  for (int64_t v : slots) ASSERT_EQ(v, 20000);
}

TEST(KernelsThreadPool, RunParallelWithoutPoolRunsInline) {
  int calls = 0;
  run_parallel(nullptr, 10, [&](int64_t begin, int64_t end) {
    ++calls;
    EXPECT_EQ(begin, 0);
    EXPECT_EQ(end, 10);
  });
  EXPECT_EQ(calls, 1);
  run_parallel(nullptr, 0, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 1);

  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  run_parallel(&pool, 50, [&](int64_t begin, int64_t end) { total += end - begin; });
  EXPECT_EQ(total.load(), 50);
}

TEST(KernelsThreadPool, ReadBandwidthIsPositive) {
  ThreadPool pool(2);
  EXPECT_GT(measure_read_bandwidth_gbs(size_t{16} << 20, 2, &pool), 0.0);
  EXPECT_GT(measure_read_bandwidth_gbs(size_t{4} << 20, 1, nullptr), 0.0);
}

}  // namespace
}  // namespace sy::cpu
