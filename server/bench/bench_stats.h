// Turns per-request records into the load-test summary, with the metric definitions of
// `vllm bench serve` so numbers compare: pure functions, no I/O, safe from any thread.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/status.h"
#include "server/bench/bench_record.h"

namespace sy::bench {

// Distribution of one latency metric, in milliseconds. Empty samples give all zeros, like vLLM's
// np.mean(x or 0).
struct MetricSummary {
  double mean_ms = 0;
  double median_ms = 0;
  double std_ms = 0;  // population standard deviation (numpy's default ddof=0)
  std::vector<std::pair<double, double>> percentiles_ms;  // (p, value)
};

struct BenchSummary {
  int64_t completed = 0;
  int64_t failed = 0;
  double duration_s = 0;
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  double request_throughput = 0;        // completed / duration
  double output_throughput = 0;         // output tokens / duration
  double total_token_throughput = 0;    // (input + output tokens) / duration
  double max_output_tokens_per_s = 0;   // busiest one-second bucket of token arrivals
  int64_t max_concurrent_requests = 0;  // peak overlap of successful requests
  MetricSummary ttft, tpot, itl, e2el;
  std::vector<int64_t> output_lens;  // per request, 0 for failures
};

// How the run was driven; printed in the table header and the JSON.
struct BenchRunInfo {
  std::string model;
  std::string url;
  int64_t num_prompts = 0;
  double request_rate = 0;  // +inf: all at once
  double burstiness = 1.0;
  std::optional<int64_t> max_concurrency;
};

// numpy.percentile(values, p) with its default linear interpolation; values need not be sorted.
// Empty input gives 0.
double Percentile(std::vector<double> values, double p);

// Parses "50,90,99" into {50, 90, 99}; each must lie in [0, 100].
StatusOr<std::vector<double>> ParsePercentiles(const std::string& text);

MetricSummary SummarizeMetric(const std::vector<double>& seconds,
                              const std::vector<double>& percentiles);

// Output tokens of one successful request: the server's usage count, else one per
// token-bearing chunk (we have no tokenizer to count the text with).
int64_t OutputTokens(const RequestRecord& r);

BenchSummary Summarize(const std::vector<RequestRecord>& records, double duration_s,
                       const std::vector<double>& percentiles);

// The human-readable report, laid out like vLLM's "Serving Benchmark Result".
std::string RenderTable(const BenchSummary& s, const BenchRunInfo& info);

// Summary keys follow vLLM's result JSON (mean_ttft_ms, p99_itl_ms, ...). With per_request,
// also the per-request lists (input_lens, output_lens, ttfts, latencies, errors).
nlohmann::json ToJson(const BenchSummary& s, const BenchRunInfo& info,
                      const std::vector<RequestRecord>* per_request);

}  // namespace sy::bench
