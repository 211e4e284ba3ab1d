#include "engine/runner/model_runner.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "engine/runner/graph_buckets.h"
#include "engine/runner/memory_plan.h"

namespace sy {
namespace {

size_t Aligned(size_t bytes) { return (bytes + 63) / 64 * 64; }

}  // namespace

ModelRunner::ModelRunner(MoeModel* model)
    : model_(model), load_(model->config().num_layers, model->config().num_experts) {}

StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(MoeModel* model,
                                                           const RunnerOptions& options_in) {
  const ModelConfig& c = model->config();
  RunnerOptions o = options_in;
  if (o.max_batch_tokens <= 0 || o.max_seqs <= 0 || o.block_size <= 0 || o.num_kv_blocks < 0) {
    return Status::InvalidArgument("runner sizes must be positive");
  }
  if (o.max_blocks_per_seq <= 0) {
    o.max_blocks_per_seq = (c.max_position_embeddings + o.block_size - 1) / o.block_size;
  }
  if (o.max_logits_rows <= 0) o.max_logits_rows = o.max_batch_tokens;
  Backend* backend = model->backend();
  const bool graphs =
      o.use_graphs && backend->SupportsGraphs() && model->expert_dispatch() == nullptr;
  if (!graphs) o.use_graphs = false;
  std::unique_ptr<ModelRunner> r(new ModelRunner(model));
  r->options_ = o;
  SY_ASSIGN_OR_RETURN(r->workspace_, backend->Allocate(model->WorkspaceBytes(o.max_batch_tokens)));
  const size_t t = static_cast<size_t>(o.max_batch_tokens);
  // Upload packs five per-token arrays, the logits indices and the block tables.
  const size_t staging =
      5 * Aligned(t * sizeof(int64_t)) +
      Aligned(static_cast<size_t>(o.max_logits_rows) * sizeof(int32_t)) +
      Aligned(static_cast<size_t>(o.max_seqs * o.max_blocks_per_seq) * sizeof(int32_t));
  SY_ASSIGN_OR_RETURN(r->staging_, backend->Allocate(staging));
  SY_ASSIGN_OR_RETURN(r->logits_, backend->Allocate(static_cast<size_t>(o.max_logits_rows) *
                                                    c.vocab_size * sizeof(float)));
  SY_RETURN_IF_ERROR(r->PlanKvCache());
  if (graphs) SY_RETURN_IF_ERROR(r->CaptureGraphs());
  return r;
}

StepBatch ModelRunner::DummyDecodeStep(int64_t n) const {
  StepBatch b;
  b.tokens.assign(n, 0);
  b.positions.assign(n, 0);
  b.slots.assign(n, -1);
  b.max_blocks_per_seq = static_cast<int32_t>(options_.max_blocks_per_seq);
  b.block_tables.assign(static_cast<size_t>(n) * b.max_blocks_per_seq, 0);
  for (int64_t i = 0; i < n; ++i) {
    b.token_seq.push_back(static_cast<int32_t>(i));
    b.logits_indices.push_back(static_cast<int32_t>(i));
  }
  return b;
}

Status ModelRunner::PlanKvCache() {
  const ModelConfig& c = model_->config();
  Backend* backend = model_->backend();
  const KvRowShape row = KvRowShapeFor(c);
  const DType kv_dtype = backend->kv_cache_dtype();
  const size_t bytes_per_token =
      KvCache::BytesPerToken(c.num_layers, row.k_dim, row.v_dim, kv_dtype);
  if (options_.num_kv_blocks > 0) {
    SY_ASSIGN_OR_RETURN(kv_, KvCache::Create(backend, c.num_layers, options_.num_kv_blocks,
                                             options_.block_size, row.k_dim, row.v_dim, kv_dtype));
    if (!options_.use_graphs) return Status::Ok();
    ZeroFirstKvBlock();
    // Graphs capture the scratch's address: it must be at its peak before the first capture.
    return Profile();
  }
  StatusOr<DeviceMemoryInfo> before = backend->MemoryInfo();
  if (!before.ok()) {
    return Status::InvalidArgument("num_kv_blocks 0 (plan from device memory) needs a GPU: " +
                                   before.status().message());
  }
  // Over a one-block cache first, so the backend's scratch reaches its peak before the KV pool
  // takes what is left.
  SY_ASSIGN_OR_RETURN(kv_, KvCache::Create(backend, c.num_layers, 1, options_.block_size, row.k_dim,
                                           row.v_dim, kv_dtype));
  ZeroFirstKvBlock();
  SY_RETURN_IF_ERROR(Profile());
  kv_.reset();
  SY_ASSIGN_OR_RETURN(DeviceMemoryInfo mem, backend->MemoryInfo());
  KvMemoryInput in;
  in.total_bytes = mem.total_bytes;
  in.used_bytes = mem.total_bytes - mem.free_bytes;
  in.utilization = options_.gpu_memory_utilization;
  in.bytes_per_block =
      KvCache::BytesPerBlock(c.num_layers, options_.block_size, row.k_dim, row.v_dim, kv_dtype);
  in.min_blocks = options_.max_blocks_per_seq;
  in.weights_bytes = model_->weights_bytes();
  SY_ASSIGN_OR_RETURN(options_.num_kv_blocks, PlanKvBlocks(in));
  options_.num_kv_blocks = std::min<int64_t>(options_.num_kv_blocks, INT32_MAX);
  spdlog::info("KV cache: {} blocks of {} tokens ({}, {}, {} bytes per token) in {} of GPU memory",
               options_.num_kv_blocks, options_.block_size,
               FormatGiB(options_.num_kv_blocks * in.bytes_per_block), dtype_name(kv_dtype),
               bytes_per_token, FormatGiB(in.total_bytes));
  SY_ASSIGN_OR_RETURN(kv_, KvCache::Create(backend, c.num_layers, options_.num_kv_blocks,
                                           options_.block_size, row.k_dim, row.v_dim, kv_dtype));
  ZeroFirstKvBlock();
  return Status::Ok();
}

Status ModelRunner::Profile() {
  // The largest prefill-shaped and decode-shaped steps, writing no KV (slots -1) and reading
  // block 0 only.
  Backend* backend = model_->backend();
  StepBatch prefill = DummyDecodeStep(std::min(options_.max_seqs, options_.max_batch_tokens));
  for (int64_t i = static_cast<int64_t>(prefill.tokens.size()); i < options_.max_batch_tokens;
       ++i) {
    prefill.tokens.push_back(0);
    prefill.positions.push_back(0);
    prefill.slots.push_back(-1);
    prefill.token_seq.push_back(static_cast<int32_t>(i % options_.max_seqs));
  }
  prefill.logits_indices.resize(
      std::min<size_t>(prefill.logits_indices.size(), options_.max_logits_rows));
  const StepBatch decode = DummyDecodeStep(
      std::min({options_.max_seqs, options_.max_batch_tokens, options_.max_logits_rows}));
  const bool saved = options_.use_graphs;
  options_.use_graphs = false;
  for (const StepBatch* b : std::initializer_list<const StepBatch*>{&prefill, &decode}) {
    Tensor logits;
    int64_t step_tokens = 0;
    SY_RETURN_IF_ERROR(Run(*b, &logits, &step_tokens));
  }
  options_.use_graphs = saved;
  backend->Synchronize();
  return backend->status();
}

void ModelRunner::ZeroFirstKvBlock() {
  // Padding and profiling tokens attend to block 0; fresh device memory may hold NaN patterns,
  // which would flow through the padded rows into the router.
  Backend* backend = model_->backend();
  for (int64_t layer = 0; layer < model_->config().num_layers; ++layer) {
    backend->Zero(kv_->k(layer).Rows(0, options_.block_size));
    if (kv_->v(layer).data != nullptr) backend->Zero(kv_->v(layer).Rows(0, options_.block_size));
  }
}

Status ModelRunner::CaptureGraphs() {
  Backend* backend = model_->backend();
  const auto start = std::chrono::steady_clock::now();
  buckets_ = DecodeGraphBuckets(
      std::min({options_.max_seqs, options_.max_logits_rows, options_.max_batch_tokens}));
  graphs_.assign(buckets_.size(), -1);
  // Largest first: anything sized lazily reaches its peak before the smaller captures.
  for (size_t i = buckets_.size(); i-- > 0;) {
    const int32_t bucket = buckets_[i];
    const StepBatch b = DummyDecodeStep(bucket);
    const ForwardInputs in = Upload(b);
    const Tensor logits{logits_.data(), DType::kF32, bucket, model_->config().vocab_size};
    // Once eagerly, so every lazily sized resource (scratch, cuBLAS plans) exists first.
    SY_RETURN_IF_ERROR(model_->Enqueue(in, *kv_, Workspace(), nullptr, logits));
    backend->Synchronize();
    SY_RETURN_IF_ERROR(backend->status());
    SY_RETURN_IF_ERROR(backend->BeginCapture());
    const Status enqueued = model_->Enqueue(in, *kv_, Workspace(), nullptr, logits);
    StatusOr<int> graph = backend->EndCapture();
    SY_RETURN_IF_ERROR(enqueued);
    SY_RETURN_IF_ERROR(graph.status());
    graphs_[i] = *graph;
  }
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  spdlog::info("captured {} decode graphs (batch 1..{}) in {:.0f} ms", graphs_.size(),
               buckets_.empty() ? 0 : buckets_.back(), ms);
  return Status::Ok();
}

Status ModelRunner::Validate(const StepBatch& b) const {
  const size_t t = b.tokens.size();
  if (t > static_cast<size_t>(options_.max_batch_tokens)) {
    return Status::OutOfRange("step has " + std::to_string(t) + " tokens; the limit is " +
                              std::to_string(options_.max_batch_tokens));
  }
  if (b.positions.size() != t || b.slots.size() != t || b.token_seq.size() != t) {
    return Status::InvalidArgument("step batch arrays differ in length");
  }
  if (b.max_blocks_per_seq <= 0 || b.max_blocks_per_seq > options_.max_blocks_per_seq ||
      b.block_tables.size() % b.max_blocks_per_seq != 0) {
    return Status::InvalidArgument("bad block table shape");
  }
  const int64_t num_seqs = static_cast<int64_t>(b.block_tables.size()) / b.max_blocks_per_seq;
  if (num_seqs > options_.max_seqs) {
    return Status::OutOfRange("step has " + std::to_string(num_seqs) + " sequences; the limit is " +
                              std::to_string(options_.max_seqs));
  }
  if (static_cast<int64_t>(b.logits_indices.size()) > options_.max_logits_rows) {
    return Status::OutOfRange("step asks for " + std::to_string(b.logits_indices.size()) +
                              " rows of logits; the limit is " +
                              std::to_string(options_.max_logits_rows));
  }
  const int64_t vocab = model_->config().vocab_size;
  const int64_t capacity = static_cast<int64_t>(b.max_blocks_per_seq) * options_.block_size;
  const int64_t num_slots = kv_->num_blocks() * kv_->block_size();
  for (size_t i = 0; i < t; ++i) {
    if (b.tokens[i] < 0 || b.tokens[i] >= vocab) {
      return Status::InvalidArgument("token id " + std::to_string(b.tokens[i]) +
                                     " is outside the vocabulary (size " + std::to_string(vocab) +
                                     ")");
    }
    if (b.positions[i] < 0 || b.positions[i] >= capacity || b.token_seq[i] < 0 ||
        b.token_seq[i] >= num_seqs || b.slots[i] >= num_slots) {
      return Status::InvalidArgument("token " + std::to_string(i) +
                                     " has an out-of-range position, sequence or slot");
    }
  }
  for (int32_t block : b.block_tables) {
    if (block < 0 || block >= kv_->num_blocks()) {
      return Status::InvalidArgument("block table entry " + std::to_string(block) +
                                     " is outside the KV pool");
    }
  }
  for (int32_t idx : b.logits_indices) {
    if (idx < 0 || static_cast<size_t>(idx) >= t) {
      return Status::InvalidArgument("logits index out of range");
    }
  }
  return Status::Ok();
}

ForwardInputs ModelRunner::Upload(const StepBatch& b) {
  Backend* backend = model_->backend();
  const int64_t t = static_cast<int64_t>(b.tokens.size());
  const int64_t num_seqs = static_cast<int64_t>(b.block_tables.size()) / b.max_blocks_per_seq;
  const int64_t n_logits = static_cast<int64_t>(b.logits_indices.size());
  ctx_len_host_.resize(t);
  for (int64_t i = 0; i < t; ++i) ctx_len_host_[i] = b.positions[i] + 1;

  // Lay the metadata out one array after another in a host mirror of the staging buffer and
  // upload it with one copy. The layout depends only on the token and logits counts, so a
  // replayed graph finds its arrays where its capture (same bucket) put them.
  staging_host_.resize(staging_.size());
  char* device = static_cast<char*>(staging_.data());
  size_t offset = 0;
  auto stage = [&](const void* src, DType dtype, int64_t rows, int64_t cols) {
    Tensor dst{device + offset, dtype, rows, cols};
    if (dst.nbytes() > 0) std::memcpy(staging_host_.data() + offset, src, dst.nbytes());
    offset += Aligned(dst.nbytes());
    return dst;
  };
  ForwardInputs in;
  in.tokens = stage(b.tokens.data(), DType::kI32, 1, t);
  in.positions = stage(b.positions.data(), DType::kI32, 1, t);
  in.attn.token_seq = stage(b.token_seq.data(), DType::kI32, 1, t);
  in.attn.ctx_len = stage(ctx_len_host_.data(), DType::kI32, 1, t);
  in.attn.slots = stage(b.slots.data(), DType::kI64, 1, t);
  in.logits_indices = stage(b.logits_indices.data(), DType::kI32, 1, n_logits);
  in.attn.block_tables = stage(b.block_tables.data(), DType::kI32, num_seqs, b.max_blocks_per_seq);
  backend->CopyToDevice(device, staging_host_.data(), offset);
  in.attn.block_size = options_.block_size;
  return in;
}

Tensor ModelRunner::Workspace() const {
  return Tensor{workspace_.data(), DType::kF32, 1,
                static_cast<int64_t>(workspace_.size() / sizeof(float))};
}

Status ModelRunner::Run(const StepBatch& b, Tensor* logits_out, int64_t* step_tokens) {
  const int64_t vocab = model_->config().vocab_size;
  const int64_t n = static_cast<int64_t>(b.tokens.size());
  const int32_t bucket = options_.use_graphs && IsDecodeStep(b) ? BucketFor(buckets_, n) : -1;
  if (bucket > 0) {
    const size_t i = std::find(buckets_.begin(), buckets_.end(), bucket) - buckets_.begin();
    Upload(PadDecodeStep(b, bucket, static_cast<int32_t>(options_.max_blocks_per_seq)));
    SY_RETURN_IF_ERROR(model_->backend()->Replay(graphs_[i]));
    ++graph_replays_;
    *step_tokens = bucket;
    *logits_out = Tensor{logits_.data(), DType::kF32, n, vocab};
    return Status::Ok();
  }
  const ForwardInputs in = Upload(b);
  *step_tokens = n;
  *logits_out = Tensor{logits_.data(), DType::kF32, in.logits_indices.numel(), vocab};
  ExpertLoad* ep_load = model_->expert_dispatch() != nullptr ? &load_ : nullptr;
  return model_->Enqueue(in, *kv_, Workspace(), ep_load, *logits_out);
}

Status ModelRunner::Step(const StepBatch& b, std::vector<float>* logits) {
  SY_RETURN_IF_ERROR(Validate(b));
  Backend* backend = model_->backend();
  load_.BeginStep();
  Tensor out;
  int64_t step_tokens = 0;
  SY_RETURN_IF_ERROR(Run(b, &out, &step_tokens));
  logits->resize(static_cast<size_t>(out.numel()));
  backend->CopyToHost(logits->data(), out.data, out.nbytes());
  if (model_->expert_dispatch() == nullptr) {
    model_->RecordRouting(Workspace(), step_tokens, static_cast<int64_t>(b.tokens.size()), &load_);
  }
  return backend->status();
}

}  // namespace sy
