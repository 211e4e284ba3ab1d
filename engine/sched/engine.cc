#include <spdlog/spdlog.h>

#include <algorithm>
#include <climits>

#include "engine/backend/backend_factory.h"
#include "engine/kv/kv_cache.h"
#include "engine/model/model_source.h"
#include "engine/model/model_weights.h"
#include "engine/runner/ep_step_executor.h"
#include "engine/runner/memory_plan.h"
#include "engine/sched/engine_impl.h"
#include "engine/sched/request_limits.h"

namespace sy {
namespace {

// Choices per request: each is a sequence with its own state, so n is bounded like any size.

Status ValidateOptions(const EngineOptions& o) {
  if (o.block_size <= 0) return Status::InvalidArgument("block_size must be positive");
  if (o.max_num_batched_tokens <= 0) {
    return Status::InvalidArgument("max_num_batched_tokens must be positive");
  }
  if (o.max_num_seqs <= 0) return Status::InvalidArgument("max_num_seqs must be positive");
  if (o.max_queued_requests < 0) {
    return Status::InvalidArgument("max_queued_requests must not be negative");
  }
  if (o.num_kv_blocks < 0) return Status::InvalidArgument("num_kv_blocks must not be negative");
  if (o.num_kv_blocks == 0 && o.kv_cache_bytes <= 0) {
    return Status::InvalidArgument("kv_cache_bytes must be positive when num_kv_blocks is 0");
  }
  if (o.max_model_len < 0) return Status::InvalidArgument("max_model_len must not be negative");
  if (o.quantization != Quantization::kNone && o.communicator != nullptr &&
      o.communicator->size() > 1) {
    return Status::Unimplemented("--quantization " + std::string(QuantizationName(o.quantization)) +
                                 " with expert parallelism is not supported yet");
  }
  return Status::Ok();
}

// Runs one token through the model so that first-request latency does not include lazy setup.
Status WarmUp(StepExecutor* executor) {
  std::vector<StepBatch> batches(executor->num_ranks(), EmptyStepBatch());
  StepBatch& b = batches[0];
  b.tokens = {0};
  b.positions = {0};
  b.slots = {0};
  b.token_seq = {0};
  b.block_tables = {0};
  b.logits_indices = {0};
  std::vector<std::vector<float>> logits;
  return executor->Step(batches, MigrationAction{}, &logits);
}

StatusOr<ExpertPlacement> PlacementFor(const EngineOptions& o, const ModelConfig& c) {
  const int32_t ranks = o.communicator->size();
  const int32_t experts = static_cast<int32_t>(c.num_experts);
  if (o.placement != nullptr) {
    if (o.expert_slots_per_rank > 0 && o.expert_slots_per_rank != o.placement->slots_per_rank()) {
      return Status::InvalidArgument(
          "--expert-slots-per-rank " + std::to_string(o.expert_slots_per_rank) +
          " contradicts the placement's " + std::to_string(o.placement->slots_per_rank()));
    }
    return *o.placement;
  }
  const int32_t needed = (experts + ranks - 1) / ranks;
  const int32_t slots = o.expert_slots_per_rank > 0 ? o.expert_slots_per_rank : needed;
  if (slots < needed) {
    return Status::InvalidArgument(std::to_string(ranks) + " ranks with " + std::to_string(slots) +
                                   " expert slots each cannot hold " + std::to_string(experts) +
                                   " experts; need at least " + std::to_string(needed) +
                                   " slots per rank");
  }
  return ExpertPlacement::Contiguous(MoeLayerIndices(c), experts, ranks, slots);
}

// Every rank must run the same model with the same memory plan and placement, or the
// collectives go wrong in obscure ways; compare a fingerprint of what each rank loaded.
Status AgreeOnConfig(const RankModel& rm, Communicator* comm) {
  if (comm == nullptr || comm->size() == 1) return Status::Ok();
  const ModelConfig& c = rm.model->config();
  const RunnerOptions& ro = rm.runner->options();
  const std::string text =
      rm.ep->placement().ToJson() + "|" + std::to_string(c.vocab_size) + "," +
      std::to_string(c.num_layers) + "," + std::to_string(c.hidden_size) + "," +
      std::to_string(c.num_experts) + "," + std::to_string(c.num_experts_per_tok) + "|" +
      std::to_string(ro.max_batch_tokens) + "," + std::to_string(ro.max_seqs) + "," +
      std::to_string(ro.num_kv_blocks) + "," + std::to_string(ro.block_size) + "," +
      std::to_string(ro.max_blocks_per_seq) + "," + std::to_string(rm.max_model_len);
  const uint64_t mine = std::hash<std::string>()(text);
  std::vector<uint64_t> all(comm->size());
  SY_RETURN_IF_ERROR(comm->AllGather(&mine, sizeof(mine), all.data()));
  for (int r = 1; r < comm->size(); ++r) {
    if (all[r] != all[0]) {
      return Status::InvalidArgument(
          "rank " + std::to_string(r) +
          " loaded another model, placement or memory plan than rank 0 (check that every rank "
          "gets the same --model, --placement and engine flags)");
    }
  }
  return Status::Ok();
}

}  // namespace

namespace {

ModelSource SourceOf(const EngineOptions& o) {
  return ModelSource{o.model_dir, o.random_weights, o.random_seed, o.quantization};
}

}  // namespace

StatusOr<RankModel> LoadRankModel(const EngineOptions& options) {
  SY_RETURN_IF_ERROR(ValidateOptions(options));
  const bool ep = options.communicator != nullptr && options.communicator->size() > 1;
  RankModel rm;
  SY_ASSIGN_OR_RETURN(const DeviceSpec device, ParseDevice(options.device));
  BackendOptions bo;
  bo.cpu_threads = options.threads;
  bo.kv_cache_dtype = options.kv_cache_dtype;
  SY_ASSIGN_OR_RETURN(rm.backend, CreateBackend(device, bo));
  const ModelSource source = SourceOf(options);
  if (StatusOr<DeviceMemoryInfo> mem = rm.backend->MemoryInfo(); mem.ok()) {
    SY_ASSIGN_OR_RETURN(ModelConfig config, LoadSourceConfig(source));
    SY_ASSIGN_OR_RETURN(DType dtype, ConfigWeightDType(config));
    SY_RETURN_IF_ERROR(CheckWeightsFit(WeightBytes(config, dtype, options.quantization),
                                       mem->total_bytes, mem->total_bytes - mem->free_bytes,
                                       options.gpu_memory_utilization));
  }
  SY_ASSIGN_OR_RETURN(rm.model, LoadSourceModel(source, rm.backend.get(),
                                                /*load_routed_experts=*/!ep));
  const ModelConfig& c = rm.model->config();
  if (ep) {
    if (c.num_experts <= 0) {
      return Status::InvalidArgument("expert parallelism needs a model with routed experts");
    }
    SY_ASSIGN_OR_RETURN(ExpertPlacement placement, PlacementFor(options, c));
    SY_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> ckpt, Checkpoint::Open(options.model_dir));
    SY_ASSIGN_OR_RETURN(rm.ep, ExpertParallel::Create(c, *ckpt, rm.backend.get(),
                                                      std::move(placement), options.communicator));
    rm.model->SetExpertDispatch(rm.ep.get());
    spdlog::info("rank {} hosts {:.1f} MB of expert weights", options.communicator->rank(),
                 static_cast<double>(rm.ep->hosted_bytes()) / 1e6);
  }
  rm.max_model_len = options.max_model_len > 0 ? options.max_model_len : c.max_position_embeddings;
  if (rm.max_model_len > c.max_position_embeddings) {
    return Status::InvalidArgument("max_model_len " + std::to_string(rm.max_model_len) +
                                   " exceeds the model's max_position_embeddings " +
                                   std::to_string(c.max_position_embeddings));
  }
  const bool plan_from_device = rm.backend->MemoryInfo().ok();
  int64_t num_blocks = options.num_kv_blocks;
  if (num_blocks == 0 && !plan_from_device) {
    const size_t per_block =
        KvCache::BytesPerBlock(c.num_layers, options.block_size, KvRowShapeFor(c).k_dim,
                               KvRowShapeFor(c).v_dim, rm.backend->kv_cache_dtype());
    num_blocks = options.kv_cache_bytes / static_cast<int64_t>(per_block);
    if (num_blocks == 0) {
      return Status::InvalidArgument("kv_cache_bytes " + std::to_string(options.kv_cache_bytes) +
                                     " is below one KV block (" + std::to_string(per_block) +
                                     " bytes)");
    }
  }
  if (num_blocks > INT32_MAX) {
    return Status::InvalidArgument("too many KV blocks: " + std::to_string(num_blocks));
  }
  if (!plan_from_device) {
    const KvRowShape kv_row = KvRowShapeFor(c);
    const DType kv_dtype = rm.backend->kv_cache_dtype();
    const size_t per_token =
        KvCache::BytesPerToken(c.num_layers, kv_row.k_dim, kv_row.v_dim, kv_dtype);
    spdlog::info("KV cache: {} blocks of {} tokens ({}, {} bytes per token) in {}", num_blocks,
                 options.block_size, dtype_name(kv_dtype), per_token,
                 FormatGiB(static_cast<size_t>(num_blocks) * options.block_size * per_token));
  }
  RunnerOptions ro;
  ro.max_batch_tokens = options.max_num_batched_tokens;
  ro.max_seqs = options.max_num_seqs;
  ro.num_kv_blocks = num_blocks;
  ro.block_size = options.block_size;
  ro.max_blocks_per_seq = (rm.max_model_len + options.block_size - 1) / options.block_size;
  // The scheduler samples the last token of each sequence only.
  ro.max_logits_rows = options.max_num_seqs;
  ro.gpu_memory_utilization = options.gpu_memory_utilization;
  ro.use_graphs = !options.enforce_eager;
  SY_ASSIGN_OR_RETURN(rm.runner, ModelRunner::Create(rm.model.get(), ro));
  return rm;
}

StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  if (options.communicator != nullptr && options.communicator->rank() != 0) {
    return Status::InvalidArgument("Engine::Create runs on rank 0; other ranks run RunWorker");
  }
  SY_ASSIGN_OR_RETURN(RankModel rank, LoadRankModel(options));
  SY_RETURN_IF_ERROR(AgreeOnConfig(rank, options.communicator));
  SY_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, LoadSourceTokenizer(SourceOf(options)));
  std::unique_ptr<StepExecutor> executor;
  if (rank.ep != nullptr) {
    executor = std::make_unique<EpStepExecutor>(rank.runner.get(), rank.ep.get());
  } else {
    executor = std::make_unique<LocalStepExecutor>(rank.runner.get());
  }
  SY_RETURN_IF_ERROR(WarmUp(executor.get()));
  std::unique_ptr<Rebalancer> rebalancer;
  if (options.rebalance_interval_s > 0 &&
      (rank.ep == nullptr || options.routing_stats == nullptr)) {
    return Status::InvalidArgument(
        "live rebalancing needs expert parallelism (more than one rank) and routing "
        "statistics");
  }
  if (rank.ep != nullptr) {
    // Also without automatic re-plans: it carries out ApplyPlacement's migrations.
    RebalanceOptions ro;
    ro.interval =
        std::chrono::milliseconds(static_cast<int64_t>(options.rebalance_interval_s * 1000));
    SY_ASSIGN_OR_RETURN(ro.strategy, ParsePlanStrategy(options.rebalance_strategy));
    ro.time_limit_s = options.rebalance_time_limit_s;
    ro.min_gain = options.rebalance_min_gain;
    rebalancer = std::make_unique<Rebalancer>(ro, options.routing_stats, rank.ep->placement());
  }
  auto engine = std::make_unique<EngineImpl>(options, std::move(rank), std::move(tokenizer),
                                             std::move(executor), std::move(rebalancer));
  engine->Start();
  return std::unique_ptr<Engine>(std::move(engine));
}

