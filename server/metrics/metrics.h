// Metrics: the engine's observer that turns step and request statistics into Prometheus metrics
// (own switchyard_* names plus vLLM-named duplicates). Owns its registry. Thread-safe: observer
// callbacks come from the engine thread while Render runs on any number of HTTP threads.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/model/config.h"
#include "engine/moe/placement.h"
#include "engine/moe/routing_stats.h"
#include "engine/sched/engine.h"
#include "engine/sched/engine_observer.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace sy {

struct MetricsOptions {
  std::string model_name;          // the value of every series' model_name label
  int64_t num_experts = 0;         // routed experts per MoE layer
  std::vector<bool> layer_is_moe;  // [num_layers]; MoE series exist for true layers only
};

// Where the metric names, units and buckets are documented: docs/metrics.md.
class Metrics : public EngineObserver {
 public:
  explicit Metrics(const MetricsOptions& options);
  // Options from the served model's config: its layers, which are MoE, and its expert count.
  Metrics(const std::string& model_name, const ModelConfig& config);
  ~Metrics() override;

  void OnStep(const StepStats& step) override;
  void OnRequestFinished(const RequestStats& request) override;
  // Preemptions are counted from EngineSnapshot::num_preemptions in Render (one source).
  void OnPreemption(int32_t num_sequences) override;
  void OnRejected(StatusCode code) override;

  // Exports `stats` (not owned; must outlive this) as per-layer, per-rank gauges over its
  // sliding window, set at each Render. Call once, before serving.
  void SetRoutingStats(const RoutingStats* stats);

  // The server's health for switchyard_engine_ready / switchyard_engine_alive: `ready` is what
  // /health/ready answers; `alive` is false once a loaded engine has stopped (failed step, lost
  // expert-parallel rank). Call before each Render.
  void SetHealth(bool ready, bool alive);

  // The expert placement in use (null without expert parallelism), exported as
  // switchyard_ep_placement_expert{layer, rank, slot} at the next Render. Its shape (layers,
  // ranks, slots) must not change between calls; live migrations change only the experts.
  void SetPlacement(std::shared_ptr<const ExpertPlacement> placement);

  // Sets the gauges and snapshot-derived counters from `snapshot`, then returns every metric in
  // the Prometheus text exposition format (version 0.0.4).
  std::string Render(const EngineSnapshot& snapshot);

 private:
  // A metric exposed under our name and, where the meaning is the same, under vLLM's.
  template <typename T>
  struct Pair {
    T* ours = nullptr;
    T* vllm = nullptr;  // null when vLLM has no equivalent
  };

  void BuildRequestMetrics();
  void BuildEngineMetrics();
  void BuildMoeMetrics(const MetricsOptions& options);
  void BuildHealthMetrics();
  prometheus::Counter& RoutedCounter(size_t layer, size_t expert);
  void SetRoutingGauges();
  void SetPlacementGauges();
  // Adds (now - last) to the counters when a cumulative snapshot value grew.
  static void AddDelta(int64_t now, int64_t* last, std::initializer_list<prometheus::Counter*> cs);

  const std::string model_name_;
  const int64_t num_experts_;
  std::shared_ptr<prometheus::Registry> registry_;

  Pair<prometheus::Histogram> ttft_, itl_, e2e_, queue_, step_, step_tokens_;
  prometheus::Histogram* vllm_tpot_ = nullptr;  // vLLM's older name for inter-token latency
  Pair<prometheus::Gauge> running_, waiting_, kv_usage_;
  prometheus::Gauge* vllm_gpu_cache_usage_ = nullptr;  // vLLM < 0.9 name, still read by EPPs
  prometheus::Gauge* kv_blocks_used_ = nullptr;
  prometheus::Gauge* kv_blocks_total_ = nullptr;
  // vLLM's cache-config info gauge; its one series (value 1) is added at the first Render that
  // knows the KV-cache pool, since its labels carry the pool's shape.
  prometheus::Family<prometheus::Gauge>* cache_config_info_family_ = nullptr;
  prometheus::Gauge* cache_config_info_ = nullptr;
  prometheus::Gauge* prefix_hit_ratio_ = nullptr;
  prometheus::Gauge* ep_ranks_ = nullptr;
  prometheus::Counter* rebalances_ = nullptr;
  prometheus::Counter* experts_moved_ = nullptr;
  prometheus::Counter* rebalance_failures_ = nullptr;
  prometheus::Gauge* engine_ready_ = nullptr;
  prometheus::Gauge* engine_alive_ = nullptr;
  Pair<prometheus::Counter> prompt_tokens_, generation_tokens_, preemptions_;
  Pair<prometheus::Counter> prefix_queries_, prefix_hits_;
  Pair<prometheus::Counter> success_[4];  // indexed by FinishReason
  prometheus::Family<prometheus::Counter>* rejected_ = nullptr;
  prometheus::Family<prometheus::Counter>* routed_family_ = nullptr;
  prometheus::Histogram* imbalance_ = nullptr;
  const RoutingStats* routing_ = nullptr;
  std::vector<std::vector<prometheus::Gauge*>> rank_pairs_;  // [layer index][rank]
  std::vector<prometheus::Gauge*> rank_imbalance_;           // [layer index]
  std::vector<prometheus::Gauge*> expert_imbalance_;         // [layer index]
  std::vector<prometheus::Gauge*> placement_slots_;          // [layer index][rank][slot], flattened

  std::mutex mu_;                                          // guards everything below
  std::vector<std::vector<prometheus::Counter*>> routed_;  // [layer][expert], filled lazily
  int64_t last_preemptions_ = 0;
  int64_t last_prefix_queries_ = 0;
  int64_t last_prefix_hits_ = 0;
  int64_t last_rebalances_ = 0;
  int64_t last_experts_moved_ = 0;
  int64_t last_rebalance_failures_ = 0;
  std::shared_ptr<const ExpertPlacement> placement_;
};

}  // namespace sy
