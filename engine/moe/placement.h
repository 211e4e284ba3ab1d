// ExpertPlacement: where each logical expert of each MoE layer lives in an expert-parallel
// group: every rank has the same number of physical slots per layer; a slot holds one logical
// expert (or is empty); an expert may occupy slots on several ranks (replicas of hot experts),
// never two slots of one rank. Written by the planner, read by the server (--placement FILE).
// A value type; immutable once validated and thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/status.h"

namespace sy {

struct SlotRef {
  int32_t rank = 0;
  int32_t slot = 0;
};

class ExpertPlacement {
 public:
  ExpertPlacement() = default;
  // All slots empty. `layers` are the model's MoE layer indices, ascending.
  ExpertPlacement(std::vector<int32_t> layers, int32_t num_experts, int32_t num_ranks,
                  int32_t slots_per_rank);

  // Expert e of every layer on rank e / ceil(E / ranks), slot e % ceil(E / ranks); needs
  // slots_per_rank >= ceil(E / ranks). Spare slots stay empty.
  static ExpertPlacement Contiguous(std::vector<int32_t> layers, int32_t num_experts,
                                    int32_t num_ranks, int32_t slots_per_rank);

  // JSON file (format "switchyard-placement-v1"; see docs/planner.md).
  static StatusOr<ExpertPlacement> FromJson(const std::string& text);
  static StatusOr<ExpertPlacement> Load(const std::string& path);
  std::string ToJson() const;
  Status Save(const std::string& path) const;

  // Every expert of every layer has at least one slot, no rank holds an expert twice, ids are
  // in range. InvalidArgument saying what is wrong otherwise.
  Status Validate() const;
  // Validate() plus: the layers, expert count and rank count match a model and group.
  Status CheckCompatible(const std::vector<int32_t>& moe_layers, int32_t num_experts,
                         int32_t num_ranks) const;

  const std::vector<int32_t>& layers() const { return layers_; }
  int32_t num_layers() const { return static_cast<int32_t>(layers_.size()); }
  int32_t num_experts() const { return num_experts_; }
  int32_t num_ranks() const { return num_ranks_; }
  int32_t slots_per_rank() const { return slots_per_rank_; }
  // Index of model layer `layer` among layers(), or -1 if it is not an MoE layer here.
  int32_t LayerIndex(int32_t layer) const;

  // li is an index into layers(). Logical expert in a slot, -1 if empty.
  int32_t expert_at(int32_t li, int32_t rank, int32_t slot) const;
  void set_expert(int32_t li, int32_t rank, int32_t slot, int32_t expert);
  // Replicas of expert e in layer li, ordered by rank.
  std::vector<SlotRef> replicas(int32_t li, int32_t expert) const;
  // Experts whose set of hosting ranks differs between this placement and `other` (same shape),
  // counted as (layer, rank, expert) additions: what a migration must copy.
  int64_t MovesFrom(const ExpertPlacement& other) const;

  bool operator==(const ExpertPlacement& o) const = default;

 private:
  std::vector<int32_t> layers_;
  int32_t num_experts_ = 0;
  int32_t num_ranks_ = 0;
  int32_t slots_per_rank_ = 0;
  std::vector<int32_t> slots_;  // [layer index][rank][slot] -> expert or -1
};

}  // namespace sy
