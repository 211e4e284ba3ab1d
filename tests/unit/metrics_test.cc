// Metrics: hand-made step and request statistics in, Prometheus text out. Expected counts, sums
// and bucket counts are worked out by hand from the inputs below.
#include "server/metrics/metrics.h"

#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace sy {
namespace {

// One sample line: name{k="v",...} value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

std::vector<Sample> ParseSamples(const std::string& text) {
  static const std::regex kLine(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$)");
  static const std::regex kLabel(R"re(([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)")re");
  std::vector<Sample> samples;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::smatch m;
    EXPECT_TRUE(std::regex_match(line, m, kLine)) << "malformed sample line: " << line;
    if (m.empty()) continue;
    Sample s{m[1], {}, std::stod(m[4])};
    const std::string labels = m[3];
    for (std::sregex_iterator it(labels.begin(), labels.end(), kLabel), end; it != end; ++it) {
      s.labels[(*it)[1]] = (*it)[2];
    }
    samples.push_back(std::move(s));
  }
  return samples;
}

class MetricsTest : public ::testing::Test {
 protected:
  // The value of the one sample with this name whose labels include `labels` (model_name is
  // added). Fails the test when there is not exactly one; `le` is compared as a number.
  double Value(const std::string& name, std::map<std::string, std::string> labels = {}) {
    labels["model_name"] = "tiny";
    int found = 0;
    double value = 0;
    for (const Sample& s : samples_) {
      if (s.name != name) continue;
      bool match = true;
      for (const auto& [k, v] : labels) {
        auto it = s.labels.find(k);
        if (it == s.labels.end()) {
          match = false;
        } else if (k == "le") {
          match = match && std::stod(it->second) == std::stod(v);
        } else {
          match = match && it->second == v;
        }
      }
      if (!match || s.labels.size() != labels.size()) continue;
      ++found;
      value = s.value;
    }
    EXPECT_EQ(found, 1) << name;
    return value;
  }
  void Render(const EngineSnapshot& snapshot) {
    text_ = metrics_.Render(snapshot);
    samples_ = ParseSamples(text_);
  }

  Metrics metrics_{MetricsOptions{"tiny", 4, {false, true, true}}};
  std::string text_;
  std::vector<Sample> samples_;
};

RequestStats Finished(FinishReason reason, int32_t prompt, int32_t generated, double queue,
                      double ttft, double e2e, std::vector<double> itl) {
  RequestStats r;
  r.finish_reason = reason;
  r.choice_finish_reasons = {reason};
  r.prompt_tokens = prompt;
  r.generation_tokens = generated;
  r.queue_seconds = queue;
  r.ttft_seconds = ttft;
  r.e2e_seconds = e2e;
  r.inter_token_seconds = std::move(itl);
  return r;
}

void FeedRequests(Metrics& m) {
  m.OnRequestFinished(
      Finished(FinishReason::kStop, 10, 5, 0.002, 0.03, 0.5, {0.004, 0.02, 0.2, 0.02}));
  m.OnRequestFinished(Finished(FinishReason::kLength, 7, 3, 0.4, 1.2, 3.0, {0.06, 0.06}));
  m.OnRequestFinished(Finished(FinishReason::kAbort, 4, 0, 0.05, -1, 0.05, {}));
}

