// The config.json fields of the DeepSeek family (DeepseekV2, DeepseekV3 / Kimi K2) and of
// GLM-4.5 (Glm4Moe, which routes like DeepSeek-V3 over ordinary grouped-query attention).
// Internal to config.cc.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include "engine/core/json_fields.h"
#include "engine/model/config.h"

namespace sy {

// Experts, routing, shared experts, dense-first layers and (DeepSeek) MLA, with transformers'
// defaults for absent fields. Called after the common fields are parsed.
Status ParseDeepseekFamilyFields(const json_fields::Fields& f, ModelConfig* c);

// Scores, groups, correction bias and scaling of the router; needs num_experts_per_tok.
Status ParseDeepseekFamilyRouter(const json_fields::Fields& f, ModelConfig* c);

// Writes those fields back under the architecture's own names.
void AddDeepseekFamilyFields(const ModelConfig& c, nlohmann::json* j);

}  // namespace sy
