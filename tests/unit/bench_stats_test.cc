// Load-test statistics, datasets and SSE parsing against hand-worked expectations (numpy's
// linear-interpolation percentiles and vLLM's metric definitions worked out on paper).
#include "server/bench/bench_stats.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "server/bench/bench_client.h"
#include "server/bench/bench_dataset.h"
#include "server/bench/bench_runner.h"

namespace sy::bench {
namespace {

TEST(BenchPercentile, MatchesNumpyLinearInterpolation) {
  // numpy: rank = p/100 * (n-1), interpolate between the neighbours.
  const std::vector<double> v = {4, 1, 3, 2};  // unsorted on purpose
  EXPECT_DOUBLE_EQ(Percentile(v, 0), 1);
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);   // rank 1.5
  EXPECT_DOUBLE_EQ(Percentile(v, 90), 3.7);   // rank 2.7
  EXPECT_DOUBLE_EQ(Percentile(v, 99), 3.97);  // rank 2.97
  EXPECT_DOUBLE_EQ(Percentile(v, 100), 4);
  EXPECT_DOUBLE_EQ(Percentile({5}, 99), 5);
  EXPECT_DOUBLE_EQ(Percentile({}, 50), 0);
  EXPECT_NEAR(Percentile({100, 200, 300}, 99.9), 299.8, 1e-9);  // rank 1.998
}

TEST(BenchPercentile, ParsesList) {
  auto p = ParsePercentiles("50,90,99.9");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, (std::vector<double>{50, 90, 99.9}));
  EXPECT_FALSE(ParsePercentiles("50,abc").ok());
  EXPECT_FALSE(ParsePercentiles("101").ok());
  EXPECT_FALSE(ParsePercentiles("50,,90").ok());
  EXPECT_FALSE(ParsePercentiles("").ok());
}

RequestRecord Ok(double start, double ttft, std::vector<double> itl, int64_t usage_tokens,
                 int64_t prompt) {
  RequestRecord r;
  r.success = true;
  r.http_status = 200;
  r.start_s = start;
  r.ttft_s = ttft;
  r.itl_s = std::move(itl);
  r.latency_s = ttft;
  for (double g : r.itl_s) r.latency_s += g;
  r.chunks = static_cast<int64_t>(r.itl_s.size()) + 1;
  r.output_tokens = usage_tokens;
  r.prompt_len = prompt;
  return r;
}

// A: ttft 0.1, gaps 20/30/50 ms, 4 tokens by usage, 10 prompt tokens, latency 0.2.
// B: ttft 0.3, one gap of 100 ms, no usage (2 chunks count as 2 tokens), 20 prompt tokens.
// C: starts at 1.5, one token, 5 prompt tokens: no TPOT.  D: a 503.
std::vector<RequestRecord> HandWorkedRecords() {
  RequestRecord failed;
  failed.http_status = 503;
  failed.error = "HTTP 503: queue full";
  failed.prompt_len = 99;
  return {Ok(0.0, 0.1, {0.02, 0.03, 0.05}, 4, 10), Ok(0.05, 0.3, {0.1}, 0, 20),
          Ok(1.5, 0.2, {}, 1, 5), failed};
}

