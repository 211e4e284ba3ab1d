#include "engine/moe/placement.h"

#include <algorithm>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

#include "engine/core/bounded_json.h"
#include "engine/core/check.h"
#include "engine/core/file_util.h"
#include "engine/core/json_fields.h"
#include "engine/moe/int_array_json.h"

namespace sy {

namespace {

using json = nlohmann::json;
constexpr char kPlacementFormat[] = "switchyard-placement-v1";
constexpr int64_t kMaxInt32 = std::numeric_limits<int32_t>::max();

std::string LayerName(const std::vector<int32_t>& layers, int32_t li) {
  return "layer " + std::to_string(layers[li]);
}

}  // namespace

ExpertPlacement::ExpertPlacement(std::vector<int32_t> layers, int32_t num_experts,
                                 int32_t num_ranks, int32_t slots_per_rank)
    : layers_(std::move(layers)),
      num_experts_(num_experts),
      num_ranks_(num_ranks),
      slots_per_rank_(slots_per_rank) {
  SY_CHECK(num_experts >= 0 && num_ranks >= 0 && slots_per_rank >= 0);
  slots_.assign(layers_.size() * num_ranks_ * slots_per_rank_, -1);
}

ExpertPlacement ExpertPlacement::Contiguous(std::vector<int32_t> layers, int32_t num_experts,
                                            int32_t num_ranks, int32_t slots_per_rank) {
  SY_CHECK(num_ranks > 0);
  const int32_t per_rank = (num_experts + num_ranks - 1) / num_ranks;
  SY_CHECK_MSG(slots_per_rank >= per_rank, "%d slots per rank cannot hold %d experts on %d ranks",
               slots_per_rank, num_experts, num_ranks);
  ExpertPlacement placement(std::move(layers), num_experts, num_ranks, slots_per_rank);
  for (int32_t li = 0; li < placement.num_layers(); ++li) {
    for (int32_t e = 0; e < num_experts; ++e)
      placement.set_expert(li, e / per_rank, e % per_rank, e);
  }
  return placement;
}

int32_t ExpertPlacement::LayerIndex(int32_t layer) const {
  auto it = std::lower_bound(layers_.begin(), layers_.end(), layer);
  if (it == layers_.end() || *it != layer) return -1;
  return static_cast<int32_t>(it - layers_.begin());
}

int32_t ExpertPlacement::expert_at(int32_t li, int32_t rank, int32_t slot) const {
  SY_CHECK(li >= 0 && li < num_layers() && rank >= 0 && rank < num_ranks_ && slot >= 0 &&
           slot < slots_per_rank_);
  return slots_[(static_cast<size_t>(li) * num_ranks_ + rank) * slots_per_rank_ + slot];
}

void ExpertPlacement::set_expert(int32_t li, int32_t rank, int32_t slot, int32_t expert) {
  SY_CHECK(li >= 0 && li < num_layers() && rank >= 0 && rank < num_ranks_ && slot >= 0 &&
           slot < slots_per_rank_);
  slots_[(static_cast<size_t>(li) * num_ranks_ + rank) * slots_per_rank_ + slot] = expert;
}

std::vector<SlotRef> ExpertPlacement::replicas(int32_t li, int32_t expert) const {
  std::vector<SlotRef> found;
  for (int32_t rank = 0; rank < num_ranks_; ++rank) {
    for (int32_t slot = 0; slot < slots_per_rank_; ++slot) {
      if (expert_at(li, rank, slot) == expert) found.push_back({rank, slot});
    }
  }
  return found;
}

int64_t ExpertPlacement::MovesFrom(const ExpertPlacement& other) const {
  SY_CHECK_MSG(layers_ == other.layers_ && num_experts_ == other.num_experts_ &&
                   num_ranks_ == other.num_ranks_,
               "MovesFrom needs placements of the same layers, experts and ranks");
  int64_t moves = 0;
  std::vector<char> hosted_before(num_experts_);
  for (int32_t li = 0; li < num_layers(); ++li) {
    for (int32_t rank = 0; rank < num_ranks_; ++rank) {
      std::fill(hosted_before.begin(), hosted_before.end(), 0);
      for (int32_t slot = 0; slot < other.slots_per_rank_; ++slot) {
        const int32_t e = other.expert_at(li, rank, slot);
        if (e >= 0 && e < num_experts_) hosted_before[e] = 1;
      }
      for (int32_t slot = 0; slot < slots_per_rank_; ++slot) {
        const int32_t e = expert_at(li, rank, slot);
        // A duplicate on one rank is invalid; count each expert once per rank regardless.
        if (e >= 0 && e < num_experts_ && !hosted_before[e]) {
          hosted_before[e] = 1;
          ++moves;
        }
      }
    }
  }
  return moves;
}

Status ExpertPlacement::Validate() const {
  if (num_experts_ <= 0 || num_ranks_ <= 0 || slots_per_rank_ <= 0) {
    return Status::InvalidArgument(
        "placement: num_experts, num_ranks and slots_per_rank must be "
        "positive");
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (layers_[i] < 0 || (i > 0 && layers_[i] <= layers_[i - 1])) {
      return Status::InvalidArgument("placement: layers must be non-negative and ascending");
    }
  }
  SY_CHECK(slots_.size() == layers_.size() * num_ranks_ * slots_per_rank_);
  std::vector<int32_t> copies(num_experts_);
  for (int32_t li = 0; li < num_layers(); ++li) {
    std::fill(copies.begin(), copies.end(), 0);
    for (int32_t rank = 0; rank < num_ranks_; ++rank) {
      std::vector<char> on_rank(num_experts_, 0);
      for (int32_t slot = 0; slot < slots_per_rank_; ++slot) {
        const int32_t e = expert_at(li, rank, slot);
        if (e == -1) continue;
        const std::string where = LayerName(layers_, li) + " rank " + std::to_string(rank) +
                                  " slot " + std::to_string(slot);
        if (e < 0 || e >= num_experts_) {
          return Status::InvalidArgument("placement: " + where + ": expert " + std::to_string(e) +
                                         " out of range [0, " + std::to_string(num_experts_) + ")");
        }
        if (on_rank[e]) {
          return Status::InvalidArgument("placement: " + where + ": expert " + std::to_string(e) +
                                         " appears twice on this rank");
        }
        on_rank[e] = 1;
        ++copies[e];
      }
    }
    for (int32_t e = 0; e < num_experts_; ++e) {
      if (copies[e] == 0) {
        return Status::InvalidArgument("placement: " + LayerName(layers_, li) + ": expert " +
                                       std::to_string(e) + " has no slot");
      }
    }
  }
  return Status::Ok();
}

Status ExpertPlacement::CheckCompatible(const std::vector<int32_t>& moe_layers, int32_t num_experts,
                                        int32_t num_ranks) const {
  SY_RETURN_IF_ERROR(Validate());
  if (moe_layers != layers_) {
    return Status::InvalidArgument("placement: its MoE layers differ from the model's");
  }
  if (num_experts != num_experts_) {
    return Status::InvalidArgument("placement: " + std::to_string(num_experts_) +
                                   " experts, the model has " + std::to_string(num_experts));
  }
  if (num_ranks != num_ranks_) {
    return Status::InvalidArgument("placement: " + std::to_string(num_ranks_) +
                                   " ranks, the group has " + std::to_string(num_ranks));
  }
  return Status::Ok();
}

StatusOr<ExpertPlacement> ExpertPlacement::FromJson(const std::string& text) {
  namespace jf = json_fields;
  SY_ASSIGN_OR_RETURN(const json doc, ParseBoundedJson(text, "placement: the document"));
  SY_ASSIGN_OR_RETURN(const json* format, jf::Member(doc, "format", "placement"));
  if (!format->is_string() || format->get<std::string>() != kPlacementFormat) {
    return jf::FieldError("placement.format", std::string("must be \"") + kPlacementFormat + "\"");
  }
  SY_ASSIGN_OR_RETURN(const int64_t experts,
                      jf::IntMember(doc, "num_experts", "placement", 1, kMaxInt32));
  SY_ASSIGN_OR_RETURN(const int64_t ranks,
                      jf::IntMember(doc, "num_ranks", "placement", 1, kMaxInt32));
  SY_ASSIGN_OR_RETURN(const int64_t slots,
                      jf::IntMember(doc, "slots_per_rank", "placement", 1, kMaxInt32));
  SY_ASSIGN_OR_RETURN(const json* layer_list, jf::Member(doc, "layers", "placement"));
  SY_RETURN_IF_ERROR(jf::CheckArray(*layer_list, "placement.layers", -1));

  // Read every slot before sizing anything from the declared counts, so a small file cannot
  // make us allocate a huge placement.
  std::vector<int32_t> layers;
  std::vector<int32_t> flat;
  for (size_t li = 0; li < layer_list->size(); ++li) {
    const json& entry = (*layer_list)[li];
    const std::string path = "placement.layers[" + std::to_string(li) + "]";
    SY_ASSIGN_OR_RETURN(const int64_t layer, jf::IntMember(entry, "layer", path, 0, kMaxInt32));
    SY_ASSIGN_OR_RETURN(const json* rank_list, jf::Member(entry, "slots", path));
    SY_RETURN_IF_ERROR(jf::CheckArray(*rank_list, path + ".slots", ranks));
    for (int64_t rank = 0; rank < ranks; ++rank) {
      SY_ASSIGN_OR_RETURN(
          const std::vector<int64_t> row,
          jf::IntArray((*rank_list)[rank], path + ".slots[" + std::to_string(rank) + "]", slots, -1,
                       experts - 1));
      flat.insert(flat.end(), row.begin(), row.end());
    }
    layers.push_back(static_cast<int32_t>(layer));
  }
  ExpertPlacement placement(std::move(layers), static_cast<int32_t>(experts),
                            static_cast<int32_t>(ranks), static_cast<int32_t>(slots));
  placement.slots_ = std::move(flat);
  SY_RETURN_IF_ERROR(placement.Validate());
  return placement;
}

std::string ExpertPlacement::ToJson() const {
  std::string out = std::string("{\n  \"format\": \"") + kPlacementFormat + "\",\n";
  out += "  \"num_experts\": " + std::to_string(num_experts_) + ",\n";
  out += "  \"num_ranks\": " + std::to_string(num_ranks_) + ",\n";
  out += "  \"slots_per_rank\": " + std::to_string(slots_per_rank_) + ",\n";
  out += "  \"layers\": [";
  for (int32_t li = 0; li < num_layers(); ++li) {
    out += li == 0 ? "\n" : ",\n";
    out += "    {\"layer\": " + std::to_string(layers_[li]) + ", \"slots\": [";
    for (int32_t rank = 0; rank < num_ranks_; ++rank) {
      if (rank > 0) out += ", ";
      const size_t begin = (static_cast<size_t>(li) * num_ranks_ + rank) * slots_per_rank_;
      AppendIntArray(std::span<const int32_t>(slots_.data() + begin, slots_per_rank_), &out);
    }
    out += "]}";
  }
  out += "\n  ]\n}\n";
  return out;
}

StatusOr<ExpertPlacement> ExpertPlacement::Load(const std::string& path) {
  SY_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  StatusOr<ExpertPlacement> placement = FromJson(text);
  if (!placement.ok()) {
    return Status(placement.status().code(), path + ": " + placement.status().message());
  }
  return placement;
}

Status ExpertPlacement::Save(const std::string& path) const {
  return WriteStringToFile(path, ToJson());
}

}  // namespace sy
