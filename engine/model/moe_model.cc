#include "engine/model/moe_model.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "engine/core/check.h"

namespace sy {

// Views into the step's activation workspace, carved for `tokens` rows.
struct MoeModel::Activations {
  int64_t tokens = 0;
  Tensor x;            // residual stream [T, hidden]
  Tensor h;            // normalised input of the current sub-block [T, hidden]
  Tensor q, k, v;      // [T, q_dim], [T, kv_dim], [T, kv_dim]
  Tensor attn;         // [T, q_dim]
  Tensor out;          // output of the current sub-block [T, hidden]
  Tensor router;       // [T, experts]
  Tensor topk_ids;     // int32 [layers, T*k]: each layer's choices, kept for RecordRouting
  Tensor topk_w;       // [T, k]
  Tensor offsets;      // int32 [1, experts + 1]
  Tensor sorted;       // int32 [3, T*k]: token, flat (token, choice) index, inverse
  Tensor xs, ys;       // [T*k, hidden]: expert inputs and outputs, grouped by expert
  Tensor shared_out;   // [T, hidden]
  Tensor shared_gate;  // [T, 1]
  Tensor scratch;      // FFN intermediates
  Tensor selected;     // [T, hidden]: rows whose logits are wanted
};

namespace {

// Lays out tensors one after another in a workspace, each 64-byte aligned.
class Carver {
 public:
  explicit Carver(void* base) : base_(static_cast<char*>(base)) {}
  Tensor Take(DType dtype, int64_t rows, int64_t cols) {
    Tensor t{base_ == nullptr ? nullptr : base_ + offset_, dtype, rows, cols};
    offset_ += (t.nbytes() + 63) / 64 * 64;
    return t;
  }
  size_t used() const { return offset_; }

 private:
  char* base_;
  size_t offset_ = 0;
};

int64_t MaxIntermediate(const ModelConfig& c) {
  return std::max(
      {c.moe_intermediate_size, c.shared_expert_intermediate_size, c.dense_intermediate_size});
}

}  // namespace

MoeModel::MoeModel(Backend* backend, ModelConfig config, ModelWeights weights)
    : backend_(backend), config_(std::move(config)), w_(std::move(weights)) {}

StatusOr<std::unique_ptr<MoeModel>> MoeModel::Create(Backend* backend, ModelConfig config,
                                                     ModelWeights weights) {
  std::unique_ptr<MoeModel> m(new MoeModel(backend, std::move(config), std::move(weights)));
  SY_RETURN_IF_ERROR(m->BuildExpertTables());
  return m;
}

StatusOr<std::unique_ptr<MoeModel>> MoeModel::Load(const std::string& model_dir, Backend* backend,
                                                   bool load_routed_experts,
                                                   Quantization quantization) {
  SY_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  SY_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(model_dir));
  SY_ASSIGN_OR_RETURN(ModelWeights weights, LoadModelWeights(config, *checkpoint, backend,
                                                             load_routed_experts, quantization));
  return Create(backend, std::move(config), std::move(weights));
}

Status MoeModel::BuildExpertTables() {
  const ModelConfig& c = config_;
  tables_.assign(c.num_layers, ExpertTable{});
  std::vector<const LayerWeights*> layers;
  for (const LayerWeights& l : w_.layers) {
    // Expert-parallel ranks load their experts elsewhere and run them through the dispatch.
    if (l.is_moe && !l.experts.empty() && l.experts[0].gate_up.data != nullptr) {
      layers.push_back(&l);
    }
  }
  if (layers.empty()) return Status::Ok();
  const int64_t e = c.num_experts;
  std::vector<void*>& host = table_host_;
  host.assign(layers.size() * 2 * e, nullptr);
  for (size_t i = 0; i < layers.size(); ++i) {
    for (int64_t j = 0; j < e; ++j) {
      host[(2 * i) * e + j] = layers[i]->experts[j].gate_up.data;
      host[(2 * i + 1) * e + j] = layers[i]->experts[j].down.data;
    }
  }
  SY_ASSIGN_OR_RETURN(table_buffer_, backend_->Allocate(host.size() * sizeof(void*)));
  backend_->CopyToDevice(table_buffer_.data(), host.data(), host.size() * sizeof(void*));
  auto* base = static_cast<void**>(table_buffer_.data());
  for (size_t i = 0; i < layers.size(); ++i) {
    ExpertTable& t = tables_[layers[i] - w_.layers.data()];
    t.gate_up_ptrs = Tensor{base + (2 * i) * e, DType::kI64, 1, e};
    t.down_ptrs = Tensor{base + (2 * i + 1) * e, DType::kI64, 1, e};
    t.gate_up_host = std::span<void* const>(host.data() + (2 * i) * e, e);
    t.down_host = std::span<void* const>(host.data() + (2 * i + 1) * e, e);
    t.dtype = layers[i]->experts[0].gate_up.dtype;
    t.num_experts = e;
    t.hidden = c.hidden_size;
    t.inter = c.moe_intermediate_size;
  }
  return Status::Ok();
}

