// Drives a load test: when each request is released (all at once, or a Poisson/gamma arrival
// process as in `vllm bench serve`) and how many may be in flight (closed loop of N clients, or
// an open loop with an optional cap). RunLoad blocks; it owns its worker threads.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "server/bench/bench_client.h"
#include "server/bench/bench_dataset.h"
#include "server/bench/bench_record.h"

namespace sy::bench {

// One gap of the arrival process: exponential with mean 1/rate when burstiness is 1 (Poisson),
// else gamma with shape burstiness and the same mean; 0 when rate is infinite.
double SampleInterArrival(double rate, double burstiness, std::mt19937_64& rng);

// Release times, in seconds from the start, of n requests: cumulative gaps, rescaled (as vLLM
// does) so the last release lands at exactly n / rate and runs with different seeds compare.
std::vector<double> ArrivalSchedule(int64_t n, double rate, double burstiness, uint64_t seed);

struct LoadOptions {
  // Requests per second; infinite releases all at once.
  double request_rate = std::numeric_limits<double>::infinity();
  double burstiness = 1.0;
  // At most this many requests in flight; the rest wait client-side. Unset: no cap.
  std::optional<int64_t> max_concurrency;
  uint64_t seed = 0;
  bool show_progress = false;  // a line on stderr every 10% of requests
};

// Sends one request and measures it; times are relative to origin.
using SendFn = std::function<RequestRecord(const BenchRequest&, BenchClock::time_point origin)>;
// Makes the sender of one worker thread (each gets its own connection).
using SendFnFactory = std::function<SendFn()>;

struct LoadResult {
  std::vector<RequestRecord> records;  // in request order
  double duration_s = 0;               // first release to last completion
};

LoadResult RunLoad(const std::vector<BenchRequest>& requests, const LoadOptions& opts,
                   const SendFnFactory& make_sender);

}  // namespace sy::bench
