// ThreadPool: persistent workers woken by a generation counter; the caller waits on a pending
// count. Both sides poll briefly, then yield, then sleep on the atomic (futex).
#include "kernels/cpu/thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace sy::cpu {
namespace {

// A few microseconds of polling bridges back-to-back kernel calls of one decode step; then
// yielding lets a thread we wait for run when cores are oversubscribed; then sleep (futex).
constexpr int kSpinIterations = 256;
constexpr int kYieldIterations = 64;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Returns once `value` differs from `old`.
template <typename T>
T wait_until_changed(const std::atomic<T>& value, T old) {
  for (int i = 0; i < kSpinIterations + kYieldIterations; ++i) {
    const T now = value.load(std::memory_order_acquire);
    if (now != old) return now;
    if (i < kSpinIterations) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
  value.wait(old, std::memory_order_acquire);
  return value.load(std::memory_order_acquire);
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads < 1) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  if (n_threads < 1) n_threads = 1;
  workers_.reserve(n_threads - 1);
  for (int chunk = 1; chunk < n_threads; ++chunk) {
    workers_.emplace_back([this, chunk] { worker_loop(chunk); });
  }
}

ThreadPool::~ThreadPool() {
  stopping_ = true;
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run_chunk(int chunk) const {
  if (chunk >= job_chunks_) return;
  const int64_t begin = job_n_ * chunk / job_chunks_;
  const int64_t end = job_n_ * (chunk + 1) / job_chunks_;
  job_.call(job_.target, begin, end);
}

void ThreadPool::worker_loop(int chunk) {
  uint32_t seen = 0;
  for (;;) {
    seen = wait_until_changed(generation_, seen);
    if (stopping_) return;
    run_chunk(chunk);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

void ThreadPool::parallel_for(int64_t n,
                              const std::function<void(int64_t begin, int64_t end)>& fn) {
  parallel_for(n, ChunkFn::of(fn));
}

void ThreadPool::parallel_for(int64_t n, ChunkFn fn) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    fn.call(fn.target, 0, n);
    return;
  }
  job_ = fn;
  job_n_ = n;
  job_chunks_ = n < size() ? static_cast<int>(n) : size();
  pending_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  run_chunk(0);
  for (int left = pending_.load(std::memory_order_acquire); left != 0;
       left = pending_.load(std::memory_order_acquire)) {
    wait_until_changed(pending_, left);
  }
}

}  // namespace sy::cpu
