// ThreadPool: a fixed set of persistent worker threads that split a loop into contiguous chunks.
// Built for many short calls per second (a few per layer per decode step): no thread creation.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace sy::cpu {

// A borrowed callable fn(begin, end): a function pointer and the object it calls, so that
// handing work to the pool never allocates (a std::function may).
struct ChunkFn {
  void (*call)(const void* target, int64_t begin, int64_t end);
  const void* target;

  template <typename Fn>
  static ChunkFn of(const Fn& fn) {
    return {
        [](const void* t, int64_t begin, int64_t end) { (*static_cast<const Fn*>(t))(begin, end); },
        &fn};
  }
};

// parallel_for(n, fn) runs fn(begin, end) over min(n, size()) contiguous, near-equal chunks of
// [0, n); the calling thread runs the first chunk, workers the others, and the call returns when
// all are done. Thread safety: one parallel_for at a time (from any single thread); fn must not
// call back into the same pool and must not throw. Workers spin briefly between calls, then
// sleep on a futex.
class ThreadPool {
 public:
  // n_threads counts the calling thread; values < 1 mean one thread per hardware thread.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);
  // The same, for callers that want no std::function.
  void parallel_for(int64_t n, ChunkFn fn);

 private:
  void worker_loop(int chunk);
  void run_chunk(int chunk) const;

  std::vector<std::thread> workers_;
  // The current job; written by the caller before `generation_` is bumped (release).
  ChunkFn job_{};
  int64_t job_n_ = 0;
  int job_chunks_ = 0;
  bool stopping_ = false;
  std::atomic<uint32_t> generation_{0};  // bumped once per job; workers wait on it
  std::atomic<int> pending_{0};          // workers that have not finished the current job
};

// Runs fn(begin, end) over [0, n) on the pool, or inline when the pool is null or has one
// thread. Allocates nothing.
template <typename Fn>
void run_parallel(ThreadPool* pool, int64_t n, const Fn& fn) {
  if (n <= 0) return;
  if (pool == nullptr || pool->size() == 1 || n == 1) {
    fn(int64_t{0}, n);
    return;
  }
  pool->parallel_for(n, ChunkFn::of(fn));
}

}  // namespace sy::cpu