Status Engine::RunWorker(const EngineOptions& options) {
  if (options.communicator == nullptr || options.communicator->rank() == 0) {
    return Status::InvalidArgument("RunWorker needs a communicator rank above 0");
  }
  SY_ASSIGN_OR_RETURN(RankModel rank, LoadRankModel(options));
  SY_RETURN_IF_ERROR(AgreeOnConfig(rank, options.communicator));
  return RunEpWorker(rank.runner.get(), rank.ep.get());
}

EngineImpl::EngineImpl(const EngineOptions& options, RankModel rank,
                       std::unique_ptr<Tokenizer> tokenizer, std::unique_ptr<StepExecutor> executor,
                       std::unique_ptr<Rebalancer> rebalancer)
    : options_(options),
      max_model_len_(rank.max_model_len),
      rank_(std::move(rank)),
      tokenizer_(std::move(tokenizer)),
      executor_(std::move(executor)),
      rebalancer_(std::move(rebalancer)),
      kv_blocks_per_rank_(rank_.runner->options().num_kv_blocks) {
  eos_ids_ = tokenizer_->eos_ids();
  for (int32_t id : rank_.model->config().eos_token_ids) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
  }
  const int n = executor_->num_ranks();
  for (int r = 0; r < n; ++r) {
    ranks_.push_back(
        std::make_unique<RankScheduler>(static_cast<int32_t>(kv_blocks_per_rank_), options_));
  }
  batches_.resize(n);
  snapshot_.kv_blocks_total = kv_blocks_per_rank_ * n;
  snapshot_.block_size = options_.block_size;
  if (rebalancer_ != nullptr) {
    placement_ = std::make_shared<ExpertPlacement>(rebalancer_->placement());
  }
  snapshot_.num_ranks = n;
  link_->engine = this;
}

