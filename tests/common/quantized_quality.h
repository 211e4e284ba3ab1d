// How far a model quantized at load (--quantization), or one with a narrower KV cache
// (--kv-cache-dtype), strays from the unquantized one on a golden fixture: the fixture's prompts
// through both, compared position by position (max |logit diff|, KL divergence of the next-token
// distributions, top-1 agreement) and by greedy continuation.
#pragma once

#include <cstdint>
#include <string>

#include "engine/backend/backend_factory.h"
#include "engine/model/model_weights.h"

namespace sy::testing {

struct QuantizedQuality {
  double max_logit_diff = 0;
  double max_kl = 0;   // nats, at the worst prompt position
  double mean_kl = 0;  // nats, over all prompt positions
  int64_t positions = 0;
  int64_t top1_same = 0;
  int64_t greedy_same = 0;  // greedy tokens (32 per prompt) before the first split
  int64_t greedy_total = 0;
  double top1() const { return static_cast<double>(top1_same) / static_cast<double>(positions); }
  double greedy() const {
    return static_cast<double>(greedy_same) / static_cast<double>(greedy_total);
  }
};

// Runs golden fixture model `name` unquantized and with `q` on the CPU, prints one line with the
// measures, and records them as test properties. Fails the current test on a load error.
QuantizedQuality MeasureQuantizedQuality(const std::string& name, Quantization q);

// The same measures for golden fixture model `name` with its KV cache in `kv` (bf16 or fp8)
// against the f32 cache, weights unquantized, on the CPU.
QuantizedQuality MeasureKvCacheQuality(const std::string& name, KvCacheDType kv);

}  // namespace sy::testing