TEST(BenchSummary, HandWorkedMetrics) {
  const BenchSummary s = Summarize(HandWorkedRecords(), 2.0, {50, 90, 99});
  EXPECT_EQ(s.completed, 3);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.total_input_tokens, 35);  // the failed request's prompt is not counted
  EXPECT_EQ(s.total_output_tokens, 7);  // 4 + 2 + 1
  EXPECT_EQ(s.output_lens, (std::vector<int64_t>{4, 2, 1, 0}));
  EXPECT_DOUBLE_EQ(s.request_throughput, 1.5);
  EXPECT_DOUBLE_EQ(s.output_throughput, 3.5);
  EXPECT_DOUBLE_EQ(s.total_token_throughput, 21.0);

  // TTFT {100, 300, 200} ms.
  EXPECT_NEAR(s.ttft.mean_ms, 200, 1e-9);
  EXPECT_NEAR(s.ttft.median_ms, 200, 1e-9);
  EXPECT_NEAR(s.ttft.std_ms, std::sqrt(20000.0 / 3.0), 1e-9);
  ASSERT_EQ(s.ttft.percentiles_ms.size(), 3u);
  EXPECT_EQ(s.ttft.percentiles_ms[1].first, 90);
  EXPECT_NEAR(s.ttft.percentiles_ms[1].second, 280, 1e-9);
  EXPECT_NEAR(s.ttft.percentiles_ms[2].second, 298, 1e-9);

  // TPOT: A (0.2 - 0.1) / 3 = 33.33 ms, B (0.4 - 0.3) / 1 = 100 ms, C has one token.
  const double a = 100.0 / 3.0;
  EXPECT_NEAR(s.tpot.mean_ms, (a + 100) / 2, 1e-9);
  EXPECT_NEAR(s.tpot.median_ms, (a + 100) / 2, 1e-9);
  EXPECT_NEAR(s.tpot.percentiles_ms[1].second, a + 0.9 * (100 - a), 1e-9);
  EXPECT_NEAR(s.tpot.percentiles_ms[2].second, a + 0.99 * (100 - a), 1e-9);

  // ITL pools every gap: {20, 30, 50, 100} ms.
  EXPECT_NEAR(s.itl.mean_ms, 50, 1e-9);
  EXPECT_NEAR(s.itl.median_ms, 40, 1e-9);
  EXPECT_NEAR(s.itl.percentiles_ms[1].second, 85, 1e-9);
  EXPECT_NEAR(s.itl.percentiles_ms[2].second, 98.5, 1e-9);

  // E2EL {200, 400, 200} ms.
  EXPECT_NEAR(s.e2el.mean_ms, 800.0 / 3.0, 1e-9);
  EXPECT_NEAR(s.e2el.median_ms, 200, 1e-9);
  EXPECT_NEAR(s.e2el.percentiles_ms[1].second, 360, 1e-9);
  EXPECT_NEAR(s.e2el.percentiles_ms[2].second, 396, 1e-9);

  // Token arrivals: A at 0.1/0.12/0.15/0.2, B at 0.35/0.45 (second 0), C at 1.7 (second 1).
  EXPECT_DOUBLE_EQ(s.max_output_tokens_per_s, 6);
  EXPECT_EQ(s.max_concurrent_requests, 2);  // A and B overlap; C runs alone
}

TEST(BenchSummary, BackToBackRequestsDoNotOverlap) {
  // [0, 1) and [1, 2): half-open, so the peak is 1.
  const BenchSummary s = Summarize({Ok(0, 1, {}, 1, 1), Ok(1, 1, {}, 1, 1)}, 2, {50});
  EXPECT_EQ(s.max_concurrent_requests, 1);
}

TEST(BenchSummary, NoSuccessGivesZeros) {
  RequestRecord failed;
  failed.error = "refused";
  const BenchSummary s = Summarize({failed}, 1.0, {99});
  EXPECT_EQ(s.completed, 0);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.ttft.mean_ms, 0);
  EXPECT_EQ(s.ttft.percentiles_ms[0].second, 0);
  EXPECT_EQ(s.max_concurrent_requests, 0);
}