void EngineImpl::Start() {
  thread_ = std::thread([this] { Loop(); });
}

EngineImpl::~EngineImpl() {
  {
    // Waits for a StopChoice in progress; later ones find no engine.
    std::lock_guard<std::mutex> lock(link_->mu);
    link_->engine = nullptr;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status EngineImpl::Validate(const RequestSpec& spec) const {
  if (spec.prompt.empty()) return Status::InvalidArgument("the prompt is empty");
  if (spec.stop.max_tokens < 1) return Status::InvalidArgument("max_tokens must be at least 1");
  if (spec.stop.min_tokens < 0 || spec.stop.min_tokens > spec.stop.max_tokens) {
    return Status::InvalidArgument("min_tokens must be in [0, max_tokens]");
  }
  SY_RETURN_IF_ERROR(spec.sampling.Validate());
  const int64_t vocab = rank_.model->config().vocab_size;
  SY_RETURN_IF_ERROR(CheckRequestLimits(spec, vocab));
  // More sequences than the whole queue holds would be refused as "full" forever.
  if (options_.max_queued_requests > 0 && spec.n > options_.max_queued_requests) {
    return Status::InvalidArgument("n = " + std::to_string(spec.n) + " exceeds the " +
                                   std::to_string(options_.max_queued_requests) +
                                   " sequences the request queue holds");
  }
  SY_RETURN_IF_ERROR(CheckTokenIds(spec.prompt, vocab, "prompt"));
  const int64_t prompt = static_cast<int64_t>(spec.prompt.size());
  const int64_t total = prompt + spec.stop.max_tokens;
  if (total > max_model_len_) {
    return Status::InvalidArgument(
        "this model's maximum context length is " + std::to_string(max_model_len_) +
        " tokens, but " + std::to_string(total) + " were requested (" + std::to_string(prompt) +
        " in the prompt, " + std::to_string(spec.stop.max_tokens) +
        " for the completion); shorten the prompt or max_tokens");
  }
  const int64_t blocks_needed = (total + options_.block_size - 1) / options_.block_size;
  if (blocks_needed > kv_blocks_per_rank_) {
    return Status::InvalidArgument("the request needs " + std::to_string(blocks_needed) +
                                   " KV blocks but the cache has only " +
                                   std::to_string(kv_blocks_per_rank_));
  }
  return Status::Ok();
}

Status EngineImpl::Reject(Status status) const {
  if (options_.observer != nullptr) options_.observer->OnRejected(status.code());
  return status;
}

StatusOr<std::shared_ptr<RequestStream>> EngineImpl::Submit(RequestSpec spec) {
  if (Status st = Validate(spec); !st.ok()) return Reject(std::move(st));
  if (spec.deadline && *spec.deadline <= Clock::now()) {
    return Reject(Status::DeadlineExceeded("the request's deadline passed before it was queued"));
  }
  auto request = std::make_unique<ActiveRequest>();
  std::shared_ptr<RequestStream> stream;
  Status refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!alive_.load()) {
      refused = Status::Unavailable("the engine has stopped after an internal error");
    } else if (draining_ || stop_) {
      refused = Status::Unavailable("the engine is shutting down and accepts no new requests");
    } else if (num_queued_ + spec.n > options_.max_queued_requests) {
      refused = Status::ResourceExhausted(
          "the request queue is full (" + std::to_string(num_queued_) + " of " +
          std::to_string(options_.max_queued_requests) + " sequences waiting, " +
          std::to_string(spec.n) + " more asked for); retry later");
    } else {
      request->id = next_id_++;
      request->spec = std::move(spec);
      std::unique_ptr<OutputProcessor> processor;
      if (OutputProcessor::Needed(request->spec)) {
        processor = std::make_unique<OutputProcessor>(request->spec, tokenizer_, eos_ids_,
                                                      max_model_len_, StopChoiceFor(request->id));
      }
      request->stream = std::make_shared<RequestStreamQueue>(request->id, std::move(processor));
      stream = request->stream;
      num_queued_ += request->spec.n;
      incoming_.push_back(std::move(request));
      ++live_requests_;
    }
  }
  if (!refused.ok()) return Reject(std::move(refused));
  cv_.notify_all();
  return stream;
}