MoeModel::Activations MoeModel::Carve(void* base, int64_t tokens, size_t* bytes) const {
  const ModelConfig& c = config_;
  const int64_t t = tokens;
  const int64_t tk = t * std::max<int64_t>(c.num_experts_per_tok, 1);
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  Carver cv(base);
  Activations a;
  a.tokens = t;
  a.x = cv.Take(DType::kF32, t, c.hidden_size);
  a.h = cv.Take(DType::kF32, t, c.hidden_size);
  a.q = cv.Take(DType::kF32, t, q_dim);
  a.k = cv.Take(DType::kF32, t, kv_dim);
  a.v = cv.Take(DType::kF32, t, kv_dim);
  a.attn = cv.Take(DType::kF32, t, q_dim);
  a.out = cv.Take(DType::kF32, t, c.hidden_size);
  a.router = cv.Take(DType::kF32, t, std::max<int64_t>(c.num_experts, 1));
  a.topk_ids = cv.Take(DType::kI32, c.num_layers, t * c.num_experts_per_tok);
  a.topk_w = cv.Take(DType::kF32, t, c.num_experts_per_tok);
  a.offsets = cv.Take(DType::kI32, 1, c.num_experts + 1);
  a.sorted = cv.Take(DType::kI32, 3, tk);
  a.xs = cv.Take(DType::kF32, tk, c.hidden_size);
  a.ys = cv.Take(DType::kF32, tk, c.hidden_size);
  a.shared_out = cv.Take(DType::kF32, t, c.hidden_size);
  a.shared_gate = cv.Take(DType::kF32, t, 1);
  a.scratch = cv.Take(DType::kF32, 1, std::max(tk, t) * 3 * MaxIntermediate(c));
  a.selected = cv.Take(DType::kF32, t, c.hidden_size);
  *bytes = cv.used();
  return a;
}

size_t MoeModel::WorkspaceBytes(int64_t max_tokens) const {
  size_t bytes = 0;
  Carve(nullptr, max_tokens, &bytes);
  return bytes;
}

Status MoeModel::Forward(const ForwardInputs& in, const KvCache& kv, const Tensor& workspace,
                         ExpertLoad* load, const Tensor& logits) {
  SY_RETURN_IF_ERROR(Enqueue(in, kv, workspace, load, logits));
  const int64_t tokens = in.tokens.numel();
  if (dispatch_ == nullptr && load != nullptr) RecordRouting(workspace, tokens, tokens, load);
  return Status::Ok();
}

void MoeModel::RecordRouting(const Tensor& workspace, int64_t step_tokens, int64_t real_tokens,
                             ExpertLoad* load) {
  const ModelConfig& c = config_;
  if (c.num_experts == 0 || step_tokens == 0) return;
  size_t bytes = 0;
  const Activations a = Carve(workspace.data, step_tokens, &bytes);
  const int64_t k = c.num_experts_per_tok;
  topk_ids_host_.resize(a.topk_ids.numel());
  backend_->CopyToHost(topk_ids_host_.data(), a.topk_ids.data, a.topk_ids.nbytes());
  for (int64_t layer = 0; layer < c.num_layers; ++layer) {
    if (!w_.layers[layer].is_moe) continue;
    const std::span<const int32_t> ids(topk_ids_host_.data() + layer * step_tokens * k,
                                       real_tokens * k);
    expert_offsets_.assign(c.num_experts, 0);
    for (int32_t e : ids) {
      if (e >= 0 && e < c.num_experts) ++expert_offsets_[e];
    }
    load->Record(layer, expert_offsets_);
    load->RecordChoices(layer, ids, {});
  }
}

