#include "engine/runner/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

namespace sy {
namespace {

// log(sum(exp(x))) computed stably.
float LogSumExp(std::span<const float> x) {
  const float m = *std::max_element(x.begin(), x.end());
  double s = 0.0;
  for (float v : x) s += std::exp(static_cast<double>(v - m));
  return m + static_cast<float>(std::log(s));
}

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
  const int64_t vocab = static_cast<int64_t>(logits.size());
  if (params_.repetition_penalty != 1.0f) {
    for (int32_t t : seen_) {
      if (t < 0 || t >= vocab) continue;
      float& l = logits[t];
      l = l > 0 ? l / params_.repetition_penalty : l * params_.repetition_penalty;
    }
  }
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    for (const auto& [t, count] : output_counts_) {
      if (t < 0 || t >= vocab) continue;
      logits[t] -= params_.frequency_penalty * static_cast<float>(count) + params_.presence_penalty;
    }
  }
}

int32_t Sampler::Draw(std::span<const float> logits) {
  const int32_t vocab = static_cast<int32_t>(logits.size());
  if (params_.temperature == 0.0f) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  // Candidates sorted by logit (descending; ties to the lower id), cut by top-k.
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
  // Probabilities at this temperature over the surviving candidates.
  const float inv_t = 1.0f / params_.temperature;
  const float top = logits[order_[0]] * inv_t;
  probs_.resize(n);
  double sum = 0.0;
  for (int32_t i = 0; i < n; ++i) {
    probs_[i] = std::exp(logits[order_[i]] * inv_t - top);
    sum += probs_[i];
  }
  // min-p: drop tokens below min_p times the most likely one (probs_[0] / sum).
  if (params_.min_p > 0.0f) {
    const float threshold = params_.min_p * probs_[0];
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
  std::vector<float> raw;
  if (params_.logprobs >= 0) raw.assign(logits.begin(), logits.end());
  ApplyPenalties(logits);
  out.token = Draw(logits);
  if (params_.logprobs >= 0) {
    const float lse = LogSumExp(raw);
    out.logprob = raw[out.token] - lse;
    const int32_t n = std::min<int32_t>(params_.logprobs, static_cast<int32_t>(raw.size()));
    std::vector<int32_t> ids(raw.size());
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int32_t a, int32_t b) {
      return raw[a] > raw[b] || (raw[a] == raw[b] && a < b);
    });
    for (int32_t i = 0; i < n; ++i) out.top.push_back({ids[i], raw[ids[i]] - lse});
  }
  ++output_counts_[out.token];
  seen_.insert(out.token);
  return out;
}

}  // namespace sy