TEST_F(MetricsTest, RequestCountersAndHistograms) {
  FeedRequests(metrics_);
  Render({});
  for (const char* prefix : {"switchyard_", "vllm:"}) {
    const std::string p = prefix;
    EXPECT_EQ(Value(p + "prompt_tokens_total"), 21);
    EXPECT_EQ(Value(p + "generation_tokens_total"), 8);
    EXPECT_EQ(Value(p + "request_success_total", {{"finished_reason", "stop"}}), 1);
    EXPECT_EQ(Value(p + "request_success_total", {{"finished_reason", "length"}}), 1);
    EXPECT_EQ(Value(p + "request_success_total", {{"finished_reason", "abort"}}), 1);
    EXPECT_EQ(Value(p + "request_success_total", {{"finished_reason", "error"}}), 0);

    // TTFT: 0.03 and 1.2 (the aborted request produced no token). Same buckets in both.
    const std::string ttft = p + "time_to_first_token_seconds";
    EXPECT_EQ(Value(ttft + "_count"), 2);
    EXPECT_DOUBLE_EQ(Value(ttft + "_sum"), 1.23);
    EXPECT_EQ(Value(ttft + "_bucket", {{"le", "0.02"}}), 0);
    EXPECT_EQ(Value(ttft + "_bucket", {{"le", "0.04"}}), 1);
    EXPECT_EQ(Value(ttft + "_bucket", {{"le", "1"}}), 1);
    EXPECT_EQ(Value(ttft + "_bucket", {{"le", "2.5"}}), 2);
    EXPECT_EQ(Value(ttft + "_bucket", {{"le", "+Inf"}}), 2);

    // Inter-token gaps: 0.004, 0.02, 0.2, 0.02, 0.06, 0.06.
    const std::string itl = p + "inter_token_latency_seconds";
    EXPECT_EQ(Value(itl + "_count"), 6);
    EXPECT_NEAR(Value(itl + "_sum"), 0.364, 1e-12);
    EXPECT_EQ(Value(itl + "_bucket", {{"le", "0.01"}}), 1);
    EXPECT_EQ(Value(itl + "_bucket", {{"le", "0.025"}}), 3);
    EXPECT_EQ(Value(itl + "_bucket", {{"le", "0.05"}}), 3);
    EXPECT_EQ(Value(itl + "_bucket", {{"le", "0.075"}}), 5);
    EXPECT_EQ(Value(itl + "_bucket", {{"le", "0.15"}}), 5);
    EXPECT_EQ(Value(itl + "_bucket", {{"le", "0.2"}}), 6);  // upper bounds are inclusive

    // End to end: 0.5, 3.0, 0.05.
    const std::string e2e = p + "e2e_request_latency_seconds";
    EXPECT_EQ(Value(e2e + "_count"), 3);
    EXPECT_DOUBLE_EQ(Value(e2e + "_sum"), 3.55);
    EXPECT_EQ(Value(e2e + "_bucket", {{"le", "0.3"}}), 1);
    EXPECT_EQ(Value(e2e + "_bucket", {{"le", "0.5"}}), 2);
    EXPECT_EQ(Value(e2e + "_bucket", {{"le", "2.5"}}), 2);
    EXPECT_EQ(Value(e2e + "_bucket", {{"le", "5"}}), 3);

    // Queue: 0.002, 0.4, 0.05.
    const std::string queue = p + "request_queue_time_seconds";
    EXPECT_EQ(Value(queue + "_count"), 3);
    EXPECT_DOUBLE_EQ(Value(queue + "_sum"), 0.452);
    EXPECT_EQ(Value(queue + "_bucket", {{"le", "0.3"}}), 2);
    EXPECT_EQ(Value(queue + "_bucket", {{"le", "0.5"}}), 3);
  }
  // Our buckets reach below vLLM's smallest ones.
  EXPECT_EQ(Value("switchyard_inter_token_latency_seconds_bucket", {{"le", "0.001"}}), 0);
  EXPECT_EQ(Value("switchyard_inter_token_latency_seconds_bucket", {{"le", "0.005"}}), 1);
  EXPECT_EQ(Value("switchyard_request_queue_time_seconds_bucket", {{"le", "0.001"}}), 0);
  EXPECT_EQ(Value("switchyard_request_queue_time_seconds_bucket", {{"le", "0.005"}}), 1);
  EXPECT_EQ(Value("switchyard_request_queue_time_seconds_bucket", {{"le", "0.05"}}), 2);
  // vLLM's older per-token name carries the same observations.
  EXPECT_EQ(Value("vllm:time_per_output_token_seconds_count"), 6);
  EXPECT_EQ(Value("vllm:time_per_output_token_seconds_bucket", {{"le", "0.025"}}), 3);
}

