// StepExecutor: runs one engine step on every rank of a data-parallel group at once. Rank r
// runs batches[r] (possibly empty) and returns the logits of its logits_indices. One rank: the
// local ModelRunner (LocalStepExecutor); several: the leader's side of expert parallelism
// (EpStepExecutor). Used by the engine thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/runner/model_runner.h"

namespace sy {

// The routing choices of one rank's step, for routing statistics.
struct StepRouting {
  int64_t tokens = 0;
  // [model layer][token * top_k]: expert ids, and the rank that computed each pair (empty on a
  // single rank). Empty for layers without routed experts.
  std::vector<std::vector<int32_t>> choices;
  std::vector<std::vector<int32_t>> ranks;
};

// One step's part of a live expert migration, applied on every rank before the step runs
// (see ExpertParallel::StagePlacement).
struct MigrationAction {
  std::string stage_placement_json;  // non-empty: stage this placement first
  int32_t migrate_layer = -1;        // >= 0: copy this layer index's new experts
  bool commit = false;               // then switch every rank to the staged placement
  bool empty() const { return stage_placement_json.empty() && migrate_layer < 0 && !commit; }
};

class StepExecutor {
 public:
  virtual ~StepExecutor() = default;
  virtual int num_ranks() const = 0;
  // logits->at(r) gets batches[r].logits_indices.size() rows of vocab_size floats. `migration`
  // runs on every rank first; it must be empty on a single rank.
  virtual Status Step(std::span<const StepBatch> batches, const MigrationAction& migration,
                      std::vector<std::vector<float>>* logits) = 0;
  // Each rank's routing in the last Step.
  virtual const std::vector<StepRouting>& routing() const = 0;
  // Called while the engine idles, so that other ranks waiting for the next step do not time
  // out. An error means the group is broken.
  virtual Status Heartbeat() { return Status::Ok(); }
  // Releases the other ranks (they leave their worker loops). Idempotent.
  virtual Status Stop() { return Status::Ok(); }
};

// Copies a runner's last-step routing choices into `out`.
void CollectStepRouting(int64_t tokens, const ExpertLoad& load, StepRouting* out);

class LocalStepExecutor final : public StepExecutor {
 public:
  explicit LocalStepExecutor(ModelRunner* runner) : runner_(runner), routing_(1) {}
  int num_ranks() const override { return 1; }
  Status Step(std::span<const StepBatch> batches, const MigrationAction& migration,
              std::vector<std::vector<float>>* logits) override;
  const std::vector<StepRouting>& routing() const override { return routing_; }

 private:
  ModelRunner* runner_;
  std::vector<StepRouting> routing_;
};

}  // namespace sy