void EngineImpl::Abort(uint64_t request_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborts_.push_back(request_id);
  }
  cv_.notify_all();
}

OutputProcessor::StopChoice EngineImpl::StopChoiceFor(uint64_t request_id) const {
  return [link = link_, request_id](int32_t index) {
    std::lock_guard<std::mutex> lock(link->mu);
    if (link->engine != nullptr) link->engine->StopChoice(request_id, index);
  };
}

void EngineImpl::StopChoice(uint64_t request_id, int32_t index) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    choice_stops_.push_back({request_id, index});
  }
  cv_.notify_all();
}

void EngineImpl::Drain() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
}

bool EngineImpl::Idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_requests_ == 0;
}

std::shared_ptr<const ExpertPlacement> EngineImpl::placement() const {
  std::lock_guard<std::mutex> lock(mu_);
  return placement_;
}

StatusOr<int64_t> EngineImpl::ApplyPlacement(const ExpertPlacement& next) {
  std::lock_guard<std::mutex> lock(mu_);
  if (placement_ == nullptr) return Engine::ApplyPlacement(next);
  SY_RETURN_IF_ERROR(next.CheckCompatible(placement_->layers(), placement_->num_experts(),
                                          placement_->num_ranks()));
  // Slots are the memory budget for experts that every rank was sized for.
  if (next.slots_per_rank() > placement_->slots_per_rank()) {
    return Status::InvalidArgument("the placement uses " + std::to_string(next.slots_per_rank()) +
                                   " expert slots per rank; this group has " +
                                   std::to_string(placement_->slots_per_rank()));
  }
  if (migrating_) return Status::Unavailable("an expert migration is in progress; retry later");
  if (!alive_.load()) return Status::Unavailable("the engine has stopped");
  requested_placement_ = next;
  migrating_ = true;
  cv_.notify_all();
  return next.MovesFrom(*placement_);
}

EngineSnapshot EngineImpl::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineSnapshot s = snapshot_;
  s.num_waiting += static_cast<int64_t>(incoming_.size());
  return s;
}

}  // namespace sy