TEST_F(MetricsTest, StepsAndExpertLoad) {
  StepStats a;
  a.step_seconds = 0.003;
  a.num_prefill_tokens = 12;
  a.num_decode_tokens = 4;
  a.expert_tokens = {{}, {3, 1, 0, 0}, {1, 1, 1, 1}};  // imbalance 3/1 = 3 and 1/1 = 1
  StepStats b;
  b.step_seconds = 0.02;
  b.num_decode_tokens = 2;
  b.expert_tokens = {{}, {0, 0, 0, 0}, {2, 0, 0, 0}};  // layer 1 idle; layer 2: 2/0.5 = 4
  metrics_.OnStep(a);
  metrics_.OnStep(b);
  Render({});

  EXPECT_EQ(Value("switchyard_engine_step_seconds_count"), 2);
  EXPECT_DOUBLE_EQ(Value("switchyard_engine_step_seconds_sum"), 0.023);
  EXPECT_EQ(Value("switchyard_engine_step_seconds_bucket", {{"le", "0.0025"}}), 0);
  EXPECT_EQ(Value("switchyard_engine_step_seconds_bucket", {{"le", "0.005"}}), 1);
  EXPECT_EQ(Value("switchyard_engine_step_seconds_bucket", {{"le", "0.025"}}), 2);
  for (const char* name : {"switchyard_engine_step_tokens", "vllm:iteration_tokens_total"}) {
    const std::string n = name;
    EXPECT_EQ(Value(n + "_count"), 2);
    EXPECT_EQ(Value(n + "_sum"), 18);
    EXPECT_EQ(Value(n + "_bucket", {{"le", "1"}}), 0);
    EXPECT_EQ(Value(n + "_bucket", {{"le", "8"}}), 1);
    EXPECT_EQ(Value(n + "_bucket", {{"le", "16"}}), 2);
  }

  const std::string routed = "switchyard_moe_routed_tokens_total";
  auto at = [&](int layer, int expert) {
    return Value(routed, {{"layer", std::to_string(layer)}, {"expert", std::to_string(expert)}});
  };
  EXPECT_EQ(at(1, 0), 3);
  EXPECT_EQ(at(1, 1), 1);
  EXPECT_EQ(at(1, 2), 0);  // series exist from the start for every MoE layer's experts
  EXPECT_EQ(at(2, 0), 3);
  EXPECT_EQ(at(2, 3), 1);
  int layer0 = 0;
  int series = 0;
  for (const Sample& s : samples_) {
    if (s.name != routed) continue;
    ++series;
    if (s.labels.at("layer") == "0") ++layer0;
  }
  EXPECT_EQ(layer0, 0);  // dense layer: no series
  EXPECT_EQ(series, 8);

  const std::string imb = "switchyard_moe_expert_load_imbalance";
  EXPECT_EQ(Value(imb + "_count"), 3);
  EXPECT_DOUBLE_EQ(Value(imb + "_sum"), 8.0);
  EXPECT_EQ(Value(imb + "_bucket", {{"le", "1"}}), 1);
  EXPECT_EQ(Value(imb + "_bucket", {{"le", "2.5"}}), 1);
  EXPECT_EQ(Value(imb + "_bucket", {{"le", "3"}}), 2);
  EXPECT_EQ(Value(imb + "_bucket", {{"le", "4"}}), 3);
}

