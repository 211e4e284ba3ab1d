#include "engine/model/moe_model.h"

#include <spdlog/spdlog.h>

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
  // MLA (zero-width otherwise): H heads, L = kv_lora_rank, R = qk_rope_head_dim.
  Tensor q_a;          // [T, q_lora]
  Tensor q_nope;       // [T, H * nope]
  Tensor q_rope;       // [T, H * R]
  Tensor latent;       // [T, L]: the normed compressed KV this step writes to the cache
  Tensor k_rope;       // [T, R]
  Tensor q_latent;     // [T, H * L]: the query with W_UK absorbed
  Tensor attn_latent;  // [T, H * L]: attention-weighted latents
  Tensor attn_v;       // [T, H * v]
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

// The softmax scale: 1/sqrt(query/key head width), times DeepSeek's YaRN correction mscale^2
// when rope_scaling gives mscale_all_dim (as transformers' DeepseekV3 and DeepSeek's own V2 code
// do; transformers' DeepseekV2 port omits it).
float AttentionScale(const ModelConfig& c) {
  if (!IsMla(c)) return 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  const RopeScaling& r = c.rope_scaling;
  if (r.type != "default" && r.mscale_all_dim && *r.mscale_all_dim != 0 && r.factor > 1) {
    const double mscale = 0.1 * *r.mscale_all_dim * std::log(r.factor) + 1.0;
    scale *= mscale * mscale;
  }
  return static_cast<float>(scale);
}

RouterParams RouterParamsFor(const ModelConfig& c) {
  RouterParams p;
  p.k = static_cast<int>(c.num_experts_per_tok);
  p.scoring = c.router.sigmoid ? cpu::RouterScoring::kSigmoid : cpu::RouterScoring::kSoftmax;
  p.renormalize = c.norm_topk_prob;
  p.scaling = static_cast<float>(c.router.routed_scaling_factor);
  p.n_group = static_cast<int>(c.router.n_group);
  p.topk_group = static_cast<int>(c.router.topk_group);
  p.group_scoring =
      c.router.group_top2_sum ? cpu::GroupScoring::kTopTwoSum : cpu::GroupScoring::kMax;
  return p;
}

}  // namespace

MoeModel::MoeModel(Backend* backend, ModelConfig config, ModelWeights weights)
    : backend_(backend),
      config_(std::move(config)),
      w_(std::move(weights)),
      attention_scale_(AttentionScale(config_)),
      router_params_(RouterParamsFor(config_)) {}

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
  if (config.num_nextn_predict_layers > 0) {
    spdlog::info(
        "skipping {} multi-token-prediction layer(s) (model.layers.{}+): speculative "
        "decoding is not implemented",
        config.num_nextn_predict_layers, config.num_layers);
  }
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
  table_perm_host_.assign(layers.size() * e, nullptr);
  bool any_perm = false;
  for (size_t i = 0; i < layers.size(); ++i) {
    for (int64_t j = 0; j < e; ++j) {
      const FfnWeights& expert = layers[i]->experts[j];
      host[(2 * i) * e + j] = expert.gate_up.data;
      host[(2 * i + 1) * e + j] = expert.down.data;
      table_perm_host_[i * e + j] = expert.gate_up.input_perm;
      any_perm = any_perm || expert.gate_up.input_perm != nullptr;
      if (expert.down.input_perm != nullptr) {
        return Status::Internal("an expert's down_proj has an input permutation");
      }
    }
  }
  if (any_perm && !backend_->SupportsInputPermutation()) {
    return Status::Unimplemented(
        "act-order (GPTQ desc_act or actorder group) experts are not implemented on the " +
        std::string(backend_->name()) + " backend");
  }
  if (!any_perm) table_perm_host_.clear();
  SY_ASSIGN_OR_RETURN(table_buffer_, backend_->Allocate(host.size() * sizeof(void*)));
  backend_->CopyToDevice(table_buffer_.data(), host.data(), host.size() * sizeof(void*));
  auto* base = static_cast<void**>(table_buffer_.data());
  for (size_t i = 0; i < layers.size(); ++i) {
    ExpertTable& t = tables_[layers[i] - w_.layers.data()];
    t.gate_up_ptrs = Tensor{base + (2 * i) * e, DType::kI64, 1, e};
    t.down_ptrs = Tensor{base + (2 * i + 1) * e, DType::kI64, 1, e};
    t.gate_up_host = std::span<void* const>(host.data() + (2 * i) * e, e);
    t.down_host = std::span<void* const>(host.data() + (2 * i + 1) * e, e);
    if (!table_perm_host_.empty()) {
      t.gate_up_perm_host = std::span<const int32_t* const>(table_perm_host_.data() + i * e, e);
    }
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
  const bool mla = IsMla(c);
  const int64_t q_dim = mla ? 0 : c.num_heads * c.head_dim;
  const int64_t kv_dim = mla ? 0 : c.num_kv_heads * c.head_dim;
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
  const MlaConfig& m = c.mla;
  const int64_t heads = IsMla(c) ? c.num_heads : 0;
  a.q_a = cv.Take(DType::kF32, t, m.q_lora_rank);
  a.q_nope = cv.Take(DType::kF32, t, heads * m.qk_nope_head_dim);
  a.q_rope = cv.Take(DType::kF32, t, heads * m.qk_rope_head_dim);
  a.latent = cv.Take(DType::kF32, t, m.kv_lora_rank);
  a.k_rope = cv.Take(DType::kF32, t, m.qk_rope_head_dim);
  a.q_latent = cv.Take(DType::kF32, t, heads * m.kv_lora_rank);
  a.attn_latent = cv.Take(DType::kF32, t, heads * m.kv_lora_rank);
  a.attn_v = cv.Take(DType::kF32, t, heads * m.v_head_dim);
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
    if (IsMla(c)) {
      MlaAttention(i, in, kv, a);
    } else {
      Attention(i, in, kv, a);
    }
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
                           attention_scale_, a.attn);
  backend_->MatMul(a.attn, l.wo, l.bo.data != nullptr ? &l.bo : nullptr, a.out);
}

