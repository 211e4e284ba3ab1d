// Rotary position embedding tables: the inverse frequencies and attention scale that a
// config's rope_theta and rope_scaling imply, computed as Hugging Face transformers does.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/core/status.h"
#include "engine/model/config.h"

namespace sy {

struct RopeTables {
  int64_t rotary_dim = 0;        // leading dims of each head that rotate
  std::vector<float> inv_freq;   // rotary_dim / 2 entries
  float attention_scale = 1.0f;  // multiplies cos and sin (YaRN)
};

// Unimplemented for scaling types that depend on the sequence length (dynamic NTK).
StatusOr<RopeTables> ComputeRopeTables(const ModelConfig& config);

}  // namespace sy
