#include "server/metrics/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <sstream>

namespace sy {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;
using prometheus::Registry;

// vLLM's buckets (vllm/v1/metrics/loggers.py), kept exact for the vllm: names so dashboards and
// recording rules built on vLLM's `le` values work unchanged.
const Histogram::BucketBoundaries kVllmTtft = {0.001, 0.005, 0.01, 0.02, 0.04,  0.06,  0.08, 0.1,
                                               0.25,  0.5,   0.75, 1.0,  2.5,   5.0,   7.5,  10.0,
                                               20.0,  40.0,  80.0, 160., 640.0, 2560.0};
const Histogram::BucketBoundaries kVllmItl = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
                                              0.3,  0.4,   0.5,  0.75,  1.0, 2.5,  5.0,
                                              7.5,  10.0,  20.0, 40.0,  80.0};
const Histogram::BucketBoundaries kVllmRequest = {0.3,  0.5,  0.8,  1.0,   1.5,   2.0,   2.5,
                                                  5.0,  10.0, 15.0, 20.0,  30.0,  40.0,  50.0,
                                                  60.0, 120., 240., 480.0, 960.0, 1920., 7680.};
const Histogram::BucketBoundaries kVllmIterationTokens = {1,   8,    16,   32,   64,   128,  256,
                                                          512, 1024, 2048, 4096, 8192, 16384};

// Our buckets: vLLM's, extended down to the millisecond scale, because a GPU decode step and an
// idle server's queue time are far below vLLM's smallest inter-token and request buckets.
const Histogram::BucketBoundaries kItl = {0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075,
                                          0.1,   0.15,   0.2,   0.3,    0.4,  0.5,   0.75, 1.0,
                                          2.5,   5.0,    7.5,   10.0,   20.0, 40.0,  80.0};
const Histogram::BucketBoundaries kRequest = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1,  0.2,  0.3,  0.5,  0.8,   1.0,   1.5,   2.0,   2.5,
    5.0,   10.0,  15.0, 20.0,  30.0, 40.0, 50.0, 60.0, 120., 240.0, 480.0, 960.0, 1920., 7680.};
const Histogram::BucketBoundaries kStep = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                           0.05,   0.075, 0.1,    0.25,  0.5,  0.75,
                                           1.0,    2.5,   5.0,    10.0,  30.0};
// max/mean over a layer's experts: 1 is perfect balance; num_experts is every token on one
// expert.
const Histogram::BucketBoundaries kImbalance = {1.0, 1.05, 1.1, 1.25, 1.5, 2.0,  2.5,  3.0,  4.0,
                                                5.0, 6.0,  8.0, 16.0, 32., 64.0, 128., 256.0};

constexpr const char* kRejectReasons[] = {"queue_full", "invalid", "unavailable", "other"};

const char* RejectReason(StatusCode code) {
  switch (code) {
    case StatusCode::kResourceExhausted:
      return "queue_full";
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
      return "invalid";
    case StatusCode::kUnavailable:
      return "unavailable";
    default:
      return "other";
  }
}

Histogram& AddHistogram(Registry& r, const std::string& name, const std::string& help,
                        const Labels& labels, const Histogram::BucketBoundaries& buckets) {
  return BuildHistogram().Name(name).Help(help).Register(r).Add(labels, buckets);
}

Gauge& AddGauge(Registry& r, const std::string& name, const std::string& help,
                const Labels& labels) {
  return BuildGauge().Name(name).Help(help).Register(r).Add(labels);
}

Counter& AddCounter(Registry& r, const std::string& name, const std::string& help,
                    const Labels& labels) {
  return BuildCounter().Name(name).Help(help).Register(r).Add(labels);
}

void Observe(Histogram* h, double v) {
  if (h != nullptr) h->Observe(v);
}
void Set(Gauge* g, double v) {
  if (g != nullptr) g->Set(v);
}
void Increment(Counter* c, double v) {
  if (c != nullptr) c->Increment(v);
}

}  // namespace

Metrics::Metrics(const MetricsOptions& options)
    : model_name_(options.model_name),
      num_experts_(options.num_experts),
      registry_(std::make_shared<Registry>()) {
  BuildRequestMetrics();
  BuildEngineMetrics();
  BuildMoeMetrics(options);
  BuildHealthMetrics();
}

Metrics::Metrics(const std::string& model_name, const ModelConfig& config)
    : Metrics(MetricsOptions{model_name, config.num_experts, config.layer_is_moe}) {}

Metrics::~Metrics() = default;