Status MoeModel::Enqueue(const ForwardInputs& in, const KvCache& kv, const Tensor& workspace,
                         ExpertLoad* load, const Tensor& logits) {
  const ModelConfig& c = config_;
  const int64_t tokens = in.tokens.numel();
  if (tokens == 0) return dispatch_ != nullptr ? EmptyDispatchStep() : Status::Ok();
  size_t bytes = 0;
  const Activations a = Carve(workspace.data, tokens, &bytes);
  if (bytes > workspace.nbytes()) {
    return Status::OutOfRange("a step of " + std::to_string(tokens) +
                              " tokens does not fit the activation workspace");
  }
  const float eps = static_cast<float>(c.rms_norm_eps);
  backend_->Embedding(in.tokens, w_.embed, a.x);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const LayerWeights& l = w_.layers[i];
    if (i == 0) {
      backend_->RmsNorm(a.x, l.input_norm, eps, a.h);
    } else {
      backend_->AddRmsNorm(a.x, a.out, l.input_norm, eps, a.h);
    }
    Attention(i, in, kv, a);
    backend_->AddRmsNorm(a.x, a.out, l.post_attn_norm, eps, a.h);
    if (l.is_moe) {
      SY_RETURN_IF_ERROR(Moe(i, a, load));
    } else {
      backend_->Ffn(a.h, l.dense, a.scratch, a.out);
    }
  }
  if (dispatch_ != nullptr) SY_RETURN_IF_ERROR(dispatch_->TakeError());
  backend_->AddRmsNorm(a.x, a.out, w_.final_norm, eps, a.h);
  const Tensor selected = a.selected.Rows(0, in.logits_indices.numel());
  backend_->GatherRows(a.h, in.logits_indices, selected);
  backend_->MatMul(selected, w_.lm_head, nullptr, logits);
  return Status::Ok();
}

void MoeModel::Attention(int64_t layer, const ForwardInputs& in, const KvCache& kv,
                         const Activations& a) {
  const ModelConfig& c = config_;
  const LayerWeights& l = w_.layers[layer];
  const float eps = static_cast<float>(c.rms_norm_eps);
  const bool bias = l.bq.data != nullptr;
  backend_->MatMul(a.h, l.wq, bias ? &l.bq : nullptr, a.q);
  backend_->MatMul(a.h, l.wk, bias ? &l.bk : nullptr, a.k);
  backend_->MatMul(a.h, l.wv, bias ? &l.bv : nullptr, a.v);
  if (c.qk_norm == QkNorm::kPerHead) {
    const Tensor q = a.q.Reshaped(a.tokens * c.num_heads, c.head_dim);
    const Tensor k = a.k.Reshaped(a.tokens * c.num_kv_heads, c.head_dim);
    backend_->RmsNorm(q, l.q_norm, eps, q);
    backend_->RmsNorm(k, l.k_norm, eps, k);
  } else if (c.qk_norm == QkNorm::kFull) {
    backend_->RmsNorm(a.q, l.q_norm, eps, a.q);
    backend_->RmsNorm(a.k, l.k_norm, eps, a.k);
  }
  backend_->Rope(a.q, c.head_dim, w_.rotary_dim, in.positions, w_.inv_freq, w_.rope_attention_scale,
                 /*interleaved=*/false);
  backend_->Rope(a.k, c.head_dim, w_.rotary_dim, in.positions, w_.inv_freq, w_.rope_attention_scale,
                 /*interleaved=*/false);
  backend_->KvWrite(a.k, a.v, in.attn, kv.k(layer), kv.v(layer));
  const int window = c.layer_uses_sliding_window[layer] ? static_cast<int>(c.sliding_window) : 0;
  backend_->PagedAttention(a.q, in.attn, kv.k(layer), kv.v(layer), static_cast<int>(c.num_heads),
                           static_cast<int>(c.num_kv_heads), static_cast<int>(c.head_dim), window,
                           1.0f / std::sqrt(static_cast<float>(c.head_dim)), a.attn);
  backend_->MatMul(a.attn, l.wo, l.bo.data != nullptr ? &l.bo : nullptr, a.out);
}

