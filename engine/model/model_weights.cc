#include "engine/model/model_weights.h"

#include <string>
#include <vector>

#include "engine/model/rope.h"
#include "engine/model/weight_names.h"

namespace sy {
namespace {

// Copies checkpoint tensors into backend memory, keeping every buffer it allocates.
class WeightUploader {
 public:
  WeightUploader(const Checkpoint& ckpt, Backend* backend, ModelWeights* out)
      : ckpt_(ckpt), backend_(backend), out_(out) {}

  // A matrix [rows, cols] in its stored dtype.
  StatusOr<Tensor> Matrix(const std::string& name, int64_t rows, int64_t cols) {
    const int64_t shape[] = {rows, cols};
    SY_ASSIGN_OR_RETURN(TensorView v, ckpt_.Get(name, shape));
    SY_RETURN_IF_ERROR(CheckFloat(v));
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(v.dtype, rows, cols));
    backend_->CopyToDevice(t.data, v.data, t.nbytes());
    return t;
  }

  // Two matrices with the same columns stacked as [rows_a + rows_b, cols].
  StatusOr<Tensor> Stacked(const std::string& a, const std::string& b, int64_t rows, int64_t cols) {
    const int64_t shape[] = {rows, cols};
    SY_ASSIGN_OR_RETURN(TensorView va, ckpt_.Get(a, shape));
    SY_ASSIGN_OR_RETURN(TensorView vb, ckpt_.Get(b, shape));
    SY_RETURN_IF_ERROR(CheckFloat(va));
    if (va.dtype != vb.dtype) {
      return Status::Unimplemented("tensors " + a + " and " + b + " have different dtypes");
    }
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(va.dtype, 2 * rows, cols));
    backend_->CopyToDevice(t.data, va.data, va.nbytes);
    backend_->CopyToDevice(t.Rows(rows, rows).data, vb.data, vb.nbytes);
    return t;
  }

  // A vector of `n` values (any float dtype) converted to f32.
  StatusOr<Tensor> VectorF32(const std::string& name, int64_t n) {
    const int64_t shape[] = {n};
    SY_ASSIGN_OR_RETURN(TensorView v, ckpt_.Get(name, shape));
    SY_RETURN_IF_ERROR(CheckFloat(v));
    std::vector<float> host(n);
    for (int64_t i = 0; i < n; ++i) host[i] = load_as_f32(v.data, v.dtype, i);
    return FromHost(host);
  }

  StatusOr<Tensor> FromHost(const std::vector<float>& host) {
    SY_ASSIGN_OR_RETURN(Tensor t, NewTensor(DType::kF32, 1, static_cast<int64_t>(host.size())));
    backend_->CopyToDevice(t.data, host.data(), t.nbytes());
    return t;
  }

  StatusOr<FfnWeights> Ffn(const FfnNames& names, int64_t inter, int64_t hidden) {
    FfnWeights f;
    SY_ASSIGN_OR_RETURN(f.gate_up, Stacked(names.gate, names.up, inter, hidden));
    SY_ASSIGN_OR_RETURN(f.down, Matrix(names.down, hidden, inter));
    return f;
  }

 private:
  static Status CheckFloat(const TensorView& v) {
    if (v.dtype == DType::kF32 || v.dtype == DType::kBF16 || v.dtype == DType::kF16) {
      return Status::Ok();
    }
    return Status::Unimplemented("tensor " + v.name + " has dtype " +
                                 std::string(dtype_name(v.dtype)) + "; expected f32, bf16 or f16");
  }

  StatusOr<Tensor> NewTensor(DType dtype, int64_t rows, int64_t cols) {
    Tensor t{nullptr, dtype, rows, cols};
    SY_ASSIGN_OR_RETURN(DeviceBuffer buf, backend_->Allocate(t.nbytes()));
    t.data = buf.data();
    out_->total_bytes += t.nbytes();
    out_->buffers.push_back(std::move(buf));
    return t;
  }

  const Checkpoint& ckpt_;
  Backend* backend_;
  ModelWeights* out_;
};

