#include "server/bench/bench_stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <sstream>

namespace sy::bench {
namespace {

double Mean(const std::vector<double>& v) {
  if (v.empty()) return 0;
  return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
}

double StdDev(const std::vector<double>& v) {
  if (v.empty()) return 0;
  const double m = Mean(v);
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return std::sqrt(ss / static_cast<double>(v.size()));
}

// prefix + the percentile as vLLM writes it: 99 as "99", 99.9 as "99.9".
std::string PercentileWord(const char* prefix, double p) {
  char buf[48];
  if (p == std::floor(p)) {
    std::snprintf(buf, sizeof(buf), "%s%lld", prefix, static_cast<long long>(p));
  } else {
    std::snprintf(buf, sizeof(buf), "%s%g", prefix, p);
  }
  return buf;
}

// Peak tokens per one-second bucket and peak concurrency, as vLLM computes them: token
// arrival times are start + ttft + the running sum of the gaps.
void ComputePeaks(const std::vector<RequestRecord>& records, BenchSummary* s) {
  double min_start = INFINITY, max_end = -INFINITY;
  for (const RequestRecord& r : records) {
    if (!r.success) continue;
    min_start = std::min(min_start, r.start_s);
    max_end = std::max(max_end, r.start_s + r.latency_s);
  }
  if (!std::isfinite(min_start)) return;
  const auto buckets = static_cast<size_t>(std::ceil(max_end - min_start)) + 1;
  std::vector<double> tokens_per_s(buckets, 0);
  std::vector<std::pair<double, int>> events;
  for (const RequestRecord& r : records) {
    if (!r.success) continue;
    double t = r.start_s + r.ttft_s;
    auto add = [&](double at) {
      const double rel = at - min_start;
      if (rel >= 0 && static_cast<size_t>(rel) < buckets) tokens_per_s[static_cast<size_t>(rel)]++;
    };
    add(t);
    for (double gap : r.itl_s) add(t += gap);
    events.emplace_back(r.start_s, 1);
    events.emplace_back(r.start_s + r.latency_s, -1);
  }
  s->max_output_tokens_per_s = *std::max_element(tokens_per_s.begin(), tokens_per_s.end());
  // Half-open intervals: at equal times a departure (-1) sorts before an arrival (+1).
  std::sort(events.begin(), events.end());
  int64_t now = 0;
  for (const auto& [t, delta] : events) {
    now += delta;
    s->max_concurrent_requests = std::max(s->max_concurrent_requests, now);
  }
}

void AddMetricRows(std::ostringstream& out, const char* header, const char* name,
                   const MetricSummary& m) {
  char line[128];
  std::snprintf(line, sizeof(line), "%s\n", header);
  out << line;
  auto row = [&](const std::string& label, double v) {
    std::snprintf(line, sizeof(line), "%-40s %-10.2f\n", label.c_str(), v);
    out << line;
  };
  row(std::string("Mean ") + name + " (ms):", m.mean_ms);
  row(std::string("Median ") + name + " (ms):", m.median_ms);
  for (const auto& [p, v] : m.percentiles_ms)
    row(PercentileWord("P", p) + " " + name + " (ms):", v);
}

// Python's "{s:{c}^{n}}".format: extra padding goes to the right.
std::string Centered(const std::string& s, char fill, size_t width) {
  if (s.size() >= width) return s;
  const size_t pad = width - s.size();
  return std::string(pad / 2, fill) + s + std::string(pad - pad / 2, fill);
}

void AddMetricJson(nlohmann::json& j, const char* key, const MetricSummary& m) {
  const std::string k(key);
  j["mean_" + k + "_ms"] = m.mean_ms;
  j["median_" + k + "_ms"] = m.median_ms;
  j["std_" + k + "_ms"] = m.std_ms;
  for (const auto& [p, v] : m.percentiles_ms) j[PercentileWord("p", p) + "_" + k + "_ms"] = v;
}

}  // namespace

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = p / 100.0 * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - static_cast<double>(lo));
}

StatusOr<std::vector<double>> ParsePercentiles(const std::string& text) {
  std::vector<double> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const double p = std::strtod(item.c_str(), &end);
    if (item.empty() || end == item.c_str() || *end != '\0' || !(p >= 0 && p <= 100)) {
      return Status::InvalidArgument("bad percentile '" + item + "' (want numbers in [0, 100])");
    }
    out.push_back(p);
  }
  if (out.empty()) return Status::InvalidArgument("no percentiles given");
  return out;
}

MetricSummary SummarizeMetric(const std::vector<double>& seconds,
                              const std::vector<double>& percentiles) {
  MetricSummary m;
  m.mean_ms = Mean(seconds) * 1000;
  m.median_ms = Percentile(seconds, 50) * 1000;
  m.std_ms = StdDev(seconds) * 1000;
  for (double p : percentiles) m.percentiles_ms.emplace_back(p, Percentile(seconds, p) * 1000);
  return m;
}

int64_t OutputTokens(const RequestRecord& r) {
  return r.output_tokens > 0 ? r.output_tokens : r.chunks;
}

