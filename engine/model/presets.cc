#include "engine/model/presets.h"

#include <utility>

namespace sy {

// Defined in the generated presets_data.cc.
extern const std::pair<std::string_view, std::string_view> kPresets[];
extern const int kNumPresets;

std::vector<std::string> PresetNames() {
  std::vector<std::string> names;
  for (int i = 0; i < kNumPresets; ++i) names.emplace_back(kPresets[i].first);
  return names;
}

StatusOr<std::string> PresetConfigText(std::string_view name) {
  for (int i = 0; i < kNumPresets; ++i) {
    if (kPresets[i].first == name) return std::string(kPresets[i].second);
  }
  std::string known;
  for (const std::string& n : PresetNames()) known += (known.empty() ? "" : ", ") + n;
  return Status::NotFound("unknown preset '" + std::string(name) + "' (known: " + known + ")");
}

}  // namespace sy