TEST_F(MetricsTest, GaugesAndSnapshotCountersCountEachDeltaOnce) {
  EngineSnapshot s;
  s.num_running = 3;
  s.num_waiting = 2;
  s.kv_blocks_total = 100;
  s.block_size = 16;
  s.kv_blocks_used = 25;
  s.kv_usage = 0.25;
  s.prefix_cache_queries = 200;
  s.prefix_cache_hits = 50;
  s.num_preemptions = 4;
  metrics_.OnPreemption(2);  // counted from the snapshot, not here
  Render(s);
  for (const char* prefix : {"switchyard_", "vllm:"}) {
    const std::string p = prefix;
    EXPECT_EQ(Value(p + "num_requests_running"), 3);
    EXPECT_EQ(Value(p + "num_requests_waiting"), 2);
    EXPECT_EQ(Value(p + "num_preemptions_total"), 4);
    EXPECT_EQ(Value(p + "prefix_cache_queries_total"), 200);
    EXPECT_EQ(Value(p + "prefix_cache_hits_total"), 50);
  }
  EXPECT_EQ(Value("switchyard_kv_cache_usage_ratio"), 0.25);
  EXPECT_EQ(Value("vllm:kv_cache_usage_perc"), 0.25);
  EXPECT_EQ(Value("vllm:gpu_cache_usage_perc"), 0.25);
  EXPECT_EQ(Value("switchyard_kv_cache_blocks_used"), 25);
  EXPECT_EQ(Value("switchyard_kv_cache_blocks_total"), 100);
  EXPECT_EQ(Value("switchyard_prefix_cache_hit_ratio"), 0.25);
  // The Gateway API Inference Extension's endpoint picker reads the pool's shape from the labels.
  EXPECT_EQ(Value("vllm:cache_config_info", {{"block_size", "16"}, {"num_gpu_blocks", "100"}}), 1);

  // A second scrape adds only what the snapshot gained since the first.
  s.num_running = 0;
  s.prefix_cache_queries = 300;
  s.prefix_cache_hits = 150;
  Render(s);
  Render(s);
  EXPECT_EQ(Value("switchyard_num_requests_running"), 0);
  EXPECT_EQ(Value("switchyard_num_preemptions_total"), 4);
  EXPECT_EQ(Value("vllm:prefix_cache_queries_total"), 300);
  EXPECT_EQ(Value("vllm:prefix_cache_hits_total"), 150);
  EXPECT_EQ(Value("switchyard_prefix_cache_hit_ratio"), 0.5);
}

// Before the engine has loaded (an empty snapshot) the pool is unknown: no cache-config series.
TEST_F(MetricsTest, CacheConfigInfoOnlyOnceThePoolIsKnown) {
  Render({});
  for (const Sample& s : samples_) EXPECT_NE(s.name, "vllm:cache_config_info");
  EngineSnapshot s;
  s.kv_blocks_total = 64;
  s.block_size = 32;
  Render(s);
  Render(s);
  EXPECT_EQ(Value("vllm:cache_config_info", {{"block_size", "32"}, {"num_gpu_blocks", "64"}}), 1);
}

TEST_F(MetricsTest, ExpertParallelCounters) {
  EngineSnapshot s;
  s.num_ranks = 4;
  s.num_rebalances = 2;
  s.experts_moved = 9;
  Render(s);
  Render(s);
  EXPECT_EQ(Value("switchyard_ep_ranks"), 4);
  EXPECT_EQ(Value("switchyard_ep_rebalances_total"), 2);
  EXPECT_EQ(Value("switchyard_ep_experts_moved_total"), 9);
}

TEST_F(MetricsTest, RebalanceFailuresFromSnapshotCountedOnce) {
  EngineSnapshot s;
  Render(s);
  EXPECT_EQ(Value("switchyard_ep_rebalance_failures_total"), 0);
  s.rebalance_failures = 3;
  Render(s);
  Render(s);
  EXPECT_EQ(Value("switchyard_ep_rebalance_failures_total"), 3);
}

TEST_F(MetricsTest, HealthGauges) {
  Render({});
  EXPECT_EQ(Value("switchyard_engine_ready"), 0);  // not ready until the server says so
  EXPECT_EQ(Value("switchyard_engine_alive"), 1);
  metrics_.SetHealth(true, true);
  Render({});
  EXPECT_EQ(Value("switchyard_engine_ready"), 1);
  EXPECT_EQ(Value("switchyard_engine_alive"), 1);
  metrics_.SetHealth(false, false);
  Render({});
  EXPECT_EQ(Value("switchyard_engine_ready"), 0);
  EXPECT_EQ(Value("switchyard_engine_alive"), 0);
}