BenchSummary Summarize(const std::vector<RequestRecord>& records, double duration_s,
                       const std::vector<double>& percentiles) {
  BenchSummary s;
  s.duration_s = duration_s;
  std::vector<double> ttfts, tpots, itls, e2els;
  for (const RequestRecord& r : records) {
    if (!r.success) {
      s.failed++;
      s.output_lens.push_back(0);
      continue;
    }
    s.completed++;
    const int64_t out = OutputTokens(r);
    s.output_lens.push_back(out);
    s.total_output_tokens += out;
    s.total_input_tokens += r.prompt_len;
    // TPOT excludes the first token and is defined only when there is a second one.
    if (out > 1) tpots.push_back((r.latency_s - r.ttft_s) / static_cast<double>(out - 1));
    itls.insert(itls.end(), r.itl_s.begin(), r.itl_s.end());
    ttfts.push_back(r.ttft_s);
    e2els.push_back(r.latency_s);
  }
  if (duration_s > 0) {
    s.request_throughput = static_cast<double>(s.completed) / duration_s;
    s.output_throughput = static_cast<double>(s.total_output_tokens) / duration_s;
    s.total_token_throughput =
        static_cast<double>(s.total_input_tokens + s.total_output_tokens) / duration_s;
  }
  s.ttft = SummarizeMetric(ttfts, percentiles);
  s.tpot = SummarizeMetric(tpots, percentiles);
  s.itl = SummarizeMetric(itls, percentiles);
  s.e2el = SummarizeMetric(e2els, percentiles);
  ComputePeaks(records, &s);
  return s;
}

std::string RenderTable(const BenchSummary& s, const BenchRunInfo& info) {
  std::ostringstream out;
  char line[128];
  auto row_i = [&](const char* label, long long v) {
    std::snprintf(line, sizeof(line), "%-40s %-10lld\n", label, v);
    out << line;
  };
  auto row_f = [&](const char* label, double v) {
    std::snprintf(line, sizeof(line), "%-40s %-10.2f\n", label, v);
    out << line;
  };
  out << Centered(" Serving Benchmark Result ", '=', 50) << "\n";
  row_i("Successful requests:", s.completed);
  row_i("Failed requests:", s.failed);
  if (info.max_concurrency) row_i("Maximum request concurrency:", *info.max_concurrency);
  if (std::isfinite(info.request_rate)) row_f("Request rate configured (RPS):", info.request_rate);
  row_f("Benchmark duration (s):", s.duration_s);
  row_i("Total input tokens:", s.total_input_tokens);
  row_i("Total generated tokens:", s.total_output_tokens);
  row_f("Request throughput (req/s):", s.request_throughput);
  row_f("Output token throughput (tok/s):", s.output_throughput);
  row_f("Peak output token throughput (tok/s):", s.max_output_tokens_per_s);
  row_f("Peak concurrent requests:", static_cast<double>(s.max_concurrent_requests));
  row_f("Total token throughput (tok/s):", s.total_token_throughput);
  AddMetricRows(out, Centered("Time to First Token", '-', 50).c_str(), "TTFT", s.ttft);
  AddMetricRows(out, Centered("Time per Output Token (excl. 1st token)", '-', 50).c_str(), "TPOT",
                s.tpot);
  AddMetricRows(out, Centered("Inter-token Latency", '-', 50).c_str(), "ITL", s.itl);
  AddMetricRows(out, Centered("End-to-end Latency", '-', 50).c_str(), "E2EL", s.e2el);
  out << std::string(50, '=') << "\n";
  return out.str();
}

nlohmann::json ToJson(const BenchSummary& s, const BenchRunInfo& info,
                      const std::vector<RequestRecord>* per_request) {
  nlohmann::json j;
  j["model"] = info.model;
  j["url"] = info.url;
  j["num_prompts"] = info.num_prompts;
  j["request_rate"] =
      std::isfinite(info.request_rate) ? nlohmann::json(info.request_rate) : nlohmann::json("inf");
  j["burstiness"] = info.burstiness;
  j["max_concurrency"] =
      info.max_concurrency ? nlohmann::json(*info.max_concurrency) : nlohmann::json(nullptr);
  j["duration"] = s.duration_s;
  j["completed"] = s.completed;
  j["failed"] = s.failed;
  j["total_input_tokens"] = s.total_input_tokens;
  j["total_output_tokens"] = s.total_output_tokens;
  j["request_throughput"] = s.request_throughput;
  j["output_throughput"] = s.output_throughput;
  j["total_token_throughput"] = s.total_token_throughput;
  j["max_output_tokens_per_s"] = s.max_output_tokens_per_s;
  j["max_concurrent_requests"] = s.max_concurrent_requests;
  AddMetricJson(j, "ttft", s.ttft);
  AddMetricJson(j, "tpot", s.tpot);
  AddMetricJson(j, "itl", s.itl);
  AddMetricJson(j, "e2el", s.e2el);
  if (per_request != nullptr) {
    nlohmann::json input_lens = nlohmann::json::array(), ttfts = nlohmann::json::array(),
                   latencies = nlohmann::json::array(), errors = nlohmann::json::array();
    for (const RequestRecord& r : *per_request) {
      input_lens.push_back(r.prompt_len);
      ttfts.push_back(r.ttft_s);
      latencies.push_back(r.latency_s);
      errors.push_back(r.error);
    }
    j["input_lens"] = std::move(input_lens);
    j["output_lens"] = s.output_lens;
    j["ttfts"] = std::move(ttfts);
    j["latencies"] = std::move(latencies);
    j["errors"] = std::move(errors);
  }
  return j;
}

}  // namespace sy::bench
