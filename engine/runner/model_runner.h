// ModelRunner: runs one step of the model on a flat batch prepared on the host (by the scheduler
// or the offline generator): uploads the batch metadata, runs the forward pass over the paged KV
// cache it owns, and returns the requested logits. Memory is planned at creation: KV pool,
// activation workspace and metadata staging; a step allocates nothing. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/kv/kv_cache.h"
#include "engine/model/moe_model.h"
#include "engine/moe/expert_load.h"

namespace sy {

// One step: tokens of many sequences, flattened. Sequence s owns row s of block_tables.
struct StepBatch {
  std::vector<int32_t> tokens;
  std::vector<int32_t> positions;     // position of each token in its sequence
  std::vector<int64_t> slots;         // KV-cache slot receiving each token's K/V
  std::vector<int32_t> token_seq;     // sequence (row of block_tables) of each token
  std::vector<int32_t> block_tables;  // [num_seqs, max_blocks_per_seq], row-major
  int32_t max_blocks_per_seq = 0;
  std::vector<int32_t> logits_indices;  // tokens whose next-token logits are returned
};

struct RunnerOptions {
  int64_t max_batch_tokens = 2048;  // tokens per step
  int64_t max_seqs = 256;           // sequences per step
  int64_t num_kv_blocks = 1024;
  int block_size = 16;
  int64_t max_blocks_per_seq = 0;  // 0: enough for max_position_embeddings
};

class ModelRunner {
 public:
  static StatusOr<std::unique_ptr<ModelRunner>> Create(MoeModel* model,
                                                       const RunnerOptions& options);

  // Runs one step; `logits` receives logits_indices.size() rows of vocab_size floats.
  Status Step(const StepBatch& batch, std::vector<float>* logits);
  // The checks Step makes before it computes anything (sizes, ids, slots, block tables).
  Status Validate(const StepBatch& batch) const;

  const RunnerOptions& options() const { return options_; }
  const MoeModel& model() const { return *model_; }
  ExpertLoad& expert_load() { return load_; }

 private:
  ModelRunner(MoeModel* model, const RunnerOptions& options, KvCache kv);

  MoeModel* model_;
  RunnerOptions options_;
  KvCache kv_;
  ExpertLoad load_;
  DeviceBuffer workspace_;
  DeviceBuffer staging_;  // batch metadata
  DeviceBuffer logits_;
  std::vector<int32_t> ctx_len_host_;
};

}  // namespace sy
