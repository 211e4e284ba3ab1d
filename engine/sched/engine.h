// Engine: the serving engine. Owns the model runner, scheduler and KV blocks, and runs
// continuous batching on its own thread. Frontends talk to it only through Submit / Abort and
// the RequestStream each submission returns; every public call is thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/model/config.h"
#include "engine/sched/engine_observer.h"
#include "engine/sched/request.h"
#include "engine/tokenizer/tokenizer.h"

namespace sy {

struct EngineOptions {
  std::string model_dir;
  int threads = 0;                       // CPU threads; 0: all cores
  int64_t max_num_batched_tokens = 512;  // token budget of one step (chunked prefill)
  int64_t max_num_seqs = 64;             // sequences per step
  int64_t max_queued_requests = 256;     // waiting requests beyond this are rejected at Submit
  int64_t num_kv_blocks = 0;             // 0: from kv_cache_bytes
  int64_t kv_cache_bytes = 1LL << 30;    // KV pool size when num_kv_blocks is 0
  int block_size = 16;
  int64_t max_model_len = 0;  // 0: the model's max_position_embeddings
  bool enable_prefix_caching = true;
  EngineObserver* observer = nullptr;  // not owned; must outlive the engine
};

// Gauges read at any time (a consistent snapshot taken at the last step boundary).
struct EngineSnapshot {
  int64_t num_running = 0;  // requests with sequences admitted to the KV cache
  int64_t num_waiting = 0;  // requests queued, including preempted ones
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_used = 0;        // blocks referenced by live sequences
  double kv_usage = 0;               // kv_blocks_used / kv_blocks_total
  int64_t prefix_cache_queries = 0;  // cumulative prompt tokens looked up in the prefix cache
  int64_t prefix_cache_hits = 0;     // cumulative prompt tokens found there
  int64_t num_preemptions = 0;       // cumulative
  int64_t steps = 0;                 // cumulative
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
};

class Engine {
 public:
  // Loads the model and tokenizer, plans memory, runs one warm-up step and starts the engine
  // thread. Errors: those of loading, and InvalidArgument for inconsistent options.
  static StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  virtual ~Engine() = default;  // stops the thread; open streams finish with kAbort

  // Queues a request. Errors (nothing is queued): InvalidArgument for an empty prompt, invalid
  // sampling or stop parameters, n < 1, or prompt + max_tokens beyond max_model_len (checked
  // here, before any compute); ResourceExhausted when max_queued_requests are waiting;
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
};

}  // namespace sy
