#include "server/bench/bench_runner.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

namespace sy::bench {
namespace {

// Released requests waiting for a free worker; closed once the last one is released.
class ReleaseQueue {
 public:
  void Push(size_t index) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      items_.push_back(index);
    }
    cv_.notify_one();
  }
  void Close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }
  // The next released index, or nothing once closed and drained.
  std::optional<size_t> Pop() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return std::nullopt;
    const size_t i = items_.front();
    items_.pop_front();
    return i;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<size_t> items_;
  bool closed_ = false;
};

}  // namespace

double SampleInterArrival(double rate, double burstiness, std::mt19937_64& rng) {
  if (std::isinf(rate)) return 0;
  if (std::isinf(burstiness)) return 1.0 / rate;  // perfectly regular arrivals
  if (burstiness == 1.0) return std::exponential_distribution<double>(rate)(rng);
  // Gamma(k, theta) has mean k * theta; theta = 1 / (rate * k) keeps the mean at 1 / rate.
  return std::gamma_distribution<double>(burstiness, 1.0 / (rate * burstiness))(rng);
}

std::vector<double> ArrivalSchedule(int64_t n, double rate, double burstiness, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> at(static_cast<size_t>(std::max<int64_t>(n, 0)));
  double t = 0;
  for (double& a : at) a = (t += SampleInterArrival(rate, burstiness, rng));
  if (!at.empty() && at.back() > 0) {
    const double scale = static_cast<double>(n) / rate / at.back();
    for (double& a : at) a *= scale;
  }
  return at;
}

LoadResult RunLoad(const std::vector<BenchRequest>& requests, const LoadOptions& opts,
                   const SendFnFactory& make_sender) {
  const size_t n = requests.size();
  const std::vector<double> release_s =
      ArrivalSchedule(static_cast<int64_t>(n), opts.request_rate, opts.burstiness, opts.seed);
  size_t workers = n;
  if (opts.max_concurrency) {
    workers = std::min(n, static_cast<size_t>(std::max<int64_t>(1, *opts.max_concurrency)));
  }

  LoadResult result;
  result.records.resize(n);
  ReleaseQueue queue;
  std::atomic<size_t> finished{0};
  const auto origin = BenchClock::now();

  std::vector<std::thread> threads;
  threads.reserve(workers);
  for (size_t w = 0; w < workers; ++w) {
    threads.emplace_back([&] {
      const SendFn send = make_sender();
      while (const std::optional<size_t> i = queue.Pop()) {
        RequestRecord r = send(requests[*i], origin);
        r.arrival_s = release_s[*i];
        result.records[*i] = std::move(r);
        const size_t done = finished.fetch_add(1) + 1;
        if (opts.show_progress && (done * 10 / n) != ((done - 1) * 10 / n)) {
          std::fprintf(stderr, "  %zu/%zu requests done\n", done, n);
        }
      }
    });
  }
  for (size_t i = 0; i < n; ++i) {
    std::this_thread::sleep_until(origin + std::chrono::duration_cast<BenchClock::duration>(
                                               std::chrono::duration<double>(release_s[i])));
    queue.Push(i);
  }
  queue.Close();
  for (std::thread& t : threads) t.join();
  result.duration_s = std::chrono::duration<double>(BenchClock::now() - origin).count();
  return result;
}

}  // namespace sy::bench
