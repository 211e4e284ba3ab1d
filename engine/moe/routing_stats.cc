#include "engine/moe/routing_stats.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <numeric>
#include <utility>

#include "engine/core/check.h"

namespace sy {

namespace {

using json = nlohmann::json;

double MaxOverMean(const int64_t* begin, const int64_t* end) {
  const int64_t total = std::accumulate(begin, end, int64_t{0});
  if (total == 0) return 0;
  return static_cast<double>(*std::max_element(begin, end)) * (end - begin) / total;
}

double MaxOverMean(const std::vector<int64_t>& v) {
  return MaxOverMean(v.data(), v.data() + v.size());
}

// One of the "window" / "cumulative" objects of ToJson.
json TotalsToJson(const RoutingWindow& window, const std::vector<std::vector<int64_t>>& rank_pairs,
                  bool include_transitions) {
  std::vector<double> expert_imbalance, rank_imbalance;
  for (const std::vector<int64_t>& counts : window.counts)
    expert_imbalance.push_back(MaxOverMean(counts));
  for (const std::vector<int64_t>& pairs : rank_pairs) rank_imbalance.push_back(MaxOverMean(pairs));
  json out = {{"tokens", window.tokens},
              {"counts", window.counts},
              {"rank_pairs", rank_pairs},
              {"expert_imbalance", expert_imbalance},
              {"rank_imbalance", rank_imbalance}};
  if (include_transitions) out["transitions"] = window.transitions;
  return out;
}

}  // namespace

RoutingStats::RoutingStats(std::vector<int32_t> moe_layers, int32_t num_experts, int32_t top_k,
                           int32_t num_ranks, int32_t window_steps)
    : layers_(std::move(moe_layers)),
      num_experts_(num_experts),
      top_k_(top_k),
      num_ranks_(num_ranks),
      window_steps_(window_steps) {
  // 4096 as in the trace reader: the transitions are E x E per layer pair.
  SY_CHECK(num_experts >= 1 && num_experts <= 4096 && top_k >= 1 && top_k <= num_experts);
  SY_CHECK(num_ranks >= 1 && num_ranks <= 65535 && window_steps >= 1);
  window_ = EmptyTotals();
  cumulative_ = EmptyTotals();
  recording_ = EmptyTotals();
}

RoutingStats::Totals RoutingStats::EmptyTotals() const {
  const size_t L = layers_.size(), E = num_experts_;
  Totals t;
  t.counts.assign(L * E, 0);
  t.rank_pairs.assign(L * num_ranks_, 0);
  t.transitions.assign(L >= 2 ? (L - 1) * E * E : 0, 0);
  return t;
}

void RoutingStats::AddStep(int64_t tokens, std::span<const std::vector<int32_t>> expert_ids,
                           std::span<const std::vector<int32_t>> ranks) {
  if (tokens == 0) return;
  SY_CHECK(tokens > 0);
  SY_CHECK_MSG(!ranks.empty() || num_ranks_ == 1, "routing stats: ranks missing on %d ranks",
               num_ranks_);
  const size_t pairs = static_cast<size_t>(tokens) * top_k_;
  Batch batch;
  batch.tokens = tokens;
  batch.experts.reserve(layers_.size() * pairs);
  if (!ranks.empty()) batch.ranks.reserve(layers_.size() * pairs);
  for (int32_t layer : layers_) {
    SY_CHECK_MSG(
        static_cast<size_t>(layer) < expert_ids.size() && expert_ids[layer].size() == pairs,
        "routing stats: layer %d needs %zu expert ids", layer, pairs);
    for (int32_t e : expert_ids[layer]) {
      SY_CHECK(e >= 0 && e < num_experts_);
      batch.experts.push_back(static_cast<uint16_t>(e));
    }
    if (ranks.empty()) continue;
    SY_CHECK(static_cast<size_t>(layer) < ranks.size() && ranks[layer].size() == pairs);
    for (int32_t r : ranks[layer]) {
      SY_CHECK(r >= 0 && r < num_ranks_);
      batch.ranks.push_back(static_cast<uint16_t>(r));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  Apply(batch, +1, &window_);
  Apply(batch, +1, &cumulative_);
  if (record_steps_ > 0) Apply(batch, +1, &recording_);
  open_step_.push_back(std::move(batch));
}

void RoutingStats::Apply(const Batch& batch, int64_t sign, Totals* totals) const {
  const size_t L = layers_.size(), E = num_experts_, k = top_k_;
  const size_t pairs = static_cast<size_t>(batch.tokens) * k;
  totals->tokens += sign * batch.tokens;
  for (size_t li = 0; li < L; ++li) {
    const uint16_t* experts = batch.experts.data() + li * pairs;
    int64_t* counts = totals->counts.data() + li * E;
    for (size_t p = 0; p < pairs; ++p) counts[experts[p]] += sign;
    int64_t* rank_pairs = totals->rank_pairs.data() + li * num_ranks_;
    if (batch.ranks.empty()) {
      rank_pairs[0] += sign * static_cast<int64_t>(pairs);
    } else {
      const uint16_t* ranks = batch.ranks.data() + li * pairs;
      for (size_t p = 0; p < pairs; ++p) rank_pairs[ranks[p]] += sign;
    }
    if (li + 1 == L) continue;
    // Co-activation: every choice at li with every choice of the same token at li + 1.
    const uint16_t* next = experts + pairs;
    int64_t* matrix = totals->transitions.data() + li * E * E;
    for (size_t t = 0; t < static_cast<size_t>(batch.tokens); ++t) {
      for (size_t a = 0; a < k; ++a) {
        int64_t* row = matrix + experts[t * k + a] * E;
        for (size_t b = 0; b < k; ++b) row[next[t * k + b]] += sign;
      }
    }
  }
}

void RoutingStats::EndStep() {
  std::lock_guard<std::mutex> lock(mu_);
  steps_.push_back(std::move(open_step_));
  open_step_.clear();
  ++closed_steps_;
  if (static_cast<int32_t>(steps_.size()) > window_steps_) {
    for (const Batch& batch : steps_.front()) Apply(batch, -1, &window_);
    steps_.pop_front();
  }
  if (record_steps_ > 0 && ++record_filled_ == record_steps_) CloseRecordedWindow();
}

RoutingWindow RoutingStats::ToWindow(const Totals& totals) const {
  const size_t L = layers_.size(), E = num_experts_;
  RoutingWindow window;
  window.tokens = totals.tokens;
  for (size_t li = 0; li < L; ++li) {
    window.counts.emplace_back(totals.counts.begin() + li * E,
                               totals.counts.begin() + (li + 1) * E);
  }
  for (size_t li = 0; li + 1 < L; ++li) {
    window.transitions.emplace_back(totals.transitions.begin() + li * E * E,
                                    totals.transitions.begin() + (li + 1) * E * E);
  }
  return window;
}

std::vector<std::vector<int64_t>> RoutingStats::RankPairs(const Totals& totals) const {
  std::vector<std::vector<int64_t>> out;
  for (size_t li = 0; li < layers_.size(); ++li) {
    const auto begin = totals.rank_pairs.begin() + li * num_ranks_;
    out.emplace_back(begin, begin + num_ranks_);
  }
  return out;
}

RoutingWindow RoutingStats::Window() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ToWindow(window_);
}

RoutingWindow RoutingStats::Cumulative() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ToWindow(cumulative_);
}

std::vector<std::vector<int64_t>> RoutingStats::WindowRankPairs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return RankPairs(window_);
}

