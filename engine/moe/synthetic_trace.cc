#include "engine/moe/synthetic_trace.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

namespace sy {

namespace {

// SplitMix64 with our own uniform and shuffle: the standard distributions differ between
// standard libraries, and a seed should name one trace everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  int32_t Below(int32_t n) { return static_cast<int32_t>(Next() % static_cast<uint64_t>(n)); }
  template <typename T>
  void Shuffle(std::vector<T>* v) {
    for (size_t i = v->size(); i > 1; --i) {
      std::swap((*v)[i - 1], (*v)[Below(static_cast<int32_t>(i))]);
    }
  }

 private:
  uint64_t state_;
};

// Builds one window after another; the popularity order of each layer drifts between windows,
// the preferred-successor maps stay fixed.
class Sampler {
 public:
  explicit Sampler(const SyntheticTraceOptions& o) : o_(o), rng_(o.seed) {
    const int32_t E = o.num_experts;
    for (int32_t l = 0; l < o.num_layers; ++l) {
      std::vector<int32_t> order(E);
      std::iota(order.begin(), order.end(), 0);
      rng_.Shuffle(&order);
      order_.push_back(std::move(order));
    }
    // A permutation, so that following it never makes two choices of a token collide.
    for (int32_t l = 0; l + 1 < o.num_layers; ++l) {
      std::vector<int32_t> successor(E);
      std::iota(successor.begin(), successor.end(), 0);
      rng_.Shuffle(&successor);
      successor_.push_back(std::move(successor));
    }
    rank_weight_.resize(E);
    for (int32_t r = 0; r < E; ++r) rank_weight_[r] = std::pow(r + 1.0, -o.zipf_exponent);
  }

  RoutingWindow NextWindow(bool drift_first) {
    if (drift_first) Drift();
    BuildCumulative();
    const int32_t L = o_.num_layers, E = o_.num_experts, k = o_.top_k;
    RoutingWindow window;
    window.tokens = o_.tokens_per_window;
    window.counts.assign(L, std::vector<int64_t>(E, 0));
    window.transitions.assign(L - 1, std::vector<int64_t>(static_cast<size_t>(E) * E, 0));
    std::vector<int32_t> previous(k), current(k);
    for (int64_t t = 0; t < o_.tokens_per_window; ++t) {
      for (int32_t l = 0; l < L; ++l) {
        ChooseExperts(l, previous, &current);
        for (int32_t j : current) ++window.counts[l][j];
        if (l > 0) {
          std::vector<int64_t>& matrix = window.transitions[l - 1];
          for (int32_t i : previous) {
            for (int32_t j : current) ++matrix[static_cast<size_t>(i) * E + j];
          }
        }
        std::swap(previous, current);
      }
    }
    return window;
  }

 private:
  // Reshuffles the experts at round(drift * E) random positions of each layer's order.
  void Drift() {
    const int32_t E = o_.num_experts;
    const int32_t moved = static_cast<int32_t>(std::lround(o_.drift * E));
    if (moved < 2) return;
    for (std::vector<int32_t>& order : order_) {
      std::vector<int32_t> positions(E);
      std::iota(positions.begin(), positions.end(), 0);
      rng_.Shuffle(&positions);
      positions.resize(moved);
      std::vector<int32_t> experts;
      for (int32_t p : positions) experts.push_back(order[p]);
      rng_.Shuffle(&experts);
      for (int32_t i = 0; i < moved; ++i) order[positions[i]] = experts[i];
    }
  }

  // cumulative_[l][e]: popularity mass of experts 0..e of layer l (by expert id).
  void BuildCumulative() {
    const int32_t E = o_.num_experts;
    weight_.assign(o_.num_layers, std::vector<double>(E));
    cumulative_.assign(o_.num_layers, std::vector<double>(E));
    for (int32_t l = 0; l < o_.num_layers; ++l) {
      for (int32_t r = 0; r < E; ++r) weight_[l][order_[l][r]] = rank_weight_[r];
      std::partial_sum(weight_[l].begin(), weight_[l].end(), cumulative_[l].begin());
    }
  }

