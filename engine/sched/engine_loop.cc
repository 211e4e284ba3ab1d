// The engine thread: takes new requests, aborts, stop-string stops and expired deadlines at
// step boundaries, runs the scheduler's steps through the model, samples, checks the token stop
// conditions and pushes stream updates (tokens; their text is made on the consumer's side).
#include <spdlog/spdlog.h>

#include <cmath>
#include <exception>
#include <limits>

#include "engine/sched/engine_impl.h"

namespace sy {
namespace {

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// How often an idle engine tells the other ranks of its group that it is still there.
constexpr std::chrono::seconds kHeartbeatInterval(1);

}  // namespace

// An exception escaping a step would end the process through std::terminate, without draining;
// it stops the engine instead, as a failed step does. Clients get a generic message, the log
// gets what was thrown.
void EngineImpl::Loop() {
  try {
    RunLoop();
    return;
  } catch (const std::exception& e) {
    spdlog::error("engine: exception in the engine loop: {}", e.what());
  } catch (...) {
    spdlog::error("engine: unknown exception in the engine loop");
  }
  Fail(Status::Internal("internal engine error"));
}

void EngineImpl::RunLoop() {
  for (;;) {
    std::vector<std::unique_ptr<ActiveRequest>> incoming;
    std::vector<uint64_t> aborts;
    std::vector<ChoiceStop> choice_stops;
    std::optional<ExpertPlacement> requested;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, kHeartbeatInterval, [&] {
        return stop_ || !incoming_.empty() || !aborts_.empty() || !choice_stops_.empty() ||
               requested_placement_ || HasWork();
      });
      if (stop_) break;
      incoming.swap(incoming_);
      aborts.swap(aborts_);
      choice_stops.swap(choice_stops_);
      requested.swap(requested_placement_);
    }
    TakePlacementRequest(std::move(requested));
    for (auto& r : incoming) AddRequest(std::move(r));
    for (uint64_t id : aborts) AbortRequest(id, FinishReason::kAbort, Status::Ok());
    for (const ChoiceStop& stop : choice_stops) ApplyChoiceStop(stop);
    if (num_with_deadline_ > 0) ExpireDeadlines(Clock::now());
    if (HasWork()) {
      if (Status st = RunStep(); !st.ok()) {
        Fail(Status::Internal("engine step failed: " + st.ToString()));
        return;
      }
      last_exchange_ = Clock::now();
    } else if (Clock::now() - last_exchange_ >= kHeartbeatInterval) {
      // Idle (however often woken): the other ranks must still hear from us.
      if (Status st = executor_->Heartbeat(); !st.ok()) {
        Fail(Status::Internal("expert-parallel group lost: " + st.ToString()));
        return;
      }
      last_exchange_ = Clock::now();
    }
    Publish();
  }
  EndAll(FinishReason::kAbort, Status::Ok());
}

void EngineImpl::Fail(const Status& status) {
  spdlog::error("engine stopped: {}", status.ToString());
  {
    std::lock_guard<std::mutex> lock(mu_);
    alive_ = false;
  }
  EndAll(FinishReason::kError, status);
  // Let the workers go now rather than at their timeout (this fails fast if the group broke).
  (void)executor_->Stop();
}

void EngineImpl::EndAll(FinishReason reason, const Status& status) {
  std::vector<std::unique_ptr<ActiveRequest>> incoming;
  {
    std::lock_guard<std::mutex> lock(mu_);
    incoming.swap(incoming_);
  }
  for (auto& r : incoming) AddRequest(std::move(r));
  std::vector<uint64_t> ids;
  for (const auto& [id, r] : requests_) ids.push_back(id);
  for (uint64_t id : ids) AbortRequest(id, reason, status);
  Publish();
}

bool EngineImpl::HasWork() const {
  if (rebalancer_ != nullptr && rebalancer_->migrating()) return true;
  return std::any_of(ranks_.begin(), ranks_.end(),
                     [](const auto& rank) { return rank->scheduler.HasWork(); });
}

void EngineImpl::TakePlacementRequest(std::optional<ExpertPlacement> requested) {
  if (rebalancer_ == nullptr || !requested) return;
  if (rebalancer_->migrating()) {
    // An automatic re-plan got there first: the request waits for it to finish.
    std::lock_guard<std::mutex> lock(mu_);
    if (!requested_placement_) requested_placement_ = std::move(requested);
    return;
  }
  rebalancer_->SetTarget(std::move(*requested));
}

