#include <algorithm>
#include <climits>

#include "engine/kv/kv_cache.h"
#include "engine/sched/engine_impl.h"

namespace sy {
namespace {

// Choices per request: each is a sequence with its own state, so n is bounded like any size.
constexpr int32_t kMaxChoices = 128;

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
  return Status::Ok();
}

// Runs one token through the model so that first-request latency does not include lazy setup.
Status WarmUp(ModelRunner* runner) {
  StepBatch b;
  b.tokens = {0};
  b.positions = {0};
  b.slots = {0};
  b.token_seq = {0};
  b.block_tables = {0};
  b.max_blocks_per_seq = 1;
  b.logits_indices = {0};
  std::vector<float> logits;
  return runner->Step(b, &logits);
}

}  // namespace

StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  SY_RETURN_IF_ERROR(ValidateOptions(options));
  auto backend = std::make_unique<CpuBackend>(options.threads);
  SY_ASSIGN_OR_RETURN(std::unique_ptr<MoeModel> model,
                      MoeModel::Load(options.model_dir, backend.get()));
  SY_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer, Tokenizer::Load(options.model_dir));
  const ModelConfig& c = model->config();
  int64_t max_model_len =
      options.max_model_len > 0 ? options.max_model_len : c.max_position_embeddings;
  if (max_model_len > c.max_position_embeddings) {
    return Status::InvalidArgument("max_model_len " + std::to_string(max_model_len) +
                                   " exceeds the model's max_position_embeddings " +
                                   std::to_string(c.max_position_embeddings));
  }
  int64_t num_blocks = options.num_kv_blocks;
  if (num_blocks == 0) {
    const size_t per_block =
        KvCache::BytesPerBlock(c.num_layers, options.block_size, c.num_kv_heads * c.head_dim);
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
  RunnerOptions ro;
  ro.max_batch_tokens = options.max_num_batched_tokens;
  ro.max_seqs = options.max_num_seqs;
  ro.num_kv_blocks = num_blocks;
  ro.block_size = options.block_size;
  ro.max_blocks_per_seq = (max_model_len + options.block_size - 1) / options.block_size;
  SY_ASSIGN_OR_RETURN(std::unique_ptr<ModelRunner> runner, ModelRunner::Create(model.get(), ro));
  SY_RETURN_IF_ERROR(WarmUp(runner.get()));
  auto engine =
      std::make_unique<EngineImpl>(options, max_model_len, std::move(backend), std::move(model),
                                   std::move(tokenizer), std::move(runner));
  engine->Start();
  return std::unique_ptr<Engine>(std::move(engine));
}

EngineImpl::EngineImpl(const EngineOptions& options, int64_t max_model_len,
                       std::unique_ptr<CpuBackend> backend, std::unique_ptr<MoeModel> model,
                       std::unique_ptr<Tokenizer> tokenizer, std::unique_ptr<ModelRunner> runner)
    : options_(options),
      max_model_len_(max_model_len),
      backend_(std::move(backend)),
      model_(std::move(model)),
      tokenizer_(std::move(tokenizer)),
      runner_(std::move(runner)),
      blocks_(static_cast<int32_t>(runner_->options().num_kv_blocks), options.block_size,
              options.enable_prefix_caching),
      scheduler_({options.max_num_batched_tokens, options.max_num_seqs}, &blocks_) {
  eos_ids_ = tokenizer_->eos_ids();
  for (int32_t id : model_->config().eos_token_ids) {
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) == eos_ids_.end()) eos_ids_.push_back(id);
  }
  snapshot_.kv_blocks_total = blocks_.num_blocks();
}

void EngineImpl::Start() {
  thread_ = std::thread([this] { Loop(); });
}

EngineImpl::~EngineImpl() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status EngineImpl::Validate(const RequestSpec& spec) const {
  if (spec.prompt.empty()) return Status::InvalidArgument("the prompt is empty");
  if (spec.n < 1 || spec.n > kMaxChoices) {
    return Status::InvalidArgument("n must be in [1, " + std::to_string(kMaxChoices) + "]");
  }
  if (spec.stop.max_tokens < 1) return Status::InvalidArgument("max_tokens must be at least 1");
  if (spec.stop.min_tokens < 0 || spec.stop.min_tokens > spec.stop.max_tokens) {
    return Status::InvalidArgument("min_tokens must be in [0, max_tokens]");
  }
  for (const std::string& s : spec.stop.stop_strings) {
    if (s.empty()) return Status::InvalidArgument("stop strings must not be empty");
  }
  SY_RETURN_IF_ERROR(spec.sampling.Validate());
  const int64_t vocab = model_->config().vocab_size;
  for (int32_t id : spec.prompt) {
    if (id < 0 || id >= vocab) {
      return Status::InvalidArgument("prompt token id " + std::to_string(id) +
                                     " is outside the vocabulary [0, " + std::to_string(vocab) +
                                     ")");
    }
  }
  for (int32_t id : spec.stop.stop_token_ids) {
    if (id < 0 || id >= vocab) {
      return Status::InvalidArgument("stop token id " + std::to_string(id) +
                                     " is outside the vocabulary");
    }
  }
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
  if (blocks_needed > blocks_.num_blocks()) {
    return Status::InvalidArgument("the request needs " + std::to_string(blocks_needed) +
                                   " KV blocks but the cache has only " +
                                   std::to_string(blocks_.num_blocks()));
  }
  return Status::Ok();
}

Status EngineImpl::Reject(Status status) const {
  if (options_.observer != nullptr) options_.observer->OnRejected(status.code());
  return status;
}

StatusOr<std::shared_ptr<RequestStream>> EngineImpl::Submit(RequestSpec spec) {
  if (Status st = Validate(spec); !st.ok()) return Reject(std::move(st));
  auto request = std::make_unique<ActiveRequest>();
  std::shared_ptr<RequestStream> stream;
  Status refused;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!alive_.load()) {
      refused = Status::Unavailable("the engine has stopped after an internal error");
    } else if (draining_ || stop_) {
      refused = Status::Unavailable("the engine is shutting down and accepts no new requests");
    } else if (num_queued_ >= options_.max_queued_requests) {
      refused = Status::ResourceExhausted("the request queue is full (" +
                                          std::to_string(num_queued_) + " waiting); retry later");
    } else {
      request->id = next_id_++;
      request->spec = std::move(spec);
      request->stream = std::make_shared<RequestStreamQueue>(request->id);
      stream = request->stream;
      incoming_.push_back(std::move(request));
      ++num_queued_;
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

void EngineImpl::Drain() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
}

bool EngineImpl::Idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_requests_ == 0;
}

EngineSnapshot EngineImpl::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineSnapshot s = snapshot_;
  s.num_waiting += static_cast<int64_t>(incoming_.size());
  return s;
}

}  // namespace sy
