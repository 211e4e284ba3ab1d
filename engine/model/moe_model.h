// MoeModel: the one generic MoE decoder (Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE), configured from
// a ModelConfig. Owns its weights in backend memory and runs the forward pass of one flat batch
// (prefill chunks and decode tokens of many sequences) over a paged KV cache.
// Not thread-safe: one engine thread drives it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/kv/kv_cache.h"
#include "engine/model/config.h"
#include "engine/model/expert_dispatch.h"
#include "engine/model/model_weights.h"
#include "engine/moe/expert_load.h"

namespace sy {

// One step's inputs, already in backend memory.
struct ForwardInputs {
  Tensor tokens;     // int32 [1, T]
  Tensor positions;  // int32 [1, T]
  AttentionMetadata attn;
  Tensor logits_indices;  // int32 [1, L]: tokens whose next-token logits are wanted
};

class MoeModel {
 public:
  // Takes ownership of `weights` (in `backend` memory) and indexes the experts for the device.
  static StatusOr<std::unique_ptr<MoeModel>> Create(Backend* backend, ModelConfig config,
                                                    ModelWeights weights);
  // Reads config.json and the weights of a Hugging Face model directory into `backend`. With
  // load_routed_experts false the routed experts are left out (see SetExpertDispatch).
  static StatusOr<std::unique_ptr<MoeModel>> Load(const std::string& model_dir, Backend* backend,
                                                  bool load_routed_experts = true,
                                                  Quantization quantization = Quantization::kNone);

  // Runs the routed experts through `dispatch` (not owned; null: all experts local). With
  // expert parallelism the model must then be driven in lockstep with the other ranks: a step
  // with no tokens still runs every MoE layer's exchange.
  void SetExpertDispatch(ExpertDispatch* dispatch) { dispatch_ = dispatch; }
  ExpertDispatch* expert_dispatch() const { return dispatch_; }

  const ModelConfig& config() const { return config_; }
  Backend* backend() const { return backend_; }
  // Bytes of weights this model holds in backend memory (routed experts of other ranks aside).
  size_t weights_bytes() const { return w_.total_bytes; }
  // Bytes of activation workspace a step of up to `max_tokens` tokens needs.
  size_t WorkspaceBytes(int64_t max_tokens) const;
  // logits: f32 [L, vocab]. Records each MoE layer's tokens per expert into `load` if not null.
  Status Forward(const ForwardInputs& in, const KvCache& kv, const Tensor& workspace,
                 ExpertLoad* load, const Tensor& logits);
  // Forward without the routing record: on a single rank, only device work is issued (no copy
  // to the host, no host decision on device data), so it can be captured in a graph. `load`
  // is used only with an expert dispatch.
  Status Enqueue(const ForwardInputs& in, const KvCache& kv, const Tensor& workspace,
                 ExpertLoad* load, const Tensor& logits);
  // After an Enqueue of `step_tokens` tokens has completed: records the routing of the first
  // `real_tokens` (the rest are graph padding) into `load`. Without an expert dispatch only.
  void RecordRouting(const Tensor& workspace, int64_t step_tokens, int64_t real_tokens,
                     ExpertLoad* load);

 private:
  struct Activations;
  MoeModel(Backend* backend, ModelConfig config, ModelWeights weights);
  Status BuildExpertTables();
  // Views of the workspace at `base` for a step of `tokens`; `bytes` gets the size they span.
  Activations Carve(void* base, int64_t tokens, size_t* bytes) const;
  void Attention(int64_t layer, const ForwardInputs& in, const KvCache& kv, const Activations& a);
  void MlaAttention(int64_t layer, const ForwardInputs& in, const KvCache& kv,
                    const Activations& a);
  Status Moe(int64_t layer, const Activations& a, ExpertLoad* load);
  // The routed experts of `layer` through the expert dispatch (host-planned exchange).
  Status DispatchExperts(int64_t layer, const Activations& a, ExpertLoad* load);
  // The MoE exchanges of a step in which this rank has no tokens.
  Status EmptyDispatchStep();

  Backend* backend_;
  ModelConfig config_;
  ModelWeights w_;
  float attention_scale_;
  RouterParams router_params_;
  ExpertDispatch* dispatch_ = nullptr;
  std::vector<ExpertTable> tables_;  // per layer; empty for dense layers and EP ranks
  DeviceBuffer table_buffer_;
  std::vector<void*> table_host_;  // the tables' pointers, host side
  // Each table's experts' gate_up input_perm (act-order int4), host side; empty when none has one.
  std::vector<const int32_t*> table_perm_host_;
  // Host-side scratch for the routing record and the expert-parallel exchange.
  std::vector<int32_t> topk_ids_host_;
  std::vector<int32_t> offsets_host_;
  std::vector<int64_t> expert_offsets_;
  std::vector<int64_t> cursor_;
  std::vector<int32_t> sorted_host_;
  std::vector<int32_t> dest_rank_;  // per sorted pair (expert dispatch)
  std::vector<int32_t> pair_rank_;  // per (token, choice)
};

}  // namespace sy
