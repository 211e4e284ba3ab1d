// CheckpointWeightNames: the tensor names of a checkpoint's weights, with each MoE layer's
// routed experts in the layout (ExpertLayout: per expert or fused) the checkpoint stores.
#pragma once

#include "engine/core/status.h"
#include "engine/model/checkpoint.h"
#include "engine/model/config.h"
#include "engine/model/weight_names.h"

namespace sy {

// WeightNamesFor(config), except that an MoE layer whose checkpoint holds a fused
// `mlp.experts.gate_up_proj` or `mlp.experts.down_proj` gets kFused names. InvalidArgument
// naming both tensors for a layer that holds fused and per-expert tensors alike.
StatusOr<ModelWeightNames> CheckpointWeightNames(const ModelConfig& config,
                                                 const Checkpoint& checkpoint);

}  // namespace sy
