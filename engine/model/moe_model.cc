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
  Tensor topk_ids;     // int32 [T, k]
  Tensor topk_w;       // [T, k]
  Tensor sorted;       // int32 [2, T*k]: row 0 token index, row 1 flat (token, choice) index
  Tensor sorted_w;     // [T*k, 1]
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

StatusOr<std::unique_ptr<MoeModel>> MoeModel::Load(const std::string& model_dir, Backend* backend,
                                                   bool load_routed_experts) {
  SY_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  SY_ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(model_dir));
  SY_ASSIGN_OR_RETURN(ModelWeights weights,
                      LoadModelWeights(config, *checkpoint, backend, load_routed_experts));
  return std::make_unique<MoeModel>(backend, std::move(config), std::move(weights));
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
  a.topk_ids = cv.Take(DType::kI32, t, c.num_experts_per_tok);
  a.topk_w = cv.Take(DType::kF32, t, c.num_experts_per_tok);
  a.sorted = cv.Take(DType::kI32, 2, tk);
  a.sorted_w = cv.Take(DType::kF32, tk, 1);
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
  const ModelConfig& c = config_;
  const int64_t tokens = in.tokens.numel();
  if (tokens == 0) return ep_ != nullptr ? EmptyExpertParallelStep() : Status::Ok();
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
  if (ep_ != nullptr) SY_RETURN_IF_ERROR(ep_->TakeError());
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
  backend_->Rope(a.q, c.head_dim, w_.rotary_dim, in.positions, w_.inv_freq,
                 w_.rope_attention_scale);
  backend_->Rope(a.k, c.head_dim, w_.rotary_dim, in.positions, w_.inv_freq,
                 w_.rope_attention_scale);
  backend_->KvWrite(a.k, a.v, in.attn, kv.k(layer), kv.v(layer));
  const int window = c.layer_uses_sliding_window[layer] ? static_cast<int>(c.sliding_window) : 0;
  backend_->PagedAttention(a.q, in.attn, kv.k(layer), kv.v(layer), static_cast<int>(c.num_heads),
                           static_cast<int>(c.num_kv_heads), static_cast<int>(c.head_dim), window,
                           1.0f / std::sqrt(static_cast<float>(c.head_dim)), a.attn);
  backend_->MatMul(a.attn, l.wo, l.bo.data != nullptr ? &l.bo : nullptr, a.out);
}

Status MoeModel::EmptyExpertParallelStep() {
  const Tensor none{nullptr, DType::kF32, 0, config_.hidden_size};
  expert_offsets_.assign(config_.num_experts + 1, 0);
  for (int64_t i = 0; i < config_.num_layers; ++i) {
    if (!w_.layers[i].is_moe) continue;
    SY_RETURN_IF_ERROR(ep_->RunLayer(i, none, expert_offsets_, none, {}));
  }
  return ep_->TakeError();
}

Status MoeModel::Moe(int64_t layer, const Activations& a, ExpertLoad* load) {
  const ModelConfig& c = config_;
  const LayerWeights& l = w_.layers[layer];
  const int64_t t = a.tokens;
  const int64_t k = c.num_experts_per_tok;
  const int64_t tk = t * k;
  const int64_t experts = c.num_experts;
  const Tensor router = a.router.Rows(0, t);
  backend_->MatMul(a.h, l.router, nullptr, router);
  backend_->RouteTopK(router, static_cast<int>(k), c.norm_topk_prob, a.topk_ids, a.topk_w);

  // Group (token, choice) pairs by expert with a counting sort; within an expert, by token.
  topk_ids_host_.resize(tk);
  backend_->CopyToHost(topk_ids_host_.data(), a.topk_ids.data, tk * sizeof(int32_t));
  expert_offsets_.assign(experts + 1, 0);
  for (int32_t e : topk_ids_host_) ++expert_offsets_[e + 1];
  for (int64_t e = 0; e < experts; ++e) expert_offsets_[e + 1] += expert_offsets_[e];
  sorted_host_.resize(2 * tk);
  cursor_.assign(expert_offsets_.begin(), expert_offsets_.end() - 1);
  for (int64_t j = 0; j < tk; ++j) {
    const int64_t pos = cursor_[topk_ids_host_[j]]++;
    sorted_host_[pos] = static_cast<int32_t>(j / k);   // token
    sorted_host_[tk + pos] = static_cast<int32_t>(j);  // (token, choice)
  }
  backend_->CopyToDevice(a.sorted.data, sorted_host_.data(), 2 * tk * sizeof(int32_t));
  if (load != nullptr) {
    // The cursors now sit at each expert's end; reuse them as the per-expert counts.
    for (int64_t e = 0; e < experts; ++e) cursor_[e] -= expert_offsets_[e];
    load->Record(layer, cursor_);
  }

  const Tensor sorted_tok = a.sorted.Rows(0, 1);
  const Tensor sorted_choice = a.sorted.Rows(1, 1);
  const Tensor xs = a.xs.Rows(0, tk);
  const Tensor ys = a.ys.Rows(0, tk);
  backend_->GatherRows(a.h, sorted_tok, xs);
  backend_->GatherRows(a.topk_w.Reshaped(tk, 1), sorted_choice, a.sorted_w);
  if (ep_ == nullptr) {
    backend_->ExpertFfn(xs, expert_offsets_, l.experts, a.scratch, ys);
    if (load != nullptr) load->RecordChoices(layer, topk_ids_host_, {});
  } else {
    dest_rank_.resize(tk);
    SY_RETURN_IF_ERROR(ep_->RunLayer(layer, xs, expert_offsets_, ys, dest_rank_));
    if (load != nullptr) {
      pair_rank_.resize(tk);
      for (int64_t pos = 0; pos < tk; ++pos) pair_rank_[sorted_host_[tk + pos]] = dest_rank_[pos];
      load->RecordChoices(layer, topk_ids_host_, pair_rank_);
    }
  }
  backend_->Zero(a.out);
  backend_->ScatterAddRows(a.ys, sorted_tok, a.sorted_w, a.out);
  if (c.shared_expert_intermediate_size > 0) {
    backend_->Ffn(a.h, l.shared_expert, a.scratch, a.shared_out);
    backend_->MatMul(a.h, l.shared_expert_gate, nullptr, a.shared_gate);
    backend_->Sigmoid(a.shared_gate);
    backend_->AddGatedRows(a.shared_out, a.shared_gate, a.out);
  }
  return Status::Ok();
}

}  // namespace sy
