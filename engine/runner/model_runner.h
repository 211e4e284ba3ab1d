// ModelRunner: runs one step of the model on a flat batch prepared on the host (by the scheduler
// or the offline generator): uploads the batch metadata, runs the forward pass over the paged KV
// cache it owns, and returns the requested logits. Memory is planned at creation: KV pool,
// activation workspace and metadata staging; a step allocates nothing. On a GPU, creation also
// profiles a full-size step, sizes the KV pool from what memory is left, and captures a graph
// per decode batch-size bucket, which decode steps then replay. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
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
  // 0: as many as fit in gpu_memory_utilization of the device (backends with a memory pool).
  int64_t num_kv_blocks = 1024;
  int block_size = 16;
  int64_t max_blocks_per_seq = 0;  // 0: enough for max_position_embeddings
  int64_t max_logits_rows = 0;     // rows of logits one step may ask for; 0: max_batch_tokens
  double gpu_memory_utilization = 0.9;
  bool use_graphs = true;  // capture decode steps where the backend supports graphs
};

class ModelRunner {
 public:
  static StatusOr<std::unique_ptr<ModelRunner>> Create(MoeModel* model,
                                                       const RunnerOptions& options);

  // Runs one step; `logits` receives logits_indices.size() rows of vocab_size floats.
  Status Step(const StepBatch& batch, std::vector<float>* logits);
  // The checks Step makes before it computes anything (sizes, ids, slots, block tables).
  Status Validate(const StepBatch& batch) const;

  // The options with every 0 resolved (num_kv_blocks as planned).
  const RunnerOptions& options() const { return options_; }
  // Batch sizes with a captured decode graph (empty without graphs).
  const std::vector<int32_t>& graph_buckets() const { return buckets_; }
  int64_t graph_replays() const { return graph_replays_; }
  const MoeModel& model() const { return *model_; }
  ExpertLoad& expert_load() { return load_; }

 private:
  explicit ModelRunner(MoeModel* model);
  // Uploads the batch's metadata to the staging buffer (fixed addresses, so graphs see it).
  ForwardInputs Upload(const StepBatch& b);
  Tensor Workspace() const;
  // Runs `b` (already validated) eagerly or through a graph; logits stay on the device.
  Status Run(const StepBatch& b, Tensor* logits_out, int64_t* step_tokens);
  // A decode-shaped step of n sequences with no KV writes, reading block 0 (profiling, capture).
  StepBatch DummyDecodeStep(int64_t n) const;
  Status PlanKvCache();
  // Runs the largest prefill- and decode-shaped steps (no KV writes) so lazily sized backend
  // resources reach their peak before memory is planned and graphs are captured.
  Status Profile();
  void ZeroFirstKvBlock();
  Status CaptureGraphs();

  std::vector<int32_t> buckets_;
  std::vector<int> graphs_;  // per bucket
  int64_t graph_replays_ = 0;

  MoeModel* model_;
  RunnerOptions options_;
  std::optional<KvCache> kv_;
  ExpertLoad load_;
  DeviceBuffer workspace_;
  DeviceBuffer staging_;  // batch metadata
  DeviceBuffer logits_;
  std::vector<int32_t> ctx_len_host_;
  std::vector<char> staging_host_;  // host mirror of staging_
};

}  // namespace sy
