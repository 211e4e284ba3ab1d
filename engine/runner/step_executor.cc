#include "engine/runner/step_executor.h"

#include "engine/core/check.h"

namespace sy {

void CollectStepRouting(int64_t tokens, const ExpertLoad& load, StepRouting* out) {
  out->tokens = tokens;
  out->choices.resize(load.num_layers());
  out->ranks.resize(load.num_layers());
  for (int64_t l = 0; l < load.num_layers(); ++l) {
    out->choices[l] = load.step_choices(l);
    out->ranks[l] = load.step_ranks(l);
  }
}

Status LocalStepExecutor::Step(std::span<const StepBatch> batches, const MigrationAction& migration,
                               std::vector<std::vector<float>>* logits) {
  SY_CHECK(batches.size() == 1 && migration.empty());
  logits->resize(1);
  SY_RETURN_IF_ERROR(runner_->Step(batches[0], &(*logits)[0]));
  CollectStepRouting(static_cast<int64_t>(batches[0].tokens.size()), runner_->expert_load(),
                     &routing_[0]);
  return Status::Ok();
}

}  // namespace sy