Status LoadLayer(const ModelConfig& c, const LayerWeightNames& n, bool load_routed_experts,
                 WeightUploader& up, LayerWeights& l) {
  const int64_t h = c.hidden_size;
  const int64_t q_dim = c.num_heads * c.head_dim;
  const int64_t kv_dim = c.num_kv_heads * c.head_dim;
  SY_ASSIGN_OR_RETURN(l.input_norm, up.VectorF32(n.input_norm, h));
  SY_ASSIGN_OR_RETURN(l.post_attn_norm, up.VectorF32(n.post_attn_norm, h));
  SY_ASSIGN_OR_RETURN(l.wq, up.Matrix(n.q, q_dim, h));
  SY_ASSIGN_OR_RETURN(l.wk, up.Matrix(n.k, kv_dim, h));
  SY_ASSIGN_OR_RETURN(l.wv, up.Matrix(n.v, kv_dim, h));
  SY_ASSIGN_OR_RETURN(l.wo, up.Matrix(n.o, h, q_dim));
  if (!n.q_bias.empty()) {
    SY_ASSIGN_OR_RETURN(l.bq, up.VectorF32(n.q_bias, q_dim));
    SY_ASSIGN_OR_RETURN(l.bk, up.VectorF32(n.k_bias, kv_dim));
    SY_ASSIGN_OR_RETURN(l.bv, up.VectorF32(n.v_bias, kv_dim));
  }
  if (!n.o_bias.empty()) {
    SY_ASSIGN_OR_RETURN(l.bo, up.VectorF32(n.o_bias, h));
  }
  if (!n.q_norm.empty()) {
    const bool full = c.qk_norm == QkNorm::kFull;
    SY_ASSIGN_OR_RETURN(l.q_norm, up.VectorF32(n.q_norm, full ? q_dim : c.head_dim));
    SY_ASSIGN_OR_RETURN(l.k_norm, up.VectorF32(n.k_norm, full ? kv_dim : c.head_dim));
  }
  l.is_moe = !n.router.empty();
  if (!l.is_moe) {
    SY_ASSIGN_OR_RETURN(l.dense, up.Ffn(n.dense, c.dense_intermediate_size, h));
    return Status::Ok();
  }
  SY_ASSIGN_OR_RETURN(l.router, up.Matrix(n.router, c.num_experts, h));
  l.experts.resize(n.experts.size());
  for (size_t e = 0; load_routed_experts && e < n.experts.size(); ++e) {
    SY_ASSIGN_OR_RETURN(l.experts[e], up.Ffn(n.experts[e], c.moe_intermediate_size, h));
  }
  if (!n.shared_expert.gate.empty()) {
    SY_ASSIGN_OR_RETURN(l.shared_expert,
                        up.Ffn(n.shared_expert, c.shared_expert_intermediate_size, h));
    SY_ASSIGN_OR_RETURN(l.shared_expert_gate, up.Matrix(n.shared_expert_gate, 1, h));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<ModelWeights> LoadModelWeights(const ModelConfig& c, const Checkpoint& ckpt,
                                        Backend* backend, bool load_routed_experts) {
  if (c.clip_qkv) {
    return Status::Unimplemented("clip_qkv is not supported yet");
  }
  const ModelWeightNames names = WeightNamesFor(c);
  ModelWeights w;
  WeightUploader up(ckpt, backend, &w);
  SY_ASSIGN_OR_RETURN(w.embed, up.Matrix(names.embed, c.vocab_size, c.hidden_size));
  if (names.lm_head.empty()) {
    w.lm_head = w.embed;
  } else {
    SY_ASSIGN_OR_RETURN(w.lm_head, up.Matrix(names.lm_head, c.vocab_size, c.hidden_size));
  }
  SY_ASSIGN_OR_RETURN(w.final_norm, up.VectorF32(names.final_norm, c.hidden_size));
  SY_ASSIGN_OR_RETURN(RopeTables rope, ComputeRopeTables(c));
  SY_ASSIGN_OR_RETURN(w.inv_freq, up.FromHost(rope.inv_freq));
  w.rotary_dim = rope.rotary_dim;
  w.rope_attention_scale = rope.attention_scale;
  w.layers.resize(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    SY_RETURN_IF_ERROR(LoadLayer(c, names.layers[i], load_routed_experts, up, w.layers[i]));
  }
  return w;
}

StatusOr<FfnWeights> LoadExpertWeights(const ModelConfig& c, const Checkpoint& ckpt,
                                       Backend* backend, const FfnNames& names,
                                       std::vector<DeviceBuffer>* buffers) {
  ModelWeights owner;
  WeightUploader up(ckpt, backend, &owner);
  SY_ASSIGN_OR_RETURN(FfnWeights f, up.Ffn(names, c.moe_intermediate_size, c.hidden_size));
  for (DeviceBuffer& b : owner.buffers) buffers->push_back(std::move(b));
  return f;
}

}  // namespace sy