// Placement gauges: MoE layers 1 and 2 of 4 experts over 2 ranks of 3 slots; the contiguous
// placement puts experts 0, 1 on rank 0 and 2, 3 on rank 1, slot 2 empty. A live change shows
// at the next render.
TEST_F(MetricsTest, PlacementGaugesPerLayerRankAndSlot) {
  Render({});
  EXPECT_EQ(text_.find("switchyard_ep_placement_expert{"), std::string::npos);  // no EP yet
  ExpertPlacement p = ExpertPlacement::Contiguous({1, 2}, 4, 2, 3);
  metrics_.SetPlacement(std::make_shared<ExpertPlacement>(p));
  Render({});
  const auto slot = [this](const char* layer, const char* rank, const char* slot) {
    return Value("switchyard_ep_placement_expert",
                 {{"layer", layer}, {"rank", rank}, {"slot", slot}});
  };
  EXPECT_EQ(slot("1", "0", "0"), 0);
  EXPECT_EQ(slot("1", "0", "1"), 1);
  EXPECT_EQ(slot("1", "0", "2"), -1);
  EXPECT_EQ(slot("2", "1", "0"), 2);
  EXPECT_EQ(slot("2", "1", "1"), 3);
  p.set_expert(1, 0, 2, 3);  // layer 2 replicates expert 3 on rank 0
  metrics_.SetPlacement(std::make_shared<ExpertPlacement>(p));
  Render({});
  EXPECT_EQ(slot("2", "0", "2"), 3);
  EXPECT_EQ(slot("1", "0", "2"), -1);
}

// Routing gauges: MoE layers 1 and 2 of 4 experts (top 2) over 2 ranks; counted by hand.
TEST_F(MetricsTest, RoutingGaugesPerLayerAndRank) {
  RoutingStats stats({1, 2}, 4, 2, 2, 16);
  // Two tokens. Layer 1: experts {0,1} and {0,2} on ranks {0,0} and {0,1}; layer 2: {3,1} and
  // {3,2}, all on rank 1.
  const std::vector<std::vector<int32_t>> ids = {{}, {0, 1, 0, 2}, {3, 1, 3, 2}};
  const std::vector<std::vector<int32_t>> ranks = {{}, {0, 0, 0, 1}, {1, 1, 1, 1}};
  stats.AddStep(2, ids, ranks);
  stats.EndStep();
  metrics_.SetRoutingStats(&stats);
  Render({});
  EXPECT_EQ(Value("switchyard_moe_rank_pairs", {{"layer", "1"}, {"rank", "0"}}), 3);
  EXPECT_EQ(Value("switchyard_moe_rank_pairs", {{"layer", "1"}, {"rank", "1"}}), 1);
  EXPECT_EQ(Value("switchyard_moe_rank_pairs", {{"layer", "2"}, {"rank", "0"}}), 0);
  EXPECT_EQ(Value("switchyard_moe_rank_pairs", {{"layer", "2"}, {"rank", "1"}}), 4);
  // max / mean over ranks: 3 / 2 and 4 / 2; over experts: 2 / 1 both.
  EXPECT_DOUBLE_EQ(Value("switchyard_moe_rank_imbalance", {{"layer", "1"}}), 1.5);
  EXPECT_DOUBLE_EQ(Value("switchyard_moe_rank_imbalance", {{"layer", "2"}}), 2.0);
  EXPECT_DOUBLE_EQ(Value("switchyard_moe_expert_imbalance", {{"layer", "1"}}), 2.0);
  EXPECT_DOUBLE_EQ(Value("switchyard_moe_expert_imbalance", {{"layer", "2"}}), 2.0);
}