void EngineImpl::AddRequest(std::unique_ptr<ActiveRequest> r) {
  const RequestSpec& spec = r->spec;
  // Data-parallel attention: the request lives on the rank serving the fewest requests.
  for (size_t i = 1; i < ranks_.size(); ++i) {
    if (ranks_[i]->live_requests < ranks_[r->rank]->live_requests) {
      r->rank = static_cast<int32_t>(i);
    }
  }
  RankScheduler& rank = *ranks_[r->rank];
  ++rank.live_requests;
  if (spec.deadline) ++num_with_deadline_;
  for (int32_t i = 0; i < spec.n; ++i) {
    auto seq = std::make_unique<Sequence>(r->id, i, spec.prompt);
    SamplingParams params = spec.sampling;
    if (params.seed && spec.n > 1) params.seed = *params.seed + static_cast<uint64_t>(i);
    seq->sampler = std::make_unique<Sampler>(params, spec.prompt);
    seq->stop_checker = std::make_unique<StopChecker>(spec.stop, eos_ids_, max_model_len_);
    // Later choices wait for the first's prompt blocks, then share them via the prefix cache.
    if (i > 0 && options_.enable_prefix_caching) seq->prefix_leader = r->seqs[0].get();
    rank.scheduler.Add(seq.get());
    r->seqs.push_back(std::move(seq));
  }
  const uint64_t id = r->id;
  requests_.emplace(id, std::move(r));
}

void EngineImpl::AbortRequest(uint64_t id, FinishReason reason, const Status& status) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  ActiveRequest& r = *it->second;
  if (r.num_finished == static_cast<int32_t>(r.seqs.size())) return;
  r.outgoing.status = status;
  for (auto& seq : r.seqs) {
    if (seq->status != SequenceStatus::kFinished) FinishSequence(r, seq.get(), reason);
  }
}

void EngineImpl::ApplyChoiceStop(const ChoiceStop& stop) {
  auto it = requests_.find(stop.request_id);
  if (it == requests_.end()) return;
  ActiveRequest& r = *it->second;
  if (stop.index < 0 || stop.index >= static_cast<int32_t>(r.seqs.size())) return;
  Sequence* seq = r.seqs[stop.index].get();
  // The consumer already cut this choice and drops what follows, this finish delta included.
  if (seq->status != SequenceStatus::kFinished) FinishSequence(r, seq, FinishReason::kStop);
}

void EngineImpl::ExpireDeadlines(Clock::time_point now) {
  std::vector<uint64_t> expired;
  for (const auto& [id, r] : requests_) {
    if (r->spec.deadline && *r->spec.deadline <= now &&
        r->num_finished < static_cast<int32_t>(r->seqs.size())) {
      expired.push_back(id);
    }
  }
  for (uint64_t id : expired) {
    AbortRequest(id, FinishReason::kAbort,
                 Status::DeadlineExceeded("the request's deadline passed before it finished"));
  }
}

Status EngineImpl::RunStep() {
  const Clock::time_point start = Clock::now();
  bool any = false;
  for (size_t i = 0; i < ranks_.size(); ++i) {
    RankScheduler& rank = *ranks_[i];
    rank.out = rank.scheduler.Schedule();
    if (!rank.out.preempted.empty()) {
      num_preemptions_ += static_cast<int64_t>(rank.out.preempted.size());
      if (options_.observer != nullptr) {
        options_.observer->OnPreemption(static_cast<int32_t>(rank.out.preempted.size()));
      }
    }
    any = any || !rank.out.scheduled.empty();
    BuildBatch(rank.out, &batches_[i], &rank.logit_seqs);
  }
  const MigrationAction migration =
      rebalancer_ != nullptr ? rebalancer_->NextAction(start) : MigrationAction{};
  // A step with no tokens anywhere still carries a migration.
  if (!any && migration.empty()) {
    return Status::Internal("the scheduler found no work it could run");
  }
  SY_RETURN_IF_ERROR(executor_->Step(batches_, migration, &logits_));
  ++steps_;
  if (rebalancer_ != nullptr) rebalancer_->OnStepDone(migration, Clock::now());
  if (options_.routing_stats != nullptr) {
    for (const StepRouting& r : executor_->routing()) {
      if (r.tokens == 0) continue;
      // One rank computes everything: the statistics take no per-pair ranks then.
      const std::span<const std::vector<int32_t>> ranks =
          executor_->num_ranks() > 1 ? std::span<const std::vector<int32_t>>(r.ranks)
                                     : std::span<const std::vector<int32_t>>();
      options_.routing_stats->AddStep(r.tokens, r.choices, ranks);
    }
    options_.routing_stats->EndStep();
  }
  const Clock::time_point now = Clock::now();
  const size_t vocab = static_cast<size_t>(rank_.model->config().vocab_size);
  for (size_t i = 0; i < ranks_.size(); ++i) {
    RankScheduler& rank = *ranks_[i];
    rank.scheduler.OnStepDone(rank.out);
    for (const ScheduledSequence& s : rank.out.scheduled) {
      ActiveRequest& r = *requests_.at(s.seq->request_id);
      if (!r.first_scheduled) {
        r.first_scheduled = start;
        dequeued_ += r.spec.n;
      }
    }
    for (size_t row = 0; row < rank.logit_seqs.size(); ++row) {
      ProcessToken(rank.logit_seqs[row], std::span<float>(logits_[i].data() + row * vocab, vocab),
                   now);
    }
  }
  ReportStep(Seconds(Clock::now() - start));
  return Status::Ok();
}

