// Scheduler: the continuous-batching policy. Each step it first serves the running sequences
// (decode tokens and remaining prefill chunks, in admission order), then admits waiting ones
// first-come first-served, under a token budget and a sequence limit, chunking prefills to fit.
// When a running sequence needs a block and none is free, the latest-admitted running sequence
// is preempted by recompute. Holds borrowed Sequence pointers; owned by the engine thread; not
// thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "engine/sched/block_manager.h"
#include "engine/sched/sequence.h"

namespace sy {

struct SchedulerConfig {
  int64_t max_num_batched_tokens = 512;
  int64_t max_num_seqs = 64;
};

// Feed tokens [num_computed_tokens, num_computed_tokens + num_tokens) of `seq` this step.
struct ScheduledSequence {
  Sequence* seq = nullptr;
  int64_t num_tokens = 0;
};

struct SchedulerOutput {
  std::vector<ScheduledSequence> scheduled;  // running ones first, then newly admitted
  std::vector<Sequence*> preempted;          // moved back to the front of the waiting queue
  int64_t num_prefill_tokens = 0;            // prompt or recomputed tokens
  int64_t num_decode_tokens = 0;
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, BlockManager* blocks);

  // Queues a sequence (holding no blocks) at the back of the waiting queue.
  void Add(Sequence* seq);
  // Drops a sequence (aborted or finished) from the queues and frees its blocks.
  void Remove(Sequence* seq);

  // Picks this step's work and allocates the KV blocks it needs.
  SchedulerOutput Schedule();
  // Records that the step ran: the scheduled tokens are now in the cache.
  void OnStepDone(const SchedulerOutput& output);

  bool HasWork() const { return !running_.empty() || !waiting_.empty(); }
  const std::vector<Sequence*>& running() const { return running_; }  // admission order
  const std::deque<Sequence*>& waiting() const { return waiting_; }

 private:
  // Schedules running_[i]; false when it had to preempt itself.
  bool ScheduleRunning(size_t i, int64_t* budget, SchedulerOutput* out);
  void Preempt(Sequence* seq, SchedulerOutput* out);
  void AdmitWaiting(int64_t* budget, SchedulerOutput* out);
  static void Count(const Sequence& seq, int64_t n, SchedulerOutput* out);

  SchedulerConfig config_;
  BlockManager* blocks_;
  std::vector<Sequence*> running_;
  std::deque<Sequence*> waiting_;
};

}  // namespace sy
