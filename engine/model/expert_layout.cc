#include "engine/model/expert_layout.h"

#include <cctype>
#include <map>
#include <string>

namespace sy {
namespace {

// For each layer with a per-expert tensor (`model.layers.{i}.mlp.experts.{e}.…` or Mixtral's
// `block_sparse_moe.experts.{e}.…`, whatever its suffix), the first such name.
std::map<int64_t, std::string> PerExpertTensors(const Checkpoint& checkpoint) {
  static const std::string kLayers = "model.layers.";
  std::map<int64_t, std::string> found;
  for (const std::string& name : checkpoint.names()) {
    if (!name.starts_with(kLayers)) continue;
    size_t pos = kLayers.size();
    const size_t digits = pos;
    while (pos < name.size() && std::isdigit(static_cast<unsigned char>(name[pos]))) ++pos;
    if (pos == digits || pos >= name.size() || name[pos] != '.') continue;
    const std::string rest = name.substr(pos + 1);
    for (const std::string moe : {"mlp.experts.", "block_sparse_moe.experts."}) {
      if (rest.starts_with(moe) && rest.size() > moe.size() &&
          std::isdigit(static_cast<unsigned char>(rest[moe.size()]))) {
        found.emplace(std::stoll(name.substr(digits, pos - digits)), name);
      }
    }
  }
  return found;
}

}  // namespace

StatusOr<ModelWeightNames> CheckpointWeightNames(const ModelConfig& config,
                                                 const Checkpoint& checkpoint) {
  ModelWeightNames names = WeightNamesFor(config);
  const std::map<int64_t, std::string> per_expert = PerExpertTensors(checkpoint);
  for (int64_t i = 0; i < static_cast<int64_t>(names.layers.size()); ++i) {
    LayerWeightNames& layer = names.layers[i];
    if (layer.router.empty()) continue;
    LayerWeightNames fused = layer;
    UseFusedExperts(config, i, &fused);
    const std::string& gate_up = fused.experts[0].gate;
    const std::string& down = fused.experts[0].down;
    if (!checkpoint.Has(gate_up) && !checkpoint.Has(down)) continue;
    const auto mixed = per_expert.find(i);
    if (mixed != per_expert.end()) {
      return Status::InvalidArgument(
          "layer " + std::to_string(i) + " stores its routed experts both fused (" +
          (checkpoint.Has(gate_up) ? gate_up : down) + ") and per expert (" + mixed->second +
          "); a layer must use one layout");
    }
    // A Mixtral checkpoint renamed only in part keeps its router under block_sparse_moe.
    if (!checkpoint.Has(fused.router) && checkpoint.Has(layer.router)) fused.router = layer.router;
    layer = std::move(fused);
  }
  return names;
}

}  // namespace sy