void EngineImpl::BuildBatch(const SchedulerOutput& out, StepBatch* batch,
                            std::vector<Sequence*>* seqs) {
  StepBatch& b = *batch;
  b.tokens.clear();
  b.positions.clear();
  b.slots.clear();
  b.token_seq.clear();
  b.logits_indices.clear();
  seqs->clear();
  const int bs = options_.block_size;
  size_t max_blocks = 1;
  for (const ScheduledSequence& s : out.scheduled) {
    max_blocks = std::max(max_blocks, s.seq->blocks.ids.size());
  }
  b.max_blocks_per_seq = static_cast<int32_t>(max_blocks);
  b.block_tables.assign(out.scheduled.size() * max_blocks, 0);
  for (size_t row = 0; row < out.scheduled.size(); ++row) {
    const Sequence& seq = *out.scheduled[row].seq;
    const std::vector<int32_t>& ids = seq.blocks.ids;
    std::copy(ids.begin(), ids.end(), b.block_tables.begin() + row * max_blocks);
    const int64_t end = seq.num_computed_tokens + out.scheduled[row].num_tokens;
    for (int64_t pos = seq.num_computed_tokens; pos < end; ++pos) {
      b.tokens.push_back(seq.tokens[pos]);
      b.positions.push_back(static_cast<int32_t>(pos));
      b.slots.push_back(static_cast<int64_t>(ids[pos / bs]) * bs + pos % bs);
      b.token_seq.push_back(static_cast<int32_t>(row));
    }
    // A sequence whose every known token is now cached gets its next token sampled.
    if (end == seq.num_tokens()) {
      b.logits_indices.push_back(static_cast<int32_t>(b.tokens.size() - 1));
      seqs->push_back(out.scheduled[row].seq);
    }
  }
}

void EngineImpl::ProcessToken(Sequence* seq, std::span<float> logits, Clock::time_point now) {
  ActiveRequest& r = *requests_.at(seq->request_id);
  const StopConditions& stop = r.spec.stop;
  if (seq->num_output_tokens() < stop.min_tokens) {
    // As vLLM: before min_tokens, EOS and stop tokens cannot be drawn at all.
    const float kNegInf = -std::numeric_limits<float>::infinity();
    if (!stop.ignore_eos) {
      for (int32_t id : eos_ids_) {
        if (id >= 0 && static_cast<size_t>(id) < logits.size()) logits[id] = kNegInf;
      }
    }
    for (int32_t id : stop.stop_token_ids) logits[id] = kNegInf;
  }
  SampledToken t = seq->sampler->Sample(logits);
  seq->tokens.push_back(t.token);
  if (!r.first_token) r.first_token = now;
  if (seq->num_output_tokens() > 1) {
    seq->inter_token_seconds.push_back(Seconds(now - seq->last_token_time));
  }
  seq->last_token_time = now;
  // Stop strings are the stream's OutputProcessor's: it asks for a StopChoice on a match.
  const StopUpdate u =
      seq->stop_checker->CheckToken(t.token, seq->num_output_tokens(), seq->num_tokens());
  CompletionDelta& d = DeltaFor(r, seq->index);
  d.token_ids.push_back(t.token);
  d.samples.push_back(std::move(t));
  if (u.finish) {
    d.stop_token = u.stop_token;
    FinishSequence(r, seq, *u.finish);
  }
}

void EngineImpl::FinishSequence(ActiveRequest& r, Sequence* seq, FinishReason reason) {
  ranks_[r.rank]->scheduler.Remove(seq);
  seq->finish_reason = reason;
  DeltaFor(r, seq->index).finish_reason = reason;
  r.last_finish = reason;
  if (++r.num_finished == static_cast<int32_t>(r.seqs.size())) {
    if (!r.first_scheduled) dequeued_ += r.spec.n;  // ended while still queued
    if (r.spec.deadline) --num_with_deadline_;
    --ranks_[r.rank]->live_requests;
    r.outgoing.finished = true;
    ReportFinished(r);
  }
}

CompletionDelta& EngineImpl::DeltaFor(ActiveRequest& r, int32_t index) {
  if (!r.has_outgoing) {
    r.has_outgoing = true;
    touched_.push_back(&r);
  }
  for (CompletionDelta& d : r.outgoing.deltas) {
    if (d.index == index) return d;
  }
  r.outgoing.deltas.emplace_back();
  r.outgoing.deltas.back().index = index;
  return r.outgoing.deltas.back();
}

