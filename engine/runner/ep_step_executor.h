// EpStepExecutor: the leader's (rank 0) side of an expert-parallel step: sends every worker
// its batch, runs its own batch through its runner (the MoE layers exchange token-expert pairs
// with all ranks), then gathers the workers' logits and routing. RunEpWorker is the other side:
// the loop a worker rank runs until the leader stops it. Engine thread / worker thread only.
#pragma once

#include <memory>

#include "engine/dist/communicator.h"
#include "engine/runner/expert_parallel.h"
#include "engine/runner/step_executor.h"

namespace sy {

class EpStepExecutor final : public StepExecutor {
 public:
  // `runner` and `ep` (its model's expert dispatch) are rank 0's; neither is owned. The group
  // is ep->comm(), whose rank must be 0.
  EpStepExecutor(ModelRunner* runner, ExpertParallel* ep);
  // Stops the workers (sends the stop command) if Stop() was not called.
  ~EpStepExecutor() override;

  int num_ranks() const override { return comm_->size(); }
  Status Step(std::span<const StepBatch> batches, const MigrationAction& migration,
              std::vector<std::vector<float>>* logits) override;
  const std::vector<StepRouting>& routing() const override { return routing_; }
  Status Heartbeat() override;
  // Tells every worker to leave its loop. Idempotent.
  Status Stop() override;

 private:
  ModelRunner* runner_;
  ExpertParallel* ep_;
  Communicator* comm_;
  std::vector<StepRouting> routing_;
  bool stopped_ = false;
};

// Serves steps on a worker rank (ep->comm().rank() > 0; `ep` is the runner's model's expert
// dispatch) until the leader sends stop. A step that fails here is reported to the leader (whose
// engine then stops, and stops this loop); returns early only on a communication or protocol
// error, after which the group is broken.
Status RunEpWorker(ModelRunner* runner, ExpertParallel* ep);

// A step with no tokens (a rank with no work still takes part in every MoE exchange).
StepBatch EmptyStepBatch();

}  // namespace sy