TEST(BenchReport, TableAndJsonFollowVllmLayout) {
  const auto records = HandWorkedRecords();
  const BenchSummary s = Summarize(records, 2.0, {50, 99.9});
  BenchRunInfo info;
  info.model = "m";
  info.request_rate = 4;
  info.max_concurrency = 8;
  const std::string table = RenderTable(s, info);
  // "{:<40} {:<10}" rows and a 50-wide centred title.
  EXPECT_NE(table.find("============ Serving Benchmark Result ============\n"), std::string::npos);
  EXPECT_NE(table.find("Successful requests:                     3         \n"), std::string::npos);
  EXPECT_NE(table.find("Request rate configured (RPS):           4.00      \n"), std::string::npos);
  EXPECT_NE(table.find("Maximum request concurrency:             8         \n"), std::string::npos);
  EXPECT_NE(table.find("Mean TTFT (ms):                          200.00    \n"), std::string::npos);
  EXPECT_NE(table.find("P99.9 TTFT (ms):"), std::string::npos);
  EXPECT_NE(table.find("Median ITL (ms):                         40.00     \n"), std::string::npos);

  const nlohmann::json j = ToJson(s, info, &records);
  EXPECT_EQ(j["completed"], 3);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_NEAR(j["mean_ttft_ms"].get<double>(), 200, 1e-9);
  EXPECT_NEAR(j["p50_itl_ms"].get<double>(), 40, 1e-9);
  EXPECT_TRUE(j.contains("p99.9_e2el_ms"));
  EXPECT_EQ(j["errors"][3], "HTTP 503: queue full");
  EXPECT_EQ(j["output_lens"], nlohmann::json({4, 2, 1, 0}));
  EXPECT_FALSE(ToJson(s, info, nullptr).contains("errors"));
  info.request_rate = INFINITY;
  EXPECT_EQ(ToJson(s, info, nullptr)["request_rate"], "inf");
}

std::vector<std::string> ParseAll(const std::vector<std::string>& pieces) {
  std::vector<std::string> events;
  SseParser p([&](const std::string& d) { events.push_back(d); });
  for (const std::string& piece : pieces) p.Feed(piece);
  p.Finish();
  return events;
}

TEST(BenchSse, SameEventsWhereverTheBodyIsSplit) {
  const std::string body =
      ": ping\n\n"
      "data: {\"choices\":[{\"text\":\"a\\n\"}]}\r\n\r\n"
      "event: x\ndata:{\"n\":2}\n\n"
      "data: line1\ndata: line2\n\n"
      "data: [DONE]\n\n";
  const std::vector<std::string> want = {"{\"choices\":[{\"text\":\"a\\n\"}]}", "{\"n\":2}",
                                         "line1\nline2", "[DONE]"};
  EXPECT_EQ(ParseAll({body}), want);
  for (size_t i = 0; i <= body.size(); ++i) {
    for (size_t j = i; j <= body.size(); j += 7) {
      ASSERT_EQ(ParseAll({body.substr(0, i), body.substr(i, j - i), body.substr(j)}), want)
          << "split at " << i << " and " << j;
    }
  }
  // Byte by byte, including between "\r" and "\n".
  std::vector<std::string> bytes;
  for (char c : body) bytes.emplace_back(1, c);
  EXPECT_EQ(ParseAll(bytes), want);
}

