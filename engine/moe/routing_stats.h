// RoutingStats: live routing statistics of a serving engine: per MoE layer, token-expert
// assignments, expert-to-expert co-activation between consecutive MoE layers and the pairs each
// rank computed, over a sliding window of the last `window_steps` steps and since start; and
// optionally a recording of consecutive windows of N steps (--record-routing FILE).
// Thread-safe (one internal mutex): the engine thread writes, any thread reads.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "engine/moe/routing_trace.h"

namespace sy {

class RoutingStats {
 public:
  // `moe_layers`: the model layer indices of the MoE layers, ascending. num_experts <= 4096,
  // num_ranks < 65536 (ids are kept in 16 bits), window_steps >= 1.
  RoutingStats(std::vector<int32_t> moe_layers, int32_t num_experts, int32_t top_k,
               int32_t num_ranks, int32_t window_steps);

  // One batch of the open step (call once per source rank). expert_ids[model layer] holds
  // tokens * top_k expert ids (token-major, as StepRouting::choices), for every MoE layer;
  // entries of other layers are ignored. ranks has the same shape and names the rank that
  // computed each pair; it may be empty only with a single rank (everything on rank 0).
  void AddStep(int64_t tokens, std::span<const std::vector<int32_t>> expert_ids,
               std::span<const std::vector<int32_t>> ranks);
  // Closes the open step: the window drops its oldest step once it holds window_steps.
  void EndStep();

  // Window(): the last window_steps closed steps plus the open one; Cumulative(): since start.
  // Transitions are co-activation counts: a token choosing i at layer li and j at li + 1 adds
  // one to [li][i * E + j] for every such pair, so a matrix sums to tokens * top_k^2.
  RoutingWindow Window() const;
  RoutingWindow Cumulative() const;
  // [layer index][rank]: token-expert pairs each rank computed.
  std::vector<std::vector<int64_t>> WindowRankPairs() const;
  std::vector<std::vector<int64_t>> CumulativeRankPairs() const;
  // Per layer index, over the window: max/mean of the expert counts and of the rank pairs
  // (1 = perfectly even; 0 when the window routed nothing).
  std::vector<double> WindowExpertImbalance() const;
  std::vector<double> WindowRankImbalance() const;
  int64_t closed_steps() const;
  // Closed steps in the window now (at most window_steps).
  int32_t window_fill() const;

  // For an admin endpoint: shape, window and cumulative counts, rank pairs and imbalance;
  // transitions only when asked (they are (layers - 1) x E x E numbers).
  std::string ToJson(bool include_transitions) const;

  // Starts recording: every `steps_per_window` closed steps become one window of a trace.
  void StartRecording(int32_t steps_per_window);
  bool recording() const;
  // The recorded windows, the open partial one included if it routed anything; recording
  // continues with an empty trace.
  RoutingTrace TakeRecordedTrace();

  const std::vector<int32_t>& moe_layers() const { return layers_; }
  int32_t num_experts() const { return num_experts_; }
  int32_t top_k() const { return top_k_; }
  int32_t num_ranks() const { return num_ranks_; }
  int32_t window_steps() const { return window_steps_; }

 private:
  // Sums over some stretch of steps, flat: counts [li][e], rank_pairs [li][r],
  // transitions [li][i][j] for li < layers - 1.
  struct Totals {
    int64_t tokens = 0;
    std::vector<int64_t> counts;
    std::vector<int64_t> rank_pairs;
    std::vector<int64_t> transitions;
  };
  // One AddStep call, kept until its step leaves the window; 16-bit ids keep the window's
  // memory at 2 * top_k * layers bytes per token (twice that with ranks).
  struct Batch {
    int64_t tokens = 0;
    std::vector<uint16_t> experts;  // [li][token * top_k + choice]
    std::vector<uint16_t> ranks;    // same shape, or empty: all on rank 0
  };

  Totals EmptyTotals() const;
  void Apply(const Batch& batch, int64_t sign, Totals* totals) const;
  RoutingWindow ToWindow(const Totals& totals) const;
  std::vector<std::vector<int64_t>> RankPairs(const Totals& totals) const;
  void CloseRecordedWindow();

  const std::vector<int32_t> layers_;
  const int32_t num_experts_;
  const int32_t top_k_;
  const int32_t num_ranks_;
  const int32_t window_steps_;

  mutable std::mutex mu_;
  std::deque<std::vector<Batch>> steps_;  // closed steps in the window, oldest first
  std::vector<Batch> open_step_;
  int64_t closed_steps_ = 0;
  Totals window_;
  Totals cumulative_;
  // Recording: 0 steps per window = off.
  int32_t record_steps_ = 0;
  int32_t record_filled_ = 0;  // closed steps in recording_
  Totals recording_;
  RoutingTrace recorded_;
};

}  // namespace sy