// Absorbed multi-head latent attention: the cache holds one normed latent + roped key per token;
// W_UK folds into the query and W_UV applies after attention, so keys and values are never
// expanded per head (prefill and decode alike).
void MoeModel::MlaAttention(int64_t layer, const ForwardInputs& in, const KvCache& kv,
                            const Activations& a) {
  const ModelConfig& c = config_;
  const MlaConfig& m = c.mla;
  const LayerWeights& l = w_.layers[layer];
  const float eps = static_cast<float>(c.rms_norm_eps);
  Tensor q_in = a.h;
  if (l.wq_a.data != nullptr) {
    backend_->MatMul(a.h, l.wq_a, nullptr, a.q_a);
    backend_->RmsNorm(a.q_a, l.q_a_norm, eps, a.q_a);
    q_in = a.q_a;
  }
  backend_->MatMul(q_in, l.wq_nope, nullptr, a.q_nope);
  backend_->MatMul(q_in, l.wq_rope, nullptr, a.q_rope);
  backend_->MatMul(a.h, l.wkv_latent, nullptr, a.latent);
  backend_->RmsNorm(a.latent, l.kv_a_norm, eps, a.latent);
  backend_->MatMul(a.h, l.wkv_rope, nullptr, a.k_rope);
  const int64_t rope = m.qk_rope_head_dim;
  backend_->Rope(a.q_rope, rope, rope, in.positions, w_.inv_freq, w_.rope_attention_scale,
                 m.rope_interleave);
  backend_->Rope(a.k_rope, rope, rope, in.positions, w_.inv_freq, w_.rope_attention_scale,
                 m.rope_interleave);
  backend_->LatentKvWrite(a.latent, a.k_rope, in.attn, kv.k(layer));
  const int heads = static_cast<int>(c.num_heads);
  backend_->HeadMatMul(a.q_nope, l.w_uk_t, a.q_latent, heads);
  backend_->LatentAttention(a.q_latent, a.q_rope, in.attn, kv.k(layer), heads,
                            static_cast<int>(m.kv_lora_rank), static_cast<int>(rope),
                            attention_scale_, a.attn_latent);
  backend_->HeadMatMul(a.attn_latent, l.w_uv, a.attn_v, heads);
  backend_->MatMul(a.attn_v, l.wo, nullptr, a.out);
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
  backend_->Route(router, router_params_, l.router_bias.data != nullptr ? &l.router_bias : nullptr,
                  ids, a.topk_w);
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
    if (c.shared_expert_gated) {
      backend_->MatMul(a.h, l.shared_expert_gate, nullptr, a.shared_gate);
      backend_->Sigmoid(a.shared_gate);
      backend_->AddGatedRows(a.shared_out, a.shared_gate, a.out);
    } else {
      backend_->Add(a.shared_out, a.out);
    }
  }
  return Status::Ok();
}

}  // namespace sy