TEST(BenchSse, UnterminatedLastEventIsDeliveredAtEnd) {
  EXPECT_EQ(ParseAll({"data: a\n\ndata: b"}), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(ParseAll({"data: a\n"}), (std::vector<std::string>{"a"}));
  EXPECT_TRUE(ParseAll({"\n\n: only a comment\n"}).empty());
}

TEST(BenchUrl, SplitsOriginAndPrefix) {
  auto u = ParseBaseUrl("http://127.0.0.1:8000/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->origin, "http://127.0.0.1:8000");
  EXPECT_EQ(u->prefix, "");
  u = ParseBaseUrl("http://host/proxy/api/");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->origin, "http://host");
  EXPECT_EQ(u->prefix, "/proxy/api");
  EXPECT_FALSE(ParseBaseUrl("127.0.0.1:8000").ok());
  EXPECT_FALSE(ParseBaseUrl("ftp://x").ok());
  EXPECT_FALSE(ParseBaseUrl("http://").ok());
}

TEST(BenchShareGpt, KeepsFirstHumanTurnAndItsAnswer) {
  std::istringstream in(R"([
    {"id": "a", "conversations": [{"from": "human", "value": "hello there"},
                                  {"from": "gpt", "value": "general kenobi"},
                                  {"from": "human", "value": "ignored"}]},
    {"id": "b", "conversations": [{"from": "gpt", "value": "system-ish"},
                                  {"value": "q2", "from": "human", "extra": [1, {"v": "x"}]},
                                  {"from": "gpt", "value": "a2"}]},
    {"id": "c", "conversations": [{"from": "human", "value": "no answer"}]},
    {"id": "d", "other": {"conversations": [{"from": "human", "value": "nested"},
                                            {"from": "gpt", "value": "nope"}]}},
    {"id": "e", "conversations": []}
  ])");
  auto pairs = ParseShareGpt(in);
  ASSERT_TRUE(pairs.ok()) << pairs.status().ToString();
  ASSERT_EQ(pairs->size(), 2u);
  EXPECT_EQ((*pairs)[0].prompt, "hello there");
  EXPECT_EQ((*pairs)[0].completion, "general kenobi");
  EXPECT_EQ((*pairs)[1].prompt, "q2");
  EXPECT_EQ((*pairs)[1].completion, "a2");

  std::istringstream bad("[{\"conversations\": [");
  EXPECT_FALSE(ParseShareGpt(bad).ok());
  std::istringstream not_list("{\"conversations\": []}");
  EXPECT_FALSE(ParseShareGpt(not_list).ok());
  EXPECT_FALSE(LoadShareGpt("/nonexistent/sharegpt.json").ok());
}

TEST(BenchShareGpt, FiltersLikeVllmAndCycles) {
  const std::string p16(16, 'p');  // 4 estimated tokens
  const std::vector<ShareGptPair> pairs = {
      {p16, std::string(40, 'c')},     // kept: 4 prompt, 10 output tokens
      {"hi", std::string(40, 'c')},    // prompt 1 token < 4: dropped
      {p16, "ok"},                     // output 1 token < 4: dropped unless output fixed
      {std::string(5000, 'p'), "x"}};  // prompt 1250 > 1024: always dropped
  EXPECT_EQ(EstimateTokens("abcde"), 2);
  EXPECT_EQ(EstimateTokens(""), 1);
  const TokenCounter estimate = [](const std::string& t) -> StatusOr<int64_t> {
    return EstimateTokens(t);
  };
  ShareGptOptions o;
  o.num_prompts = 3;
  auto reqs = MakeShareGptRequests(pairs, o, estimate);
  ASSERT_TRUE(reqs.ok());
  ASSERT_EQ(reqs->size(), 3u);  // the one usable pair, cycled
  for (const BenchRequest& r : *reqs) {
    EXPECT_EQ(r.prompt, p16);
    EXPECT_EQ(r.prompt_len, 4);
    EXPECT_EQ(r.output_len, 10);
  }
  o.output_len = 7;
  o.num_prompts = 2;
  reqs = MakeShareGptRequests(pairs, o, estimate);
  ASSERT_TRUE(reqs.ok());
  for (const BenchRequest& r : *reqs) {
    EXPECT_EQ(r.output_len, 7);
    EXPECT_EQ(r.prompt, p16);  // both 16-char prompts now qualify
  }
  const TokenCounter broken = [](const std::string&) -> StatusOr<int64_t> {
    return Status::Unavailable("tokenizer down");
  };
  EXPECT_FALSE(MakeShareGptRequests(pairs, o, broken).ok());
  EXPECT_FALSE(MakeShareGptRequests({{"hi", "yo"}}, ShareGptOptions{}, estimate).ok());
}