void Metrics::BuildRequestMetrics() {
  Registry& r = *registry_;
  const Labels l = {{"model_name", model_name_}};
  ttft_.ours = &AddHistogram(r, "switchyard_time_to_first_token_seconds",
                             "Time from arrival to the first generated token.", l, kVllmTtft);
  ttft_.vllm = &AddHistogram(r, "vllm:time_to_first_token_seconds",
                             "Histogram of time to first token in seconds.", l, kVllmTtft);
  itl_.ours = &AddHistogram(r, "switchyard_inter_token_latency_seconds",
                            "Time between consecutive tokens of one choice.", l, kItl);
  itl_.vllm = &AddHistogram(r, "vllm:inter_token_latency_seconds",
                            "Histogram of inter-token latency in seconds.", l, kVllmItl);
  vllm_tpot_ = &AddHistogram(r, "vllm:time_per_output_token_seconds",
                             "Histogram of time per output token in seconds (same observations "
                             "as vllm:inter_token_latency_seconds).",
                             l, kVllmItl);
  e2e_.ours = &AddHistogram(r, "switchyard_e2e_request_latency_seconds",
                            "Time from arrival to the request's end.", l, kRequest);
  e2e_.vllm = &AddHistogram(r, "vllm:e2e_request_latency_seconds",
                            "Histogram of e2e request latency in seconds.", l, kVllmRequest);
  queue_.ours = &AddHistogram(r, "switchyard_request_queue_time_seconds",
                              "Time from arrival to first being scheduled.", l, kRequest);
  queue_.vllm =
      &AddHistogram(r, "vllm:request_queue_time_seconds",
                    "Histogram of time spent in WAITING phase for request.", l, kVllmRequest);
  prompt_tokens_.ours =
      &AddCounter(r, "switchyard_prompt_tokens_total", "Prompt tokens of finished requests.", l);
  prompt_tokens_.vllm =
      &AddCounter(r, "vllm:prompt_tokens_total", "Number of prefill tokens processed.", l);
  generation_tokens_.ours = &AddCounter(r, "switchyard_generation_tokens_total",
                                        "Generated tokens of finished requests, all choices.", l);
  generation_tokens_.vllm =
      &AddCounter(r, "vllm:generation_tokens_total", "Number of generation tokens processed.", l);
  auto& ours = BuildCounter()
                   .Name("switchyard_request_success_total")
                   .Help("Finished requests by finish reason.")
                   .Register(r);
  auto& vllm = BuildCounter()
                   .Name("vllm:request_success_total")
                   .Help("Count of successfully processed requests.")
                   .Register(r);
  for (FinishReason reason :
       {FinishReason::kStop, FinishReason::kLength, FinishReason::kAbort, FinishReason::kError}) {
    Labels lr = l;
    lr["finished_reason"] = FinishReasonName(reason);
    success_[static_cast<int>(reason)] = {&ours.Add(lr), &vllm.Add(lr)};
  }
  rejected_ = &BuildCounter()
                   .Name("switchyard_requests_rejected_total")
                   .Help("Requests turned away at submission, by reason.")
                   .Register(r);
  for (const char* reason : kRejectReasons)
    rejected_->Add({{"model_name", model_name_}, {"reason", reason}});
}