Status MoeModel::DispatchExperts(int64_t layer, const Activations& a, ExpertLoad* load) {
  const int64_t experts = config_.num_experts;
  const int64_t k = config_.num_experts_per_tok;
  const int64_t tk = a.tokens * k;
  // The exchange is planned on the host: bring the grouping back.
  offsets_host_.resize(experts + 1);
  backend_->CopyToHost(offsets_host_.data(), a.offsets.data, a.offsets.nbytes());
  sorted_host_.resize(2 * tk);
  backend_->CopyToHost(sorted_host_.data(), a.sorted.data, 2 * tk * sizeof(int32_t));
  expert_offsets_.assign(offsets_host_.begin(), offsets_host_.end());
  dest_rank_.resize(tk);
  SY_RETURN_IF_ERROR(
      dispatch_->RunLayer(layer, a.xs.Rows(0, tk), expert_offsets_, a.ys.Rows(0, tk), dest_rank_));
  if (load == nullptr) return Status::Ok();
  topk_ids_host_.resize(tk);
  backend_->CopyToHost(topk_ids_host_.data(), a.topk_ids.Rows(layer, 1).data, tk * sizeof(int32_t));
  std::vector<int64_t>& counts = cursor_;
  counts.resize(experts);
  for (int64_t e = 0; e < experts; ++e) counts[e] = expert_offsets_[e + 1] - expert_offsets_[e];
  load->Record(layer, counts);
  pair_rank_.resize(tk);
  for (int64_t pos = 0; pos < tk; ++pos) pair_rank_[sorted_host_[tk + pos]] = dest_rank_[pos];
  load->RecordChoices(layer, topk_ids_host_, pair_rank_);
  return Status::Ok();
}

Status MoeModel::EmptyDispatchStep() {
  const Tensor none{nullptr, DType::kF32, 0, config_.hidden_size};
  expert_offsets_.assign(config_.num_experts + 1, 0);
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    if (!w_.layers[i].is_moe) continue;
    SY_RETURN_IF_ERROR(dispatch_->RunLayer(i, none, expert_offsets_, none, {}));
  }
  return dispatch_->TakeError();
}

Status MoeModel::Moe(int64_t layer, const Activations& a, ExpertLoad* load) {
  const ModelConfig& c = config_;
  const LayerWeights& l = w_.layers[layer];
  const int64_t t = a.tokens;
  const int64_t k = c.num_experts_per_tok;
  const int64_t tk = t * k;
  const int64_t experts = c.num_experts;
  const Tensor router = a.router.Rows(0, t);
  const Tensor ids = a.topk_ids.Rows(layer, 1).Reshaped(t, k);
  backend_->MatMul(a.h, l.router, nullptr, router);
  // Mixtral, Qwen2/3-MoE, OLMoE: softmax top-k (the config parser sets norm_topk_prob for Mixtral).
  RouterParams router_params;
  router_params.k = static_cast<int>(k);
  router_params.renormalize = c.norm_topk_prob;
  backend_->Route(router, router_params, nullptr, ids, a.topk_w);
  // Group the (token, choice) pairs by expert on the device; within an expert, by token.
  backend_->SortByExpert(ids, experts, a.offsets, a.sorted);
  const Tensor sorted_tok = a.sorted.Rows(0, 1);
  const Tensor xs = a.xs.Rows(0, tk);
  const Tensor ys = a.ys.Rows(0, tk);
  backend_->GatherRows(a.h, sorted_tok, xs);
  if (dispatch_ == nullptr) {
    backend_->GroupedExpertFfn(xs, a.offsets, tables_[layer], a.scratch, ys);
  } else {
    SY_RETURN_IF_ERROR(DispatchExperts(layer, a, load));
  }
  backend_->CombineExperts(ys, a.sorted.Rows(2, 1).Reshaped(t, k), a.topk_w, a.out);
  if (c.shared_expert_intermediate_size > 0) {
    backend_->Ffn(a.h, l.shared_expert, a.scratch, a.shared_out);
    backend_->MatMul(a.h, l.shared_expert_gate, nullptr, a.shared_gate);
    backend_->Sigmoid(a.shared_gate);
    backend_->AddGatedRows(a.shared_out, a.shared_gate, a.out);
  }
  return Status::Ok();
}

}  // namespace sy
