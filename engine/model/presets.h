// Model presets: Hugging Face config.json files from configs/presets/, compiled into the
// binary so `make-model --preset NAME` works from any directory.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sy {

std::vector<std::string> PresetNames();
// The preset's config.json text; NotFound listing the known presets.
StatusOr<std::string> PresetConfigText(std::string_view name);

}  // namespace sy