  // Choice r follows the successor of the token's r-th choice at the previous layer with
  // probability `affinity` (if that expert is still free), else it is drawn by popularity.
  void ChooseExperts(int32_t l, const std::vector<int32_t>& previous, std::vector<int32_t>* out) {
    for (int32_t r = 0; r < o_.top_k; ++r) {
      const auto taken = [&](int32_t e) {
        return std::find(out->begin(), out->begin() + r, e) != out->begin() + r;
      };
      int32_t expert = -1;
      if (l > 0 && rng_.Uniform() < o_.affinity) {
        const int32_t successor = successor_[l - 1][previous[r]];
        if (!taken(successor)) expert = successor;
      }
      if (expert < 0) expert = DrawByPopularity(l, out->data(), r);
      (*out)[r] = expert;
    }
  }

  // An expert of layer l not among taken[0..n), with probability proportional to popularity.
  // Rejection is exact and cheap unless the taken experts hold most of the mass; then an exact
  // draw over the free experts takes over.
  int32_t DrawByPopularity(int32_t l, const int32_t* taken, int32_t n) {
    const std::vector<double>& cumulative = cumulative_[l];
    const auto is_taken = [&](int32_t e) { return std::find(taken, taken + n, e) != taken + n; };
    for (int attempt = 0; attempt < 16; ++attempt) {
      const double u = rng_.Uniform() * cumulative.back();
      const int32_t e = static_cast<int32_t>(
          std::upper_bound(cumulative.begin(), cumulative.end(), u) - cumulative.begin());
      if (e < o_.num_experts && !is_taken(e)) return e;
    }
    double free_mass = 0;
    int32_t last_free = -1;
    for (int32_t e = 0; e < o_.num_experts; ++e) {
      if (is_taken(e)) continue;
      free_mass += weight_[l][e];
      last_free = e;
    }
    double u = rng_.Uniform() * free_mass;
    for (int32_t e = 0; e < o_.num_experts; ++e) {
      if (is_taken(e)) continue;
      if (u < weight_[l][e]) return e;
      u -= weight_[l][e];
    }
    return last_free;  // rounding left u just above the last weight
  }

  const SyntheticTraceOptions& o_;
  Rng rng_;
  std::vector<double> rank_weight_;              // [popularity rank] -> 1 / (rank + 1)^s
  std::vector<std::vector<int32_t>> order_;      // [layer][rank] -> expert
  std::vector<std::vector<int32_t>> successor_;  // [layer pair][expert] -> preferred next
  std::vector<std::vector<double>> weight_;      // [layer][expert] -> popularity weight
  std::vector<std::vector<double>> cumulative_;  // [layer][expert] -> prefix sum of weight_
};

Status CheckOptions(const SyntheticTraceOptions& o) {
  if (o.num_layers < 1) return Status::InvalidArgument("synthetic trace: num_layers must be >= 1");
  // 4096 bounds the E x E transition matrices, as in the trace file reader.
  if (o.num_experts < 1 || o.num_experts > 4096) {
    return Status::InvalidArgument("synthetic trace: num_experts must be in [1, 4096]");
  }
  if (o.top_k < 1 || o.top_k > o.num_experts) {
    return Status::InvalidArgument("synthetic trace: top_k must be in [1, num_experts]");
  }
  if (!(o.zipf_exponent >= 0 && o.zipf_exponent <= 64)) {
    return Status::InvalidArgument("synthetic trace: zipf_exponent must be in [0, 64]");
  }
  if (!(o.affinity >= 0 && o.affinity <= 1) || !(o.drift >= 0 && o.drift <= 1)) {
    return Status::InvalidArgument("synthetic trace: affinity and drift must be in [0, 1]");
  }
  if (o.num_windows < 0 || o.tokens_per_window < 0) {
    return Status::InvalidArgument("synthetic trace: negative window count or size");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<RoutingTrace> GenerateSyntheticTrace(const SyntheticTraceOptions& options) {
  SY_RETURN_IF_ERROR(CheckOptions(options));
  RoutingTrace trace;
  trace.layers.resize(options.num_layers);
  std::iota(trace.layers.begin(), trace.layers.end(), 0);
  trace.num_experts = options.num_experts;
  trace.top_k = options.top_k;
  trace.source = "synthetic: zipf_exponent=" + std::to_string(options.zipf_exponent) +
                 " affinity=" + std::to_string(options.affinity) +
                 " drift=" + std::to_string(options.drift) +
                 " seed=" + std::to_string(options.seed) +
                 "; transitions are full co-activation (sum tokens*top_k^2)";
  Sampler sampler(options);
  for (int32_t w = 0; w < options.num_windows; ++w)
    trace.windows.push_back(sampler.NextWindow(w > 0));
  return trace;
}

}  // namespace sy
