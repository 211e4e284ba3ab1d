#include "engine/runner/ep_step_executor.h"

#include <string>

#include "engine/core/check.h"
#include "engine/runner/ep_wire.h"

namespace sy {

namespace {

constexpr char kPeerFailed[] = "another rank could not run the step";

// Whether every rank is fit to run the step: all ranks must enter the forward pass (full of
// collectives) together or not at all. Returns `local` if it failed, Internal if another rank's
// check failed, communication errors as they are.
Status AgreeToRun(Communicator& comm, const Status& local) {
  int64_t failed = local.ok() ? 0 : 1;
  SY_RETURN_IF_ERROR(comm.AllReduceSum(&failed, 1, ReduceType::kI64));
  if (!local.ok()) return local;
  if (failed > 0) return Status::Internal(kPeerFailed);
  return Status::Ok();
}

// Applies `action` to a rank's expert parallelism (a collective when it migrates a layer).
Status ApplyMigration(const MigrationAction& action, ExpertParallel* ep) {
  if (action.empty()) return Status::Ok();
  if (!action.stage_placement_json.empty()) {
    SY_ASSIGN_OR_RETURN(ExpertPlacement next,
                        ExpertPlacement::FromJson(action.stage_placement_json));
    SY_RETURN_IF_ERROR(ep->StagePlacement(std::move(next)));
  }
  if (action.migrate_layer >= 0) SY_RETURN_IF_ERROR(ep->MigrateLayer(action.migrate_layer));
  if (action.commit) SY_RETURN_IF_ERROR(ep->CommitPlacement());
  return Status::Ok();
}

// Checks a worker's reply against the batch it ran, before anything indexes with it.
Status CheckReply(const EpReply& reply, const StepBatch& batch, const ModelConfig& c, int ranks) {
  const int64_t tokens = static_cast<int64_t>(batch.tokens.size());
  const auto bad = [](const std::string& what) {
    return Status::DataLoss("malformed expert-parallel reply: " + what);
  };
  if (reply.logits.size() != batch.logits_indices.size() * static_cast<size_t>(c.vocab_size)) {
    return bad("logits of the wrong size");
  }
  const StepRouting& r = reply.routing;
  if (r.tokens != tokens || static_cast<int64_t>(r.choices.size()) != c.num_layers ||
      r.ranks.size() != r.choices.size()) {
    return bad("routing of the wrong shape");
  }
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const size_t pairs = c.layer_is_moe[l] && tokens > 0 ? tokens * c.num_experts_per_tok : 0;
    if (r.choices[l].size() != pairs || r.ranks[l].size() != pairs) {
      return bad("routing of the wrong shape");
    }
    for (size_t p = 0; p < pairs; ++p) {
      if (r.choices[l][p] < 0 || r.choices[l][p] >= c.num_experts || r.ranks[l][p] < 0 ||
          r.ranks[l][p] >= ranks) {
        return bad("expert or rank out of range");
      }
    }
  }
  return Status::Ok();
}

}  // namespace

StepBatch EmptyStepBatch() {
  StepBatch b;
  b.max_blocks_per_seq = 1;
  return b;
}

EpStepExecutor::EpStepExecutor(ModelRunner* runner, ExpertParallel* ep)
    : runner_(runner), ep_(ep), comm_(&ep->comm()), routing_(comm_->size()) {
  SY_CHECK(comm_->rank() == 0 && runner->model().expert_dispatch() == ep);
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
  // Past the scatter every rank runs the same collectives whatever fails: a local failure
  // must not skip the agreement, the forward pass or the gather that the workers are in.
  Status local = ApplyMigration(migration, ep_);
  if (local.ok()) local = runner_->Validate(batches[0]);
  local = AgreeToRun(*comm_, local);
  if (local.ok()) local = runner_->Step(batches[0], &(*logits)[0]);
  CollectStepRouting(static_cast<int64_t>(batches[0].tokens.size()), runner_->expert_load(),
                     &routing_[0]);
  StatusOr<std::vector<std::vector<uint8_t>>> gathered =
      GatherToLeader(*comm_, std::vector<uint8_t>());
  if (!gathered.ok()) return local.ok() ? gathered.status() : local;
  std::vector<EpReply> replies(n);
  for (int r = 1; r < n; ++r) {
    SY_ASSIGN_OR_RETURN(replies[r], DecodeReply((*gathered)[r]));
  }
  // Report the rank whose own check or compute failed, not the ranks that stood down for it.
  if (!local.ok() && local.message() != kPeerFailed) return local;
  for (int r = 1; r < n; ++r) {
    const Status& st = replies[r].status;
    if (!st.ok() && st.message() != kPeerFailed) {
      return Status(st.code(), "rank " + std::to_string(r) + ": " + st.message());
    }
  }
  SY_RETURN_IF_ERROR(local);
  const ModelConfig& c = runner_->model().config();
  for (int r = 1; r < n; ++r) {
    EpReply& reply = replies[r];
    SY_RETURN_IF_ERROR(reply.status);
    SY_RETURN_IF_ERROR(CheckReply(reply, batches[r], c, n));
    (*logits)[r] = std::move(reply.logits);
    routing_[r] = std::move(reply.routing);
  }
  return Status::Ok();
}

Status RunEpWorker(ModelRunner* runner, ExpertParallel* ep) {
  Communicator* comm = &ep->comm();
  SY_CHECK(comm->rank() > 0 && runner->model().expert_dispatch() == ep);
  StepBatch batch;
  MigrationAction migration;
  std::vector<float> logits;
  StepRouting routing;
  for (;;) {
    SY_ASSIGN_OR_RETURN(std::vector<uint8_t> message, ScatterFromLeader(*comm, {}));
    SY_ASSIGN_OR_RETURN(EpCommand command, DecodeCommand(message, &batch, &migration));
    if (command == EpCommand::kStop) return Status::Ok();
    if (command == EpCommand::kHeartbeat) continue;
    Status st = ApplyMigration(migration, ep);
    if (st.ok()) st = runner->Validate(batch);
    st = AgreeToRun(*comm, st);
    if (!st.ok() && st.code() == StatusCode::kUnavailable) return st;  // the group is broken
    if (st.ok()) st = runner->Step(batch, &logits);
    CollectStepRouting(static_cast<int64_t>(batch.tokens.size()), runner->expert_load(), &routing);
    if (!st.ok()) logits.clear();
    SY_RETURN_IF_ERROR(GatherToLeader(*comm, EncodeReply(st, logits, routing)).status());
  }
}

}  // namespace sy
