#include "engine/runner/model_runner.h"

#include <string>

namespace sy {
namespace {

size_t Aligned(size_t bytes) { return (bytes + 63) / 64 * 64; }

}  // namespace

ModelRunner::ModelRunner(MoeModel* model, const RunnerOptions& options, KvCache kv)
    : model_(model),
      options_(options),
      kv_(std::move(kv)),
      load_(model->config().num_layers, model->config().num_experts) {}

StatusOr<std::unique_ptr<ModelRunner>> ModelRunner::Create(MoeModel* model,
                                                           const RunnerOptions& options_in) {
  const ModelConfig& c = model->config();
  RunnerOptions o = options_in;
  if (o.max_batch_tokens <= 0 || o.max_seqs <= 0 || o.block_size <= 0 || o.num_kv_blocks <= 0) {
    return Status::InvalidArgument("runner sizes must be positive");
  }
  if (o.max_blocks_per_seq <= 0) {
    o.max_blocks_per_seq = (c.max_position_embeddings + o.block_size - 1) / o.block_size;
  }
  Backend* backend = model->backend();
  SY_ASSIGN_OR_RETURN(KvCache kv, KvCache::Create(backend, c.num_layers, o.num_kv_blocks,
                                                  o.block_size, c.num_kv_heads * c.head_dim));
  std::unique_ptr<ModelRunner> r(new ModelRunner(model, o, std::move(kv)));
  SY_ASSIGN_OR_RETURN(r->workspace_, backend->Allocate(model->WorkspaceBytes(o.max_batch_tokens)));
  const size_t t = static_cast<size_t>(o.max_batch_tokens);
  // Six per-token arrays, each given an int64-sized slot (see Step), then the block tables.
  const size_t staging =
      6 * Aligned(t * sizeof(int64_t)) +
      Aligned(static_cast<size_t>(o.max_seqs * o.max_blocks_per_seq) * sizeof(int32_t));
  SY_ASSIGN_OR_RETURN(r->staging_, backend->Allocate(staging));
  SY_ASSIGN_OR_RETURN(r->logits_, backend->Allocate(t * c.vocab_size * sizeof(float)));
  return r;
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
  const int64_t vocab = model_->config().vocab_size;
  const int64_t capacity = static_cast<int64_t>(b.max_blocks_per_seq) * options_.block_size;
  const int64_t num_slots = kv_.num_blocks() * kv_.block_size();
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
    if (block < 0 || block >= kv_.num_blocks()) {
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

Status ModelRunner::Step(const StepBatch& b, std::vector<float>* logits) {
  SY_RETURN_IF_ERROR(Validate(b));
  Backend* backend = model_->backend();
  const int64_t t = static_cast<int64_t>(b.tokens.size());
  const int64_t num_seqs = static_cast<int64_t>(b.block_tables.size()) / b.max_blocks_per_seq;
  const int64_t n_logits = static_cast<int64_t>(b.logits_indices.size());
  const int64_t vocab = model_->config().vocab_size;
  ctx_len_host_.resize(t);
  for (int64_t i = 0; i < t; ++i) ctx_len_host_[i] = b.positions[i] + 1;

  // Stage the metadata in device memory, one array after another.
  char* base = static_cast<char*>(staging_.data());
  size_t offset = 0;
  auto upload = [&](const void* src, DType dtype, int64_t rows, int64_t cols) {
    Tensor dst{base + offset, dtype, rows, cols};
    backend->CopyToDevice(dst.data, src, dst.nbytes());
    offset += Aligned(static_cast<size_t>(options_.max_batch_tokens) * sizeof(int64_t));
    return dst;
  };
  ForwardInputs in;
  in.tokens = upload(b.tokens.data(), DType::kI32, 1, t);
  in.positions = upload(b.positions.data(), DType::kI32, 1, t);
  in.attn.token_seq = upload(b.token_seq.data(), DType::kI32, 1, t);
  in.attn.ctx_len = upload(ctx_len_host_.data(), DType::kI32, 1, t);
  in.attn.slots = upload(b.slots.data(), DType::kI64, 1, t);
  in.logits_indices = upload(b.logits_indices.data(), DType::kI32, 1, n_logits);
  in.attn.block_tables = Tensor{base + offset, DType::kI32, num_seqs, b.max_blocks_per_seq};
  backend->CopyToDevice(in.attn.block_tables.data, b.block_tables.data(),
                        in.attn.block_tables.nbytes());
  in.attn.block_size = options_.block_size;

  const Tensor workspace{workspace_.data(), DType::kF32, 1,
                         static_cast<int64_t>(workspace_.size() / sizeof(float))};
  const Tensor out{logits_.data(), DType::kF32, n_logits, vocab};
  load_.BeginStep();
  SY_RETURN_IF_ERROR(model_->Forward(in, kv_, workspace, &load_, out));
  logits->resize(static_cast<size_t>(n_logits * vocab));
  backend->CopyToHost(logits->data(), out.data, out.nbytes());
  return Status::Ok();
}

}  // namespace sy
