#include "engine/runner/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

namespace sy {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr double kFloatMax = std::numeric_limits<float>::max();

// Masks NaN (never chosen) and saturates +inf, so that every logit is finite or -inf.
void Sanitize(std::span<float> logits) {
  for (float& l : logits) {
    if (std::isnan(l)) {
      l = kNegInf;
    } else if (l > std::numeric_limits<float>::max()) {
      l = std::numeric_limits<float>::max();
    }
  }
}

// A penalised logit, rounded back into the float range: a penalty never masks a token or
// creates an infinity.
float Saturate(double v) { return static_cast<float>(std::clamp(v, -kFloatMax, kFloatMax)); }

// The first index holding the largest logit (index 0 when all are -inf).
int32_t Argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// log-softmax over raw logits, computed stably: log p = (l - max) - log(sum(exp(x - max))),
// kept as two terms so that log(sum) is not lost next to a huge max.
class LogSoftmax {
 public:
  explicit LogSoftmax(std::span<const float> x) : max_(*std::max_element(x.begin(), x.end())) {
    if (max_ == -std::numeric_limits<double>::infinity()) return;
    double s = 0.0;
    for (float v : x) s += std::exp(static_cast<double>(v) - max_);
    log_sum_ = std::log(s);
  }

  // -inf for a masked token, and for every token when all are masked.
  float Of(float l) const {
    if (max_ == -std::numeric_limits<double>::infinity()) return kNegInf;
    return static_cast<float>((static_cast<double>(l) - max_) - log_sum_);
  }

 private:
  double max_;
  double log_sum_ = 0.0;
};

}  // namespace

Status SamplingParams::Validate() const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature)) {
    return Status::InvalidArgument("temperature must be a finite number >= 0");
  }
  if (top_k < -1) return Status::InvalidArgument("top_k must be -1, 0 or positive");
  if (!(top_p > 0.0f && top_p <= 1.0f)) return Status::InvalidArgument("top_p must be in (0, 1]");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return Status::InvalidArgument("min_p must be in [0, 1]");
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty)) {
    return Status::InvalidArgument("repetition_penalty must be a finite number > 0");
  }
  if (!(presence_penalty >= -2.0f && presence_penalty <= 2.0f)) {
    return Status::InvalidArgument("presence_penalty must be in [-2, 2]");
  }
  if (!(frequency_penalty >= -2.0f && frequency_penalty <= 2.0f)) {
    return Status::InvalidArgument("frequency_penalty must be in [-2, 2]");
  }
  if (logprobs > 20) return Status::InvalidArgument("logprobs must be at most 20");
  return Status::Ok();
}

Sampler::Sampler(const SamplingParams& params, std::span<const int32_t> prompt)
    : params_(params), rng_(params.seed ? *params.seed : std::random_device{}()) {
  seen_.insert(prompt.begin(), prompt.end());
}

void Sampler::ApplyPenalties(std::span<float> logits) const {
  // In double and saturated: extreme penalties (repetition_penalty near 0 or FLT_MAX) would
  // otherwise turn large logits into infinities. A masked (-inf) logit stays masked.
  const int64_t vocab = static_cast<int64_t>(logits.size());
  if (params_.repetition_penalty != 1.0f) {
    const double penalty = params_.repetition_penalty;
    for (int32_t t : seen_) {
      if (t < 0 || t >= vocab || logits[t] == kNegInf) continue;
      const double l = logits[t];
      logits[t] = Saturate(l > 0 ? l / penalty : l * penalty);
    }
  }
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    for (const auto& [t, count] : output_counts_) {
      if (t < 0 || t >= vocab || logits[t] == kNegInf) continue;
      logits[t] = Saturate(static_cast<double>(logits[t]) -
                           static_cast<double>(params_.frequency_penalty) * count -
                           params_.presence_penalty);
    }
  }
}

int32_t Sampler::Draw(std::span<const float> logits) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  const int32_t best = Argmax(logits);
  // Below the floor the distribution is a point mass on the argmax (and 1/T is unsafe); with
  // every token masked there is nothing to draw from.
  if (params_.temperature < kGreedyTemperature || logits[best] == kNegInf) return best;
  // Candidates sorted by logit (descending; ties to the lower id), cut by top-k. Masked tokens
  // sort last and are never candidates.
  order_.resize(vocab);
  std::iota(order_.begin(), order_.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  int32_t n = vocab;
  if (params_.top_k > 0 && params_.top_k < vocab) {
    n = params_.top_k;
    std::partial_sort(order_.begin(), order_.begin() + n, order_.end(), by_logit);
  } else {
    std::sort(order_.begin(), order_.end(), by_logit);
  }
  while (logits[order_[n - 1]] == kNegInf) --n;
  // Probabilities at this temperature relative to the top candidate, in double: the logit gap
  // is at most 2 * FLT_MAX and T >= kGreedyTemperature, so the exponent is a finite value
  // <= 0, probs_[0] is 1 and the sum lies in [1, n].
  const double t = params_.temperature;
  const double top = logits[order_[0]];
  probs_.resize(n);
  double sum = 0.0;
  for (int32_t i = 0; i < n; ++i) {
    probs_[i] = std::exp((static_cast<double>(logits[order_[i]]) - top) / t);
    sum += probs_[i];
  }
  // min-p: drop tokens below min_p times the most likely one (probs_[0] = 1).
  if (params_.min_p > 0.0f) {
    const double threshold = params_.min_p;
    while (n > 1 && probs_[n - 1] < threshold) sum -= probs_[--n];
  }
  // top-p: keep the smallest prefix whose mass reaches top_p.
  if (params_.top_p < 1.0f) {
    double cumulative = 0.0;
    for (int32_t i = 0; i < n; ++i) {
      cumulative += probs_[i];
      if (cumulative >= params_.top_p * sum) {
        n = i + 1;
        sum = cumulative;
        break;
      }
    }
  }
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * sum;
  double acc = 0.0;
  for (int32_t i = 0; i < n; ++i) {
    acc += probs_[i];
    if (u < acc) return order_[i];
  }
  return order_[n - 1];
}

SampledToken Sampler::Sample(std::span<float> logits) {
  SampledToken out;
  Sanitize(logits);
  std::vector<float> raw;
  if (params_.logprobs >= 0) raw.assign(logits.begin(), logits.end());
  ApplyPenalties(logits);
  out.token = Draw(logits);
  if (params_.logprobs >= 0) {
    const LogSoftmax log_softmax(raw);
    out.logprob = log_softmax.Of(raw[out.token]);
    const int32_t n = std::min<int32_t>(params_.logprobs, static_cast<int32_t>(raw.size()));
    std::vector<int32_t> ids(raw.size());
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int32_t a, int32_t b) {
      return raw[a] > raw[b] || (raw[a] == raw[b] && a < b);
    });
    for (int32_t i = 0; i < n; ++i) out.top.push_back({ids[i], log_softmax.Of(raw[ids[i]])});
  }
  ++output_counts_[out.token];
  seen_.insert(out.token);
  return out;
}

}  // namespace sy