TEST_F(MetricsTest, RejectionsByReason) {
  metrics_.OnRejected(StatusCode::kResourceExhausted);
  metrics_.OnRejected(StatusCode::kResourceExhausted);
  metrics_.OnRejected(StatusCode::kInvalidArgument);
  metrics_.OnRejected(StatusCode::kOutOfRange);
  metrics_.OnRejected(StatusCode::kInternal);
  Render({});
  const std::string n = "switchyard_requests_rejected_total";
  EXPECT_EQ(Value(n, {{"reason", "queue_full"}}), 2);
  EXPECT_EQ(Value(n, {{"reason", "invalid"}}), 2);
  EXPECT_EQ(Value(n, {{"reason", "unavailable"}}), 0);
  EXPECT_EQ(Value(n, {{"reason", "other"}}), 1);
}

// Every family has HELP and TYPE, names and labels follow Prometheus' rules, counters end in
// _total, and no series carries a per-request label.
TEST_F(MetricsTest, ExpositionFormat) {
  FeedRequests(metrics_);
  metrics_.OnStep(StepStats{0.01, 1, 1, 1, {{}, {1, 0, 0, 1}, {}}});
  EngineSnapshot loaded;  // a known KV pool, so that vllm:cache_config_info has its series
  loaded.kv_blocks_total = 8;
  loaded.block_size = 16;
  Render(loaded);
  static const std::regex kMetricName("^[a-zA-Z_:][a-zA-Z0-9_:]*$");
  std::map<std::string, std::string> types;
  std::set<std::string> helps;
  std::istringstream in(text_);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string hash, kind, name, type;
    words >> hash >> kind >> name >> type;
    if (hash != "#") continue;
    EXPECT_TRUE(std::regex_match(name, kMetricName)) << name;
    if (kind == "HELP") helps.insert(name);
    if (kind == "TYPE") types[name] = type;
  }
  // Every family docs/metrics.md lists, and no other.
  const std::map<std::string, std::string> expected = {
      {"switchyard_time_to_first_token_seconds", "histogram"},
      {"vllm:time_to_first_token_seconds", "histogram"},
      {"switchyard_inter_token_latency_seconds", "histogram"},
      {"vllm:inter_token_latency_seconds", "histogram"},
      {"vllm:time_per_output_token_seconds", "histogram"},
      {"switchyard_e2e_request_latency_seconds", "histogram"},
      {"vllm:e2e_request_latency_seconds", "histogram"},
      {"switchyard_request_queue_time_seconds", "histogram"},
      {"vllm:request_queue_time_seconds", "histogram"},
      {"switchyard_engine_step_seconds", "histogram"},
      {"switchyard_engine_step_tokens", "histogram"},
      {"vllm:iteration_tokens_total", "histogram"},
      {"switchyard_num_requests_running", "gauge"},
      {"vllm:num_requests_running", "gauge"},
      {"switchyard_num_requests_waiting", "gauge"},
      {"vllm:num_requests_waiting", "gauge"},
      {"switchyard_kv_cache_usage_ratio", "gauge"},
      {"vllm:kv_cache_usage_perc", "gauge"},
      {"vllm:gpu_cache_usage_perc", "gauge"},
      {"vllm:cache_config_info", "gauge"},
      {"switchyard_kv_cache_blocks_used", "gauge"},
      {"switchyard_kv_cache_blocks_total", "gauge"},
      {"switchyard_prefix_cache_hit_ratio", "gauge"},
      {"switchyard_prompt_tokens_total", "counter"},
      {"vllm:prompt_tokens_total", "counter"},
      {"switchyard_generation_tokens_total", "counter"},
      {"vllm:generation_tokens_total", "counter"},
      {"switchyard_request_success_total", "counter"},
      {"vllm:request_success_total", "counter"},
      {"switchyard_requests_rejected_total", "counter"},
      {"switchyard_num_preemptions_total", "counter"},
      {"vllm:num_preemptions_total", "counter"},
      {"switchyard_prefix_cache_queries_total", "counter"},
      {"vllm:prefix_cache_queries_total", "counter"},
      {"switchyard_prefix_cache_hits_total", "counter"},
      {"vllm:prefix_cache_hits_total", "counter"},
      {"switchyard_moe_routed_tokens_total", "counter"},
      {"switchyard_moe_expert_load_imbalance", "histogram"},
      {"switchyard_ep_ranks", "gauge"},
      {"switchyard_ep_rebalances_total", "counter"},
      {"switchyard_ep_experts_moved_total", "counter"},
      {"switchyard_ep_rebalance_failures_total", "counter"},
      {"switchyard_engine_ready", "gauge"},
      {"switchyard_engine_alive", "gauge"},
  };
  EXPECT_EQ(types, expected);
  for (const auto& [name, type] : types) {
    EXPECT_TRUE(helps.count(name)) << name << " has no HELP";
    if (type == "counter") {
      EXPECT_TRUE(name.ends_with("_total")) << name;
    }
    if (name.starts_with("switchyard_") && name.ends_with("_seconds")) {
      EXPECT_EQ(type, "histogram") << name;
    }
  }

  const std::set<std::string> allowed = {"model_name", "finished_reason", "reason",
                                         "layer",      "expert",          "le",
                                         "block_size", "num_gpu_blocks"};
  for (const Sample& s : samples_) {
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (!types.count(family) && family.ends_with(suffix)) {
        family.resize(family.size() - std::string(suffix).size());
      }
    }
    EXPECT_TRUE(types.count(family)) << s.name << " has no TYPE";
    EXPECT_EQ(s.labels.at("model_name"), "tiny") << s.name;
    for (const auto& [k, v] : s.labels) EXPECT_TRUE(allowed.count(k)) << s.name << " " << k;
  }
}