TEST(BenchRandom, LengthsAndIdsInRange) {
  RandomDatasetOptions o;
  o.num_prompts = 200;
  o.input_len = 100;
  o.output_len = 10;
  o.range_ratio = 0.25;
  o.vocab_size = 50;
  o.seed = 7;
  auto reqs = MakeRandomRequests(o);
  ASSERT_TRUE(reqs.ok());
  ASSERT_EQ(reqs->size(), 200u);
  std::set<int64_t> input_lens;
  for (const BenchRequest& r : *reqs) {
    ASSERT_TRUE(r.prompt.is_array());
    EXPECT_EQ(static_cast<int64_t>(r.prompt.size()), r.prompt_len);
    EXPECT_GE(r.prompt_len, 75);  // floor(100 * 0.75)
    EXPECT_LE(r.prompt_len, 125);
    EXPECT_GE(r.output_len, 7);   // floor(7.5)
    EXPECT_LE(r.output_len, 13);  // ceil(12.5)
    for (const auto& id : r.prompt) {
      EXPECT_GE(id.get<int64_t>(), 0);
      EXPECT_LT(id.get<int64_t>(), 50);
    }
    input_lens.insert(r.prompt_len);
  }
  EXPECT_GT(input_lens.size(), 10u);  // the lengths really vary
  auto again = MakeRandomRequests(o);
  EXPECT_EQ((*again)[5].prompt, (*reqs)[5].prompt);  // the seed fixes the prompts

  o.range_ratio = 0;
  reqs = MakeRandomRequests(o);
  for (const BenchRequest& r : *reqs) {
    EXPECT_EQ(r.prompt_len, 100);
    EXPECT_EQ(r.output_len, 10);
  }
  o.range_ratio = 1.0;
  EXPECT_FALSE(MakeRandomRequests(o).ok());
  o.range_ratio = 0;
  o.vocab_size = 0;
  EXPECT_FALSE(MakeRandomRequests(o).ok());
}

TEST(BenchArrivals, PoissonGapsHaveMeanOneOverRate) {
  std::mt19937_64 rng(1234);
  const int n = 40000;
  const double rate = 4;
  double sum = 0, sum_sq = 0;
  for (int i = 0; i < n; ++i) {
    const double g = SampleInterArrival(rate, 1.0, rng);
    ASSERT_GE(g, 0);
    sum += g;
    sum_sq += g * g;
  }
  const double mean = sum / n, var = sum_sq / n - mean * mean;
  EXPECT_NEAR(mean, 0.25, 0.25 * 0.03);
  EXPECT_NEAR(var, 0.0625, 0.0625 * 0.08);  // exponential: variance = mean^2

  // Gamma with shape 0.5 keeps the mean and doubles the variance: 1 / (rate^2 * k).
  sum = sum_sq = 0;
  for (int i = 0; i < n; ++i) {
    const double g = SampleInterArrival(rate, 0.5, rng);
    sum += g;
    sum_sq += g * g;
  }
  EXPECT_NEAR(sum / n, 0.25, 0.25 * 0.04);
  EXPECT_NEAR(sum_sq / n - (sum / n) * (sum / n), 0.125, 0.125 * 0.12);
  EXPECT_EQ(SampleInterArrival(INFINITY, 1.0, rng), 0);
  EXPECT_EQ(SampleInterArrival(2, INFINITY, rng), 0.5);
}

TEST(BenchArrivals, ScheduleEndsAtNOverRate) {
  const auto at = ArrivalSchedule(100, 10, 1.0, 3);
  ASSERT_EQ(at.size(), 100u);
  for (size_t i = 1; i < at.size(); ++i) EXPECT_GE(at[i], at[i - 1]);
  EXPECT_NEAR(at.back(), 10.0, 1e-9);
  EXPECT_GT(at.front(), 0);
  EXPECT_EQ(ArrivalSchedule(100, 10, 1.0, 3), at);  // deterministic for a seed
  EXPECT_NE(ArrivalSchedule(100, 10, 1.0, 4), at);
  for (double t : ArrivalSchedule(5, INFINITY, 1.0, 3)) EXPECT_EQ(t, 0);
}

}  // namespace
}  // namespace sy::bench
