#include "engine/model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace sy {
namespace {

// base^(-2i/dim) in float32 arithmetic, like torch's `1 / base ** (arange(0, dim, 2) / dim)`.
std::vector<float> DefaultInvFreq(double base, int64_t dim) {
  std::vector<float> inv(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(base), exponent);
  }
  return inv;
}

double YarnMscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

void ApplyYarn(const ModelConfig& c, int64_t dim, RopeTables* t) {
  const RopeScaling& s = c.rope_scaling;
  // As transformers 4.x: `factor` scales both the frequencies and the attention factor;
  // original_max_position_embeddings only places the ramp.
  const double factor = s.factor;
  const int64_t original = s.original_max_position_embeddings > 0
                               ? s.original_max_position_embeddings
                               : c.max_position_embeddings;
  if (s.attention_factor) {
    t->attention_scale = static_cast<float>(*s.attention_factor);
  } else if (s.mscale && s.mscale_all_dim && *s.mscale != 0 && *s.mscale_all_dim != 0) {
    t->attention_scale =
        static_cast<float>(YarnMscale(factor, *s.mscale) / YarnMscale(factor, *s.mscale_all_dim));
  } else {
    t->attention_scale = static_cast<float>(YarnMscale(factor, 1.0));
  }
  const double base = c.rope_theta;
  auto correction_dim = [&](double rotations) {
    return (static_cast<double>(dim) *
            std::log(static_cast<double>(original) / (rotations * 2 * std::numbers::pi))) /
           (2 * std::log(base));
  };
  double low = correction_dim(s.beta_fast);
  double high = correction_dim(s.beta_slow);
  if (s.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < dim / 2; ++i) {
    const float extrapolation = t->inv_freq[i];
    const float interpolation = extrapolation / static_cast<float>(factor);
    const float ramp = std::clamp(
        (static_cast<float>(i) - static_cast<float>(low)) / static_cast<float>(high - low), 0.0f,
        1.0f);
    const float extrapolation_weight = 1.0f - ramp;
    t->inv_freq[i] =
        interpolation * (1.0f - extrapolation_weight) + extrapolation * extrapolation_weight;
  }
}

void ApplyLlama3(const ModelConfig& c, RopeTables* t) {
  const RopeScaling& s = c.rope_scaling;
  const double old_len = static_cast<double>(s.original_max_position_embeddings);
  const double low_wavelen = old_len / s.low_freq_factor;
  const double high_wavelen = old_len / s.high_freq_factor;
  for (float& f : t->inv_freq) {
    const double wavelen = 2 * std::numbers::pi / f;
    if (wavelen > low_wavelen) {
      f = static_cast<float>(f / s.factor);
    } else if (wavelen >= high_wavelen) {
      const double smooth =
          (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = static_cast<float>((1 - smooth) * f / s.factor + smooth * f);
    }
  }
}

}  // namespace

StatusOr<RopeTables> ComputeRopeTables(const ModelConfig& c) {
  RopeTables t;
  t.rotary_dim =
      IsMla(c) ? c.mla.qk_rope_head_dim
               : static_cast<int64_t>(static_cast<double>(c.head_dim) * c.partial_rotary_factor);
  t.rotary_dim -= t.rotary_dim % 2;
  if (t.rotary_dim <= 0) return Status::InvalidArgument("rotary dimension must be positive");
  t.inv_freq = DefaultInvFreq(c.rope_theta, t.rotary_dim);
  const std::string& type = c.rope_scaling.type;
  if (type == "default") return t;
  if (type == "linear") {
    for (float& f : t.inv_freq) f /= static_cast<float>(c.rope_scaling.factor);
    return t;
  }
  if (type == "yarn") {
    ApplyYarn(c, t.rotary_dim, &t);
    return t;
  }
  if (type == "llama3") {
    if (c.rope_scaling.original_max_position_embeddings <= 0) {
      return Status::InvalidArgument("rope_scaling llama3 needs original_max_position_embeddings");
    }
    ApplyLlama3(c, &t);
    return t;
  }
  return Status::Unimplemented("rope_scaling type '" + type + "' is not supported");
}

}  // namespace sy
