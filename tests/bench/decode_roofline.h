// The bytes a single-sequence decode step reads, for decode_bench's memory-bandwidth roofline.
// Counted from the loaded weights, so the checkpoint's real dtypes count, not config.json's.
#pragma once

#include <cstdint>

#include "engine/model/config.h"
#include "engine/model/model_weights.h"

namespace sy {

// Every weight the step touches at its loaded size (one embedding row; routed experts: the
// top-k of each MoE layer), plus the K and V of `context` positions in a cache of kv_dtype
// (row scales included).
double DecodeBytesPerToken(const ModelConfig& config, const ModelWeights& weights, int64_t context,
                           DType kv_dtype = DType::kF32);

}  // namespace sy
