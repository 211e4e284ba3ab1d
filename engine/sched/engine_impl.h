// EngineImpl: the Engine on one backend (CPU or CUDA). Public calls (any thread) exchange new
// requests, aborts and gauges with the engine thread under one mutex; everything else (schedulers,
// blocks, sequences, the runner) belongs to the engine thread alone. With expert parallelism it
// keeps one scheduler and block pool per rank and steps all ranks together.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/model/moe_model.h"
#include "engine/runner/expert_parallel.h"
#include "engine/runner/model_runner.h"
#include "engine/runner/step_executor.h"
#include "engine/sched/block_manager.h"
#include "engine/sched/engine.h"
#include "engine/sched/rebalancer.h"
#include "engine/sched/request_stream.h"
#include "engine/sched/scheduler.h"
#include "engine/sched/sequence.h"

namespace sy {

class EngineImpl;

// How a stream's OutputProcessor reaches the engine to stop a choice at a stop string, without
// outliving it: the engine detaches itself first thing in its destructor.
struct ChoiceStopLink {
  std::mutex mu;
  EngineImpl* engine = nullptr;  // under mu; null once the engine is going away
};

// A choice that the consumer side found finished by a stop string.
struct ChoiceStop {
  uint64_t request_id = 0;
  int32_t index = 0;
};

// A submitted request and its choices, as the engine thread tracks them.
struct ActiveRequest {
  uint64_t id = 0;
  int32_t rank = 0;  // the data-parallel rank whose scheduler and KV cache serve it
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

// What one rank runs: its backend, model (with its share of the experts) and runner.
struct RankModel {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<MoeModel> model;
  std::unique_ptr<ExpertParallel> ep;  // null on a single rank
  std::unique_ptr<ModelRunner> runner;
  int64_t max_model_len = 0;
};

// Loads this process's rank (options.communicator's, or the only one) and plans its memory.
StatusOr<RankModel> LoadRankModel(const EngineOptions& options);

// The scheduling state of one data-parallel rank, on the leader.
struct RankScheduler {
  RankScheduler(int32_t num_blocks, const EngineOptions& o)
      : blocks(num_blocks, o.block_size, o.enable_prefix_caching),
        scheduler({o.max_num_batched_tokens, o.max_num_seqs}, &blocks) {}
  BlockManager blocks;
  Scheduler scheduler;
  SchedulerOutput out;                // this step's schedule
  std::vector<Sequence*> logit_seqs;  // the sequence of each logits row
  int64_t live_requests = 0;
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(const EngineOptions& options, RankModel rank, std::unique_ptr<Tokenizer> tokenizer,
             std::unique_ptr<StepExecutor> executor, std::unique_ptr<Rebalancer> rebalancer);
  ~EngineImpl() override;

  StatusOr<std::shared_ptr<RequestStream>> Submit(RequestSpec spec) override;
  void Abort(uint64_t request_id) override;
  void Drain() override;
  bool Idle() const override;
  bool Alive() const override { return alive_.load(); }
  EngineSnapshot Snapshot() const override;
  const ModelConfig& model_config() const override { return rank_.model->config(); }
  const Tokenizer& tokenizer() const override { return *tokenizer_; }
  int64_t max_model_len() const override { return max_model_len_; }
  const std::string& model_dir() const override { return options_.model_dir; }
  std::shared_ptr<const ExpertPlacement> placement() const override;
  StatusOr<int64_t> ApplyPlacement(const ExpertPlacement& placement) override;

  void Start();
  // Queues the end of one choice of a request (a stop string matched on the consumer side); it
  // is finished with kStop and its blocks freed at the next step boundary, like an Abort.
  // Unknown or finished choices are ignored.
  void StopChoice(uint64_t request_id, int32_t index);

 private:
  Status Validate(const RequestSpec& spec) const;
  Status Reject(Status status) const;
  // What a request's OutputProcessor calls to stop one of its choices (through link_).
  OutputProcessor::StopChoice StopChoiceFor(uint64_t request_id) const;

  // --- engine thread (engine_loop.cc) ---
  // Runs RunLoop; an exception escaping it stops the engine as a failed step does.
  void Loop();
  void RunLoop();
  // Takes the requests still incoming and ends every request with `reason` and `status`.
  void EndAll(FinishReason reason, const Status& status);
  // Marks the engine dead and ends every request with kError.
  void Fail(const Status& status);
  void AddRequest(std::unique_ptr<ActiveRequest> request);
  void AbortRequest(uint64_t id, FinishReason reason, const Status& status);
  void ApplyChoiceStop(const ChoiceStop& stop);
  // Ends (as aborted, with status DeadlineExceeded) every request whose deadline has passed.
  void ExpireDeadlines(Clock::time_point now);
  bool HasWork() const;
  // Hands a requested placement to the rebalancer.
  void TakePlacementRequest(std::optional<ExpertPlacement> requested);
  Status RunStep();
  void BuildBatch(const SchedulerOutput& out, StepBatch* batch, std::vector<Sequence*>* seqs);
  void ProcessToken(Sequence* seq, std::span<float> logits, Clock::time_point now);
  void FinishSequence(ActiveRequest& r, Sequence* seq, FinishReason reason);
  CompletionDelta& DeltaFor(ActiveRequest& r, int32_t index);
  void ReportStep(double seconds);
  void ReportFinished(const ActiveRequest& r);
  // Publishes gauges and the live-request count, then pushes this step's updates.
  void Publish();

  const EngineOptions options_;
  const int64_t max_model_len_;
  RankModel rank_;
  // Shared with the streams' output processors, which may decode after the engine is gone.
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unique_ptr<StepExecutor> executor_;
  std::unique_ptr<Rebalancer> rebalancer_;  // null unless live rebalancing is on
  const int64_t kv_blocks_per_rank_;
  std::vector<int32_t> eos_ids_;

  // Engine thread only.
  std::vector<std::unique_ptr<RankScheduler>> ranks_;
  std::unordered_map<uint64_t, std::unique_ptr<ActiveRequest>> requests_;
  std::vector<ActiveRequest*> touched_;  // requests with updates this step
  std::vector<StepBatch> batches_;       // per rank
  std::vector<std::vector<float>> logits_;
  int64_t num_preemptions_ = 0;
  int64_t steps_ = 0;
  int64_t dequeued_ = 0;  // sequences that left the queue (scheduled or ended) since Publish
  int64_t num_with_deadline_ = 0;  // live requests with a deadline (none: nothing to check)
  Clock::time_point last_exchange_ = Clock::now();  // last step or heartbeat with the group

  // Shared with public calls, under mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<ActiveRequest>> incoming_;
  std::vector<uint64_t> aborts_;
  std::vector<ChoiceStop> choice_stops_;
  std::optional<ExpertPlacement> requested_placement_;  // ApplyPlacement, not yet taken
  bool migrating_ = false;                              // a migration is pending or running
  std::shared_ptr<const ExpertPlacement> placement_;    // as of the last step boundary
  bool stop_ = false;
  bool draining_ = false;
  uint64_t next_id_ = 1;
  int64_t live_requests_ = 0;  // submitted and not yet finished
  int64_t num_queued_ = 0;     // sequences submitted and never scheduled (the bounded queue)
  EngineSnapshot snapshot_;
  std::atomic<bool> alive_{true};
  const std::shared_ptr<ChoiceStopLink> link_ = std::make_shared<ChoiceStopLink>();
  std::thread thread_;
};

}  // namespace sy
