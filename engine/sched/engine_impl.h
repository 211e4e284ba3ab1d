// EngineImpl: the Engine on the CPU backend. Public calls (any thread) exchange new requests,
// aborts and gauges with the engine thread under one mutex; everything else (scheduler, blocks,
// sequences, the runner) belongs to the engine thread alone.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/backend/cpu_backend.h"
#include "engine/model/moe_model.h"
#include "engine/runner/model_runner.h"
#include "engine/sched/block_manager.h"
#include "engine/sched/engine.h"
#include "engine/sched/request_stream.h"
#include "engine/sched/scheduler.h"
#include "engine/sched/sequence.h"

namespace sy {

// A submitted request and its choices, as the engine thread tracks them.
struct ActiveRequest {
  uint64_t id = 0;
  RequestSpec spec;
  std::shared_ptr<RequestStreamQueue> stream;
  std::vector<std::unique_ptr<Sequence>> seqs;  // one per choice
  int32_t num_finished = 0;
  std::optional<Clock::time_point> first_scheduled;
  std::optional<Clock::time_point> first_token;
  FinishReason last_finish = FinishReason::kStop;
  RequestUpdate outgoing;  // deltas of this step, pushed at the step boundary
  bool has_outgoing = false;
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineOptions& options, int64_t max_model_len,
             std::unique_ptr<CpuBackend> backend, std::unique_ptr<MoeModel> model,
             std::unique_ptr<Tokenizer> tokenizer, std::unique_ptr<ModelRunner> runner);
  ~EngineImpl() override;

  StatusOr<std::shared_ptr<RequestStream>> Submit(RequestSpec spec) override;
  void Abort(uint64_t request_id) override;
  void Drain() override;
  bool Idle() const override;
  bool Alive() const override { return alive_.load(); }
  EngineSnapshot Snapshot() const override;
  const ModelConfig& model_config() const override { return model_->config(); }
  const Tokenizer& tokenizer() const override { return *tokenizer_; }
  int64_t max_model_len() const override { return max_model_len_; }
  const std::string& model_dir() const override { return options_.model_dir; }

  void Start();

 private:
  Status Validate(const RequestSpec& spec) const;
  Status Reject(Status status) const;

  // --- engine thread (engine_loop.cc) ---
  void Loop();
  // Takes the requests still incoming and ends every request with `reason` and `status`.
  void EndAll(FinishReason reason, const Status& status);
  void AddRequest(std::unique_ptr<ActiveRequest> request);
  void AbortRequest(uint64_t id, FinishReason reason, const Status& status);
  Status RunStep();
  void BuildBatch(const SchedulerOutput& out);
  void ProcessToken(Sequence* seq, std::span<float> logits, Clock::time_point now);
  void FinishSequence(ActiveRequest& r, Sequence* seq, FinishReason reason);
  CompletionDelta& DeltaFor(ActiveRequest& r, int32_t index);
  void ReportStep(const SchedulerOutput& out, double seconds);
  void ReportFinished(const ActiveRequest& r);
  // Publishes gauges and the live-request count, then pushes this step's updates.
  void Publish();

  const EngineOptions options_;
  const int64_t max_model_len_;
  std::unique_ptr<CpuBackend> backend_;
  std::unique_ptr<MoeModel> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ModelRunner> runner_;
  std::vector<int32_t> eos_ids_;

  // Engine thread only.
  BlockManager blocks_;
  Scheduler scheduler_;
  std::unordered_map<uint64_t, std::unique_ptr<ActiveRequest>> requests_;
  std::vector<ActiveRequest*> touched_;  // requests with updates this step
  StepBatch batch_;
  std::vector<Sequence*> logit_seqs_;  // the sequence of each logits row
  std::vector<float> logits_;
  int64_t num_preemptions_ = 0;
  int64_t steps_ = 0;
  int64_t dequeued_ = 0;  // requests that left the queue (scheduled or ended) since Publish

  // Shared with public calls, under mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<ActiveRequest>> incoming_;
  std::vector<uint64_t> aborts_;
  bool stop_ = false;
  bool draining_ = false;
  uint64_t next_id_ = 1;
  int64_t live_requests_ = 0;  // submitted and not yet finished
  int64_t num_queued_ = 0;     // submitted and never scheduled (the bounded queue)
  EngineSnapshot snapshot_;
  std::atomic<bool> alive_{true};
  std::thread thread_;
};

}  // namespace sy