// The ModelConfig constructor takes the MoE layers and expert count from the config.
TEST(MetricsConfigTest, SeriesPerMoeLayerAndExpert) {
  ModelConfig config;
  config.num_layers = 3;
  config.num_experts = 5;
  config.layer_is_moe = {true, false, true};
  Metrics metrics("m", config);
  std::set<std::string> series;
  for (const Sample& s : ParseSamples(metrics.Render({}))) {
    if (s.name == "switchyard_moe_routed_tokens_total") {
      series.insert(s.labels.at("layer") + "/" + s.labels.at("expert"));
    }
  }
  EXPECT_EQ(series, (std::set<std::string>{"0/0", "0/1", "0/2", "0/3", "0/4", "2/0", "2/1", "2/2",
                                           "2/3", "2/4"}));
}

// Observer callbacks on one thread, scrapes on others: totals come out exact.
TEST_F(MetricsTest, ConcurrentObserveAndRender) {
  constexpr int kRequests = 2000;
  std::thread engine([&] {
    for (int i = 0; i < kRequests; ++i) {
      metrics_.OnRequestFinished(Finished(FinishReason::kStop, 2, 1, 0.001, 0.01, 0.02, {0.01}));
      metrics_.OnStep(StepStats{0.001, 0, 1, 1, {{}, {1, 0, 0, 0}, {0, 1, 0, 0}}});
    }
  });
  std::vector<std::thread> scrapers;
  for (int t = 0; t < 2; ++t) {
    scrapers.emplace_back([&, t] {
      EngineSnapshot s;
      for (int i = 0; i < 200; ++i) {
        s.num_preemptions = i;
        s.prefix_cache_queries = 2 * i + t;
        metrics_.Render(s);
      }
    });
  }
  engine.join();
  for (auto& t : scrapers) t.join();
  EngineSnapshot last;
  last.num_preemptions = 199;
  last.prefix_cache_queries = 399;
  Render(last);
  EXPECT_EQ(Value("vllm:prompt_tokens_total"), 2 * kRequests);
  EXPECT_EQ(Value("switchyard_request_success_total", {{"finished_reason", "stop"}}), kRequests);
  EXPECT_EQ(Value("switchyard_engine_step_seconds_count"), kRequests);
  EXPECT_EQ(Value("switchyard_moe_routed_tokens_total", {{"layer", "2"}, {"expert", "1"}}),
            kRequests);
  EXPECT_EQ(Value("switchyard_num_preemptions_total"), 199);
  EXPECT_EQ(Value("switchyard_prefix_cache_queries_total"), 399);
}

}  // namespace
}  // namespace sy