void Metrics::BuildEngineMetrics() {
  Registry& r = *registry_;
  const Labels l = {{"model_name", model_name_}};
  step_.ours =
      &AddHistogram(r, "switchyard_engine_step_seconds",
                    "Wall time of one engine step (model forward plus sampling).", l, kStep);
  step_tokens_.ours = &AddHistogram(r, "switchyard_engine_step_tokens",
                                    "Tokens (prefill plus decode) fed to one engine step.", l,
                                    kVllmIterationTokens);
  step_tokens_.vllm =
      &AddHistogram(r, "vllm:iteration_tokens_total",
                    "Histogram of number of tokens per engine_step.", l, kVllmIterationTokens);
  ep_ranks_ = &AddGauge(r, "switchyard_ep_ranks",
                        "Expert-parallel ranks serving the model (1: no expert parallelism).", l);
  rebalances_ = &AddCounter(r, "switchyard_ep_rebalances_total",
                            "Live expert migrations committed (--rebalance-interval).", l);
  experts_moved_ = &AddCounter(r, "switchyard_ep_experts_moved_total",
                               "Expert copies made between ranks by live migrations.", l);
  running_.ours = &AddGauge(r, "switchyard_num_requests_running",
                            "Requests with sequences admitted to the KV cache.", l);
  running_.vllm = &AddGauge(r, "vllm:num_requests_running",
                            "Number of requests in model execution batches.", l);
  waiting_.ours = &AddGauge(r, "switchyard_num_requests_waiting",
                            "Requests queued, including preempted ones.", l);
  waiting_.vllm =
      &AddGauge(r, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", l);
  kv_usage_.ours = &AddGauge(r, "switchyard_kv_cache_usage_ratio",
                             "Fraction of KV-cache blocks referenced by live sequences (0-1).", l);
  kv_usage_.vllm =
      &AddGauge(r, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", l);
  vllm_gpu_cache_usage_ = &AddGauge(
      r, "vllm:gpu_cache_usage_perc",
      "KV-cache usage. 1 means 100 percent usage. Older name of vllm:kv_cache_usage_perc.", l);
  kv_blocks_used_ = &AddGauge(r, "switchyard_kv_cache_blocks_used",
                              "KV-cache blocks referenced by live sequences.", l);
  kv_blocks_total_ = &AddGauge(r, "switchyard_kv_cache_blocks_total", "KV-cache blocks.", l);
  cache_config_info_family_ = &BuildGauge()
                                   .Name("vllm:cache_config_info")
                                   .Help("Information of the LLMEngine CacheConfig.")
                                   .Register(r);
  prefix_hit_ratio_ = &AddGauge(
      r, "switchyard_prefix_cache_hit_ratio",
      "Prompt tokens found in the prefix cache / prompt tokens looked up, since start.", l);
  prefix_queries_.ours = &AddCounter(r, "switchyard_prefix_cache_queries_total",
                                     "Prompt tokens looked up in the prefix cache.", l);
  prefix_queries_.vllm =
      &AddCounter(r, "vllm:prefix_cache_queries_total",
                  "Prefix cache queries, in terms of number of queried tokens.", l);
  prefix_hits_.ours = &AddCounter(r, "switchyard_prefix_cache_hits_total",
                                  "Prompt tokens found in the prefix cache.", l);
  prefix_hits_.vllm = &AddCounter(r, "vllm:prefix_cache_hits_total",
                                  "Prefix cache hits, in terms of number of cached tokens.", l);
  preemptions_.ours = &AddCounter(r, "switchyard_num_preemptions_total",
                                  "Preemptions (sequences evicted to recompute later).", l);
  preemptions_.vllm = &AddCounter(r, "vllm:num_preemptions_total",
                                  "Cumulative number of preemption from the engine.", l);
}

void Metrics::BuildMoeMetrics(const MetricsOptions& options) {
  Registry& r = *registry_;
  routed_family_ = &BuildCounter()
                        .Name("switchyard_moe_routed_tokens_total")
                        .Help("Tokens routed to each expert of each MoE layer.")
                        .Register(r);
  imbalance_ = &AddHistogram(r, "switchyard_moe_expert_load_imbalance",
                             "Per step and MoE layer: the most loaded expert's tokens over the "
                             "mean over experts (1 is perfect balance).",
                             {{"model_name", model_name_}}, kImbalance);
  routed_.resize(options.layer_is_moe.size());
  for (size_t layer = 0; layer < options.layer_is_moe.size(); ++layer) {
    if (!options.layer_is_moe[layer]) continue;
    for (int64_t e = 0; e < num_experts_; ++e) RoutedCounter(layer, static_cast<size_t>(e));
  }
}

void Metrics::BuildHealthMetrics() {
  Registry& r = *registry_;
  const Labels l = {{"model_name", model_name_}};
  engine_ready_ =
      &AddGauge(r, "switchyard_engine_ready",
                "1 while the server is ready to serve (what /health/ready answers).", l);
  engine_alive_ = &AddGauge(
      r, "switchyard_engine_alive",
      "0 once the loaded engine has stopped (failed step, lost expert-parallel rank).", l);
  engine_alive_->Set(1);
  rebalance_failures_ = &AddCounter(r, "switchyard_ep_rebalance_failures_total",
                                    "Rebalance plans that could not be made (planner error).", l);
}

void Metrics::SetHealth(bool ready, bool alive) {
  engine_ready_->Set(ready ? 1 : 0);
  engine_alive_->Set(alive ? 1 : 0);
}

void Metrics::SetPlacement(std::shared_ptr<const ExpertPlacement> placement) {
  std::lock_guard<std::mutex> lock(mu_);
  placement_ = std::move(placement);
  if (placement_ == nullptr || !placement_slots_.empty()) return;
  auto& family = BuildGauge()
                     .Name("switchyard_ep_placement_expert")
                     .Help("Logical expert held by each (MoE layer, rank, slot); -1: empty slot.")
                     .Register(*registry_);
  const ExpertPlacement& p = *placement_;
  for (int32_t li = 0; li < p.num_layers(); ++li) {
    for (int32_t rank = 0; rank < p.num_ranks(); ++rank) {
      for (int32_t slot = 0; slot < p.slots_per_rank(); ++slot) {
        placement_slots_.push_back(&family.Add({{"model_name", model_name_},
                                                {"layer", std::to_string(p.layers()[li])},
                                                {"rank", std::to_string(rank)},
                                                {"slot", std::to_string(slot)}}));
      }
    }
  }
}

void Metrics::SetPlacementGauges() {
  if (placement_ == nullptr) return;
  const ExpertPlacement& p = *placement_;
  size_t i = 0;
  for (int32_t li = 0; li < p.num_layers(); ++li) {
    for (int32_t rank = 0; rank < p.num_ranks(); ++rank) {
      for (int32_t slot = 0; slot < p.slots_per_rank() && i < placement_slots_.size(); ++slot) {
        placement_slots_[i++]->Set(p.expert_at(li, rank, slot));
      }
    }
  }
}

Counter& Metrics::RoutedCounter(size_t layer, size_t expert) {
  if (routed_.size() <= layer) routed_.resize(layer + 1);
  auto& row = routed_[layer];
  if (row.size() <= expert) row.resize(expert + 1, nullptr);
  if (row[expert] == nullptr) {
    row[expert] = &routed_family_->Add({{"model_name", model_name_},
                                        {"layer", std::to_string(layer)},
                                        {"expert", std::to_string(expert)}});
  }
  return *row[expert];
}

void Metrics::OnStep(const StepStats& step) {
  Observe(step_.ours, step.step_seconds);
  const double tokens = step.num_prefill_tokens + step.num_decode_tokens;
  if (tokens > 0) {
    Observe(step_tokens_.ours, tokens);
    Observe(step_tokens_.vllm, tokens);
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t layer = 0; layer < step.expert_tokens.size(); ++layer) {
    const std::vector<int64_t>& counts = step.expert_tokens[layer];
    if (counts.empty()) continue;  // a dense layer
    int64_t sum = 0;
    int64_t max = 0;
    for (size_t e = 0; e < counts.size(); ++e) {
      if (counts[e] > 0) RoutedCounter(layer, e).Increment(static_cast<double>(counts[e]));
      sum += counts[e];
      max = std::max(max, counts[e]);
    }
    // A layer that saw no tokens this step has no balance to speak of.
    if (sum > 0) {
      const double mean = static_cast<double>(sum) / static_cast<double>(counts.size());
      imbalance_->Observe(static_cast<double>(max) / mean);
    }
  }
}

void Metrics::OnRequestFinished(const RequestStats& request) {
  if (request.ttft_seconds >= 0) {
    Observe(ttft_.ours, request.ttft_seconds);
    Observe(ttft_.vllm, request.ttft_seconds);
  }
  for (double gap : request.inter_token_seconds) {
    Observe(itl_.ours, gap);
    Observe(itl_.vllm, gap);
    Observe(vllm_tpot_, gap);
  }
  Observe(e2e_.ours, request.e2e_seconds);
  Observe(e2e_.vllm, request.e2e_seconds);
  Observe(queue_.ours, request.queue_seconds);
  Observe(queue_.vllm, request.queue_seconds);
  Increment(prompt_tokens_.ours, request.prompt_tokens);
  Increment(prompt_tokens_.vllm, request.prompt_tokens);
  Increment(generation_tokens_.ours, request.generation_tokens);
  Increment(generation_tokens_.vllm, request.generation_tokens);
  const auto& success = success_[static_cast<int>(request.finish_reason)];
  Increment(success.ours, 1);
  Increment(success.vllm, 1);
}

void Metrics::OnPreemption(int32_t /*num_sequences*/) {}

void Metrics::OnRejected(StatusCode code) {
  rejected_->Add({{"model_name", model_name_}, {"reason", RejectReason(code)}}).Increment();
}

void Metrics::AddDelta(int64_t now, int64_t* last, std::initializer_list<Counter*> counters) {
  if (now > *last) {
    for (Counter* c : counters) c->Increment(static_cast<double>(now - *last));
    *last = now;
  }
}

void Metrics::SetRoutingStats(const RoutingStats* stats) {
  std::lock_guard<std::mutex> lock(mu_);
  routing_ = stats;
  Registry& r = *registry_;
  auto& pairs = prometheus::BuildGauge()
                    .Name("switchyard_moe_rank_pairs")
                    .Help(
                        "Token-expert pairs each expert-parallel rank computed per MoE layer, "
                        "over the routing window.")
                    .Register(r);
  auto& rank_imbalance = prometheus::BuildGauge()
                             .Name("switchyard_moe_rank_imbalance")
                             .Help(
                                 "Per MoE layer over the routing window: the busiest rank's "
                                 "token-expert pairs over the mean over ranks (1 is perfect).")
                             .Register(r);
  auto& expert_imbalance = prometheus::BuildGauge()
                               .Name("switchyard_moe_expert_imbalance")
                               .Help(
                                   "Per MoE layer over the routing window: the most loaded "
                                   "expert's tokens over the mean over experts.")
                               .Register(r);
  const std::vector<int32_t>& layers = stats->moe_layers();
  for (size_t li = 0; li < layers.size(); ++li) {
    const std::string layer = std::to_string(layers[li]);
    rank_pairs_.emplace_back();
    for (int32_t rank = 0; rank < stats->num_ranks(); ++rank) {
      rank_pairs_.back().push_back(&pairs.Add(
          {{"model_name", model_name_}, {"layer", layer}, {"rank", std::to_string(rank)}}));
    }
    rank_imbalance_.push_back(&rank_imbalance.Add({{"model_name", model_name_}, {"layer", layer}}));
    expert_imbalance_.push_back(
        &expert_imbalance.Add({{"model_name", model_name_}, {"layer", layer}}));
  }
}

void Metrics::SetRoutingGauges() {
  if (routing_ == nullptr) return;
  const std::vector<std::vector<int64_t>> pairs = routing_->WindowRankPairs();
  const std::vector<double> rank_imbalance = routing_->WindowRankImbalance();
  const std::vector<double> expert_imbalance = routing_->WindowExpertImbalance();
  for (size_t li = 0; li < rank_pairs_.size(); ++li) {
    for (size_t rank = 0; rank < rank_pairs_[li].size(); ++rank) {
      rank_pairs_[li][rank]->Set(static_cast<double>(pairs[li][rank]));
    }
    rank_imbalance_[li]->Set(rank_imbalance[li]);
    expert_imbalance_[li]->Set(expert_imbalance[li]);
  }
}

std::string Metrics::Render(const EngineSnapshot& s) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Set(running_.ours, static_cast<double>(s.num_running));
    Set(running_.vllm, static_cast<double>(s.num_running));
    Set(waiting_.ours, static_cast<double>(s.num_waiting));
    Set(waiting_.vllm, static_cast<double>(s.num_waiting));
    Set(kv_usage_.ours, s.kv_usage);
    Set(kv_usage_.vllm, s.kv_usage);
    Set(vllm_gpu_cache_usage_, s.kv_usage);
    Set(kv_blocks_used_, static_cast<double>(s.kv_blocks_used));
    Set(kv_blocks_total_, static_cast<double>(s.kv_blocks_total));
    if (cache_config_info_ == nullptr && s.kv_blocks_total > 0) {
      cache_config_info_ =
          &cache_config_info_family_->Add({{"model_name", model_name_},
                                           {"block_size", std::to_string(s.block_size)},
                                           {"num_gpu_blocks", std::to_string(s.kv_blocks_total)}});
      cache_config_info_->Set(1);
    }
    AddDelta(s.num_preemptions, &last_preemptions_, {preemptions_.ours, preemptions_.vllm});
    AddDelta(s.num_rebalances, &last_rebalances_, {rebalances_});
    AddDelta(s.experts_moved, &last_experts_moved_, {experts_moved_});
    AddDelta(s.rebalance_failures, &last_rebalance_failures_, {rebalance_failures_});
    Set(ep_ranks_, static_cast<double>(s.num_ranks));
    AddDelta(s.prefix_cache_queries, &last_prefix_queries_,
             {prefix_queries_.ours, prefix_queries_.vllm});
    AddDelta(s.prefix_cache_hits, &last_prefix_hits_, {prefix_hits_.ours, prefix_hits_.vllm});
    Set(prefix_hit_ratio_, last_prefix_queries_ > 0 ? static_cast<double>(last_prefix_hits_) /
                                                          static_cast<double>(last_prefix_queries_)
                                                    : 0.0);
    SetRoutingGauges();
    SetPlacementGauges();
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace sy