std::vector<std::vector<int64_t>> RoutingStats::CumulativeRankPairs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return RankPairs(cumulative_);
}

std::vector<double> RoutingStats::WindowExpertImbalance() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<double> out;
  for (size_t li = 0; li < layers_.size(); ++li) {
    const int64_t* begin = window_.counts.data() + li * num_experts_;
    out.push_back(MaxOverMean(begin, begin + num_experts_));
  }
  return out;
}

std::vector<double> RoutingStats::WindowRankImbalance() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<double> out;
  for (size_t li = 0; li < layers_.size(); ++li) {
    const int64_t* begin = window_.rank_pairs.data() + li * num_ranks_;
    out.push_back(MaxOverMean(begin, begin + num_ranks_));
  }
  return out;
}

int64_t RoutingStats::closed_steps() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_steps_;
}

int32_t RoutingStats::window_fill() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int32_t>(steps_.size());
}

std::string RoutingStats::ToJson(bool include_transitions) const {
  std::lock_guard<std::mutex> lock(mu_);
  json out = {
      {"layers", layers_},           {"num_experts", num_experts_},   {"top_k", top_k_},
      {"num_ranks", num_ranks_},     {"window_steps", window_steps_}, {"steps", closed_steps_},
      {"window_fill", steps_.size()}};
  out["window"] = TotalsToJson(ToWindow(window_), RankPairs(window_), include_transitions);
  out["cumulative"] =
      TotalsToJson(ToWindow(cumulative_), RankPairs(cumulative_), include_transitions);
  return out.dump();
}

void RoutingStats::StartRecording(int32_t steps_per_window) {
  SY_CHECK(steps_per_window >= 1);
  std::lock_guard<std::mutex> lock(mu_);
  record_steps_ = steps_per_window;
  record_filled_ = 0;
  recording_ = EmptyTotals();
  recorded_ = RoutingTrace{};
  recorded_.layers = layers_;
  recorded_.num_experts = num_experts_;
  recorded_.top_k = top_k_;
  recorded_.source = "switchyard --record-routing, " + std::to_string(steps_per_window) +
                     " steps per window; transitions are co-activation (sum tokens*top_k^2)";
}

bool RoutingStats::recording() const {
  std::lock_guard<std::mutex> lock(mu_);
  return record_steps_ > 0;
}

void RoutingStats::CloseRecordedWindow() {
  recorded_.windows.push_back(ToWindow(recording_));
  recording_ = EmptyTotals();
  record_filled_ = 0;
}

RoutingTrace RoutingStats::TakeRecordedTrace() {
  std::lock_guard<std::mutex> lock(mu_);
  if (record_steps_ > 0 && recording_.tokens > 0) CloseRecordedWindow();
  RoutingTrace trace = recorded_;
  recorded_.windows.clear();
  return trace;
}

}  // namespace sy
