#include "engine/sched/scheduler.h"

#include <algorithm>

#include "engine/core/check.h"

namespace sy {

Scheduler::Scheduler(const SchedulerConfig& config, BlockManager* blocks)
    : config_(config), blocks_(blocks) {}

void Scheduler::Add(Sequence* seq) {
  SY_CHECK(seq->blocks.ids.empty() && seq->num_computed_tokens == 0);
  seq->status = SequenceStatus::kWaiting;
  waiting_.push_back(seq);
}

void Scheduler::Remove(Sequence* seq) {
  if (auto it = std::find(running_.begin(), running_.end(), seq); it != running_.end()) {
    running_.erase(it);
  }
  if (auto it = std::find(waiting_.begin(), waiting_.end(), seq); it != waiting_.end()) {
    waiting_.erase(it);
  }
  blocks_->Free(&seq->blocks);
  seq->status = SequenceStatus::kFinished;
}

SchedulerOutput Scheduler::Schedule() {
  SchedulerOutput out;
  int64_t budget = config_.max_num_batched_tokens;
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    if (!ScheduleRunning(i, &budget, &out)) break;
  }
  // As vLLM: a step that had to preempt admits nobody, since blocks are short.
  if (out.preempted.empty()) AdmitWaiting(&budget, &out);
  return out;
}

bool Scheduler::ScheduleRunning(size_t i, int64_t* budget, SchedulerOutput* out) {
  Sequence* seq = running_[i];
  const int64_t n = std::min(seq->num_pending_tokens(), *budget);
  if (n <= 0) return true;
  const int64_t needed = seq->num_computed_tokens + n;
  while (!blocks_->CanAppend(seq->blocks, needed)) {
    // Latest admitted first; they come after `seq`, so none of them was scheduled yet.
    Sequence* victim = running_.back();
    Preempt(victim, out);
    if (victim == seq) return false;
  }
  blocks_->Append(needed, &seq->blocks);
  out->scheduled.push_back({seq, n});
  Count(*seq, n, out);
  *budget -= n;
  return true;
}

void Scheduler::Preempt(Sequence* seq, SchedulerOutput* out) {
  running_.pop_back();
  blocks_->Free(&seq->blocks);
  // Its output so far is kept and recomputed with the prompt when it is admitted again.
  seq->num_computed_tokens = 0;
  seq->status = SequenceStatus::kWaiting;
  ++seq->num_preemptions;
  waiting_.push_front(seq);
  out->preempted.push_back(seq);
}

void Scheduler::AdmitWaiting(int64_t* budget, SchedulerOutput* out) {
  for (auto it = waiting_.begin(); it != waiting_.end() && *budget > 0 &&
                                   static_cast<int64_t>(running_.size()) < config_.max_num_seqs;) {
    Sequence* seq = *it;
    if (seq->prefix_leader != nullptr && !seq->prefix_leader->prompt_computed) {
      ++it;  // not ready: its leader's prompt blocks are not cached yet
      continue;
    }
    const PrefixMatch match = blocks_->MatchPrefix(seq->tokens);
    const int64_t cached = static_cast<int64_t>(match.blocks.size()) * blocks_->block_size();
    const int64_t n = std::min(seq->num_tokens() - cached, *budget);
    if (!blocks_->CanAllocate(match, cached + n)) break;  // FCFS: nobody overtakes it
    blocks_->Allocate(match, cached + n, seq->num_tokens(), &seq->blocks);
    seq->num_computed_tokens = cached;
    if (seq->num_cached_tokens < 0) seq->num_cached_tokens = cached;
    seq->prefill_end = seq->num_tokens();
    seq->status = SequenceStatus::kRunning;
    it = waiting_.erase(it);
    running_.push_back(seq);
    out->scheduled.push_back({seq, n});
    Count(*seq, n, out);
    *budget -= n;
  }
}

void Scheduler::Count(const Sequence& seq, int64_t n, SchedulerOutput* out) {
  const int64_t prefill = std::clamp<int64_t>(seq.prefill_end - seq.num_computed_tokens, 0, n);
  out->num_prefill_tokens += prefill;
  out->num_decode_tokens += n - prefill;
}

void Scheduler::OnStepDone(const SchedulerOutput& output) {
  for (const ScheduledSequence& s : output.scheduled) {
    Sequence* seq = s.seq;
    seq->num_computed_tokens += s.num_tokens;
    if (seq->num_computed_tokens >= seq->num_prompt_tokens) seq->prompt_computed = true;
    blocks_->CacheFullBlocks(seq->tokens, seq->num_computed_tokens, &seq->blocks);
  }
}

}  // namespace sy
