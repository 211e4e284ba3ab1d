#include "engine/runner/ep_step_executor.h"

#include <string>

#include "engine/core/check.h"
#include "engine/runner/ep_wire.h"

namespace sy {

StepBatch EmptyStepBatch() {
  StepBatch b;
  b.max_blocks_per_seq = 1;
  return b;
}

EpStepExecutor::EpStepExecutor(ModelRunner* runner, Communicator* comm)
    : runner_(runner), comm_(comm), routing_(comm->size()) {
  SY_CHECK(comm->rank() == 0);
}

EpStepExecutor::~EpStepExecutor() { (void)Stop(); }

Status EpStepExecutor::Stop() {
  if (stopped_) return Status::Ok();
  stopped_ = true;
  std::vector<std::vector<uint8_t>> messages(comm_->size(), EncodeStopCommand());
  return ScatterFromLeader(*comm_, messages).status();
}

Status EpStepExecutor::Heartbeat() {
  SY_CHECK(!stopped_);
  std::vector<std::vector<uint8_t>> messages(comm_->size(), EncodeHeartbeatCommand());
  return ScatterFromLeader(*comm_, messages).status();
}

Status EpStepExecutor::Step(std::span<const StepBatch> batches, const MigrationAction& migration,
                            std::vector<std::vector<float>>* logits) {
  const int n = comm_->size();
  SY_CHECK(static_cast<int>(batches.size()) == n && !stopped_);
  std::vector<std::vector<uint8_t>> messages(n);
  for (int r = 1; r < n; ++r) messages[r] = EncodeStepCommand(batches[r], migration);
  SY_RETURN_IF_ERROR(ScatterFromLeader(*comm_, messages).status());
  logits->resize(n);
  // A local failure must not skip the gather: the workers are waiting in it.
  Status local = ApplyMigration(migration, runner_->model().expert_parallel());
  if (local.ok()) local = runner_->Step(batches[0], &(*logits)[0]);
  CollectStepRouting(static_cast<int64_t>(batches[0].tokens.size()), runner_->expert_load(),
                     &routing_[0]);
  SY_ASSIGN_OR_RETURN(std::vector<std::vector<uint8_t>> replies,
                      GatherToLeader(*comm_, std::vector<uint8_t>()));
  SY_RETURN_IF_ERROR(local);
  for (int r = 1; r < n; ++r) {
    SY_ASSIGN_OR_RETURN(EpReply reply, DecodeReply(replies[r]));
    if (!reply.status.ok()) {
      return Status(reply.status.code(),
                    "rank " + std::to_string(r) + ": " + reply.status.message());
    }
    (*logits)[r] = std::move(reply.logits);
    routing_[r] = std::move(reply.routing);
  }
  return Status::Ok();
}

Status RunEpWorker(ModelRunner* runner, Communicator* comm) {
  SY_CHECK(comm->rank() > 0);
  StepBatch batch;
  MigrationAction migration;
  std::vector<float> logits;
  StepRouting routing;
  for (;;) {
    SY_ASSIGN_OR_RETURN(std::vector<uint8_t> message, ScatterFromLeader(*comm, {}));
    SY_ASSIGN_OR_RETURN(EpCommand command, DecodeCommand(message, &batch, &migration));
    if (command == EpCommand::kStop) return Status::Ok();
    if (command == EpCommand::kHeartbeat) continue;
    Status st = ApplyMigration(migration, runner->model().expert_parallel());
    if (st.ok()) st = runner->Step(batch, &logits);
    CollectStepRouting(static_cast<int64_t>(batch.tokens.size()), runner->expert_load(), &routing);
    if (!st.ok()) logits.clear();
    SY_RETURN_IF_ERROR(GatherToLeader(*comm, EncodeReply(st, logits, routing)).status());
  }
}

}  // namespace sy
