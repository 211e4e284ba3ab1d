// Engine: the serving engine. Owns the model runner, scheduler and KV blocks, and runs
// continuous batching on its own thread. Frontends talk to it only through Submit / Abort and
// the RequestStream each submission returns; every public call is thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "engine/backend/backend_factory.h"
#include "engine/dist/communicator.h"
#include "engine/model/config.h"
#include "engine/model/model_weights.h"
#include "engine/moe/placement.h"
#include "engine/moe/routing_stats.h"
#include "engine/sched/engine_observer.h"
#include "engine/sched/request.h"
#include "engine/tokenizer/tokenizer.h"

namespace sy {

struct EngineOptions {
  std::string model_dir;        // a Hugging Face model directory, or "preset:NAME" (random weights)
  bool random_weights = false;  // make the weights on the device instead of reading them
  uint64_t random_seed = 0;
  Quantization quantization = Quantization::kNone;    // of the matmul weights, at load
  std::string device = "cpu";                         // cpu, cuda or cuda:N
  KvCacheDType kv_cache_dtype = KvCacheDType::kAuto;  // --kv-cache-dtype
  int threads = 0;                                    // CPU threads; 0: all cores
  // GPU: the share of device memory this engine may use; the KV pool gets what the weights,
  // workspace and scratch leave (when num_kv_blocks is 0).
  double gpu_memory_utilization = 0.9;
  bool enforce_eager = false;            // GPU: no CUDA graphs for decode steps
  int64_t max_num_batched_tokens = 512;  // token budget of one step (chunked prefill)
  int64_t max_num_seqs = 64;             // sequences per step
  int64_t max_queued_requests = 256;     // waiting sequences (n per request) beyond this: rejected
  int64_t num_kv_blocks = 0;             // 0: from kv_cache_bytes
  int64_t kv_cache_bytes = 1LL << 30;    // KV pool size when num_kv_blocks is 0
  int block_size = 16;
  int64_t max_model_len = 0;  // 0: the model's max_position_embeddings
  bool enable_prefix_caching = true;
  EngineObserver* observer = nullptr;  // not owned; must outlive the engine
  // Fed with every step's routing choices of every rank; not owned; must outlive the engine.
  RoutingStats* routing_stats = nullptr;

  // Expert parallelism (data-parallel attention, expert-parallel MoE). With a communicator of
  // size N > 1, Create makes rank 0, the leader: it owns the requests of all N ranks (each rank
  // its own scheduler and KV cache) and drives every step; ranks 1..N-1 run RunWorker with the
  // same options. Not owned; must outlive the engine.
  Communicator* communicator = nullptr;
  // Where experts live; null: Contiguous over expert_slots_per_rank (0: ceil(experts / N)).
  std::shared_ptr<const ExpertPlacement> placement;
  int expert_slots_per_rank = 0;
  // Live rebalancing (needs routing_stats): every interval, re-plan from the routing window
  // with this planner strategy ("greedy" or "ilp") and migrate experts while serving.
  double rebalance_interval_s = 0;  // 0: off
  std::string rebalance_strategy = "greedy";
  double rebalance_time_limit_s = 1.0;
  double rebalance_min_gain = 0.02;  // relative objective improvement worth a migration
};

// Gauges read at any time (a consistent snapshot taken at the last step boundary).
struct EngineSnapshot {
  int64_t num_running = 0;  // requests with sequences admitted to the KV cache
  int64_t num_waiting = 0;  // requests queued, including preempted ones
  int64_t kv_blocks_total = 0;
  int32_t block_size = 0;            // tokens per KV-cache block
  int64_t kv_blocks_used = 0;        // blocks referenced by live sequences
  double kv_usage = 0;               // kv_blocks_used / kv_blocks_total
  int64_t prefix_cache_queries = 0;  // cumulative prompt tokens looked up in the prefix cache
  int64_t prefix_cache_hits = 0;     // cumulative prompt tokens found there
  int64_t num_preemptions = 0;       // cumulative
  int64_t steps = 0;                 // cumulative
  int32_t num_ranks = 1;             // data-parallel ranks (expert parallelism)
  int64_t num_rebalances = 0;        // live migrations committed (cumulative)
  int64_t experts_moved = 0;         // expert copies those migrations made (cumulative)
  int64_t rebalance_failures = 0;    // plans the rebalancer could not make (cumulative)
};

// The output of one submitted request. The engine pushes updates; the frontend pops them.
// Dropping the last reference to a stream does not abort the request: call Engine::Abort.
class RequestStream {
 public:
  virtual ~RequestStream() = default;
  virtual uint64_t id() const = 0;
  // Waits up to `timeout` for the next update, merging any that queued up. Returns false on
  // timeout. After the update with `finished` set, returns false at once.
  virtual bool Next(RequestUpdate* update, std::chrono::milliseconds timeout) = 0;
  // For event-driven frontends: calls `ready` each time an update is pushed, and at once when
  // one is already waiting. It runs on the engine's thread (or the caller's), so it must not
  // block; it only schedules a Next(update, 0) elsewhere. Replaces any earlier callback.
  virtual void SetReadyCallback(std::function<void()> ready) = 0;
};

class Engine {
 public:
  // Loads the model and tokenizer, plans memory, runs one warm-up step and starts the engine
  // thread. Errors: those of loading, and InvalidArgument for inconsistent options.
  static StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  // Serves as worker rank options.communicator->rank() > 0 until the leader's engine stops.
  // Errors: those of loading, and of communication.
  static Status RunWorker(const EngineOptions& options);
  virtual ~Engine() = default;  // stops the thread; open streams finish with kAbort

  // Queues a request. Errors (nothing is queued): InvalidArgument for an empty prompt, invalid
  // sampling or stop parameters, n or stop lists over the bounds of request_limits.h, or prompt
  // + max_tokens beyond max_model_len (checked here, before any compute); ResourceExhausted
  // when its n sequences would take the queue past max_queued_requests sequences;
  // Unavailable once Drain() was called or the engine thread has died.
  virtual StatusOr<std::shared_ptr<RequestStream>> Submit(RequestSpec spec) = 0;

  // Aborts a request; its blocks are freed at the next step boundary and its stream ends with
  // finish reason kAbort. Unknown or finished ids are ignored.
  virtual void Abort(uint64_t request_id) = 0;

  // Stops accepting requests (Submit returns Unavailable); running ones go on to completion.
  virtual void Drain() = 0;
  // Whether any request is queued or running.
  virtual bool Idle() const = 0;
  // False once the engine thread has stopped because of an internal fault.
  virtual bool Alive() const = 0;

  virtual EngineSnapshot Snapshot() const = 0;
  virtual const ModelConfig& model_config() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  virtual int64_t max_model_len() const = 0;
  virtual const std::string& model_dir() const = 0;

  // Expert parallelism: the placement in use (null with one rank).
  virtual std::shared_ptr<const ExpertPlacement> placement() const { return nullptr; }
  // Migrates to `placement` live: experts move over the next steps (one MoE layer per step,
  // run even while idle) and every rank switches at one step boundary. Returns at once, with
  // the number of expert copies the migration makes. Errors: NotFound with one rank;
  // InvalidArgument for a placement that does not fit the model and group or uses more slots
  // per rank than the group has; Unavailable while another migration is in progress.
  virtual StatusOr<int64_t> ApplyPlacement(const ExpertPlacement& placement) {
    return Status::NotFound("this server has no expert parallelism (one rank)");
  }
};

}  // namespace sy