void EngineImpl::ReportStep(double seconds) {
  if (options_.observer == nullptr) return;
  StepStats s;
  s.step_seconds = seconds;
  for (const auto& rank : ranks_) {
    s.num_prefill_tokens += static_cast<int32_t>(rank->out.num_prefill_tokens);
    s.num_decode_tokens += static_cast<int32_t>(rank->out.num_decode_tokens);
    s.num_running += static_cast<int32_t>(rank->out.scheduled.size());
  }
  const ModelConfig& c = rank_.model->config();
  s.expert_tokens.resize(c.num_layers);
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    if (!c.layer_is_moe[layer]) continue;
    std::vector<int64_t>& counts = s.expert_tokens[layer];
    counts.assign(c.num_experts, 0);
    for (const StepRouting& routing : executor_->routing()) {
      if (static_cast<size_t>(layer) >= routing.choices.size()) continue;
      for (int32_t e : routing.choices[layer]) ++counts[e];
    }
  }
  options_.observer->OnStep(s);
}

void EngineImpl::ReportFinished(const ActiveRequest& r) {
  if (options_.observer == nullptr) return;
  const Clock::time_point now = Clock::now();
  const Clock::time_point arrival = r.spec.arrival;
  RequestStats s;
  s.finish_reason = r.last_finish;
  s.prompt_tokens = static_cast<int32_t>(r.spec.prompt.size());
  s.cached_prompt_tokens = static_cast<int32_t>(std::max<int64_t>(0, r.seqs[0]->num_cached_tokens));
  for (const auto& seq : r.seqs) {
    s.choice_finish_reasons.push_back(seq->finish_reason.value_or(r.last_finish));
    s.generation_tokens += seq->num_output_tokens();
    s.inter_token_seconds.insert(s.inter_token_seconds.end(), seq->inter_token_seconds.begin(),
                                 seq->inter_token_seconds.end());
  }
  s.queue_seconds = Seconds(r.first_scheduled.value_or(now) - arrival);
  if (r.first_token) {
    s.ttft_seconds = Seconds(*r.first_token - arrival);
    s.prefill_seconds = Seconds(*r.first_token - r.first_scheduled.value_or(*r.first_token));
  }
  s.e2e_seconds = Seconds(now - arrival);
  options_.observer->OnRequestFinished(s);
}

void EngineImpl::Publish() {
  EngineSnapshot s;
  std::vector<uint64_t> finished;
  for (const auto& [id, r] : requests_) {
    if (r->num_finished == static_cast<int32_t>(r->seqs.size())) {
      finished.push_back(id);
      continue;
    }
    const bool running = std::any_of(r->seqs.begin(), r->seqs.end(), [](const auto& seq) {
      return seq->status == SequenceStatus::kRunning;
    });
    ++(running ? s.num_running : s.num_waiting);
  }
  for (const auto& rank : ranks_) {
    s.kv_blocks_total += rank->blocks.num_blocks();
    s.kv_blocks_used += rank->blocks.num_used();
    s.prefix_cache_queries += rank->blocks.query_tokens();
    s.prefix_cache_hits += rank->blocks.hit_tokens();
  }
  s.kv_usage = static_cast<double>(s.kv_blocks_used) / static_cast<double>(s.kv_blocks_total);
  s.block_size = options_.block_size;
  s.num_ranks = static_cast<int32_t>(ranks_.size());
  if (rebalancer_ != nullptr) {
    s.num_rebalances = rebalancer_->rebalances();
    s.experts_moved = rebalancer_->experts_moved();
    s.rebalance_failures = rebalancer_->failures();
  }
  s.num_preemptions = num_preemptions_;
  s.steps = steps_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_ = s;
    if (rebalancer_ != nullptr) {
      migrating_ = rebalancer_->migrating() || requested_placement_.has_value();
      if (*placement_ != rebalancer_->placement()) {
        placement_ = std::make_shared<ExpertPlacement>(rebalancer_->placement());
      }
    }
    live_requests_ -= static_cast<int64_t>(finished.size());
    num_queued_ -= dequeued_;
  }
  dequeued_ = 0;
  for (ActiveRequest* r : touched_) {
    RequestUpdate& u = r->outgoing;
    u.prompt_tokens = static_cast<int32_t>(r->spec.prompt.size());
    u.cached_prompt_tokens =
        static_cast<int32_t>(std::max<int64_t>(0, r->seqs[0]->num_cached_tokens));
    u.completion_tokens = 0;
    for (const auto& seq : r->seqs) u.completion_tokens += seq->num_output_tokens();
    r->stream->Push(std::move(u));
    u = RequestUpdate{};
    r->has_outgoing = false;
  }
  touched_.clear();
  for (uint64_t id : finished) requests_.erase(id);
}

}  // namespace sy
