// ModelWeights: every weight of an MoE decoder in backend memory, and the loader that reads
// them from a Hugging Face checkpoint by each architecture's tensor names. Matrices keep the
// checkpoint's dtype (f32, bf16, f16) unless quantized at load; norm weights and biases are
// converted to f32.
#pragma once

#include <string_view>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/model/checkpoint.h"
#include "engine/model/config.h"
#include "engine/model/weight_names.h"

namespace sy {

// How the matrices that matmuls read are stored after loading. kInt8: weight-only int8,
// symmetric per output channel (DType::kI8: one f32 scale per row), quantized from the
// checkpoint's (or the random weights') values at load: the attention projections, every
// expert and dense FFN matrix, and an untied LM head. The embedding table (a tied LM head with
// it), the router and the shared-expert gate keep their dtype.
// kInt4: the same matrices as weight-only int4 (W4A16), asymmetric in groups of 128 input
// columns (DType::kI4G128: an f16 scale and min per group). kFp8: the same matrices as FP8
// e4m3fn with one f32 scale per 128 columns of each row (DType::kF8, scale = max|w| / 448).
// Matrices a checkpoint already stores quantized (config.json quantization_config: FP8, GPTQ,
// AWQ, compressed-tensors) load as published whatever this says; it applies to the others.
enum class Quantization { kNone, kInt8, kInt4, kFp8 };

// "none", "int8", "int4" or "fp8"; InvalidArgument for anything else.
StatusOr<Quantization> ParseQuantization(std::string_view name);
std::string_view QuantizationName(Quantization q);

// The dtype quantized matrices get: kI8 for kInt8, kI4G128 for kInt4 (kF32 for kNone, which
// quantizes nothing).
DType QuantizedWeightDType(Quantization q);

struct LayerWeights {
  Tensor input_norm;      // [1, hidden]
  Tensor post_attn_norm;  // [1, hidden]
  Tensor wq, wk, wv, wo;  // [out, in]
  Tensor bq, bk, bv, bo;  // [1, out]; data == nullptr when the model has no such bias
  Tensor q_norm, k_norm;  // [1, head_dim] (per head) or [1, q/k width] (full); empty if none
  // MLA (DeepSeek), rearranged at load for the absorbed form (H heads, L = kv_lora_rank, R =
  // qk_rope_head_dim); wq/wk/wv are then empty and wo is [hidden, H * v_head_dim].
  Tensor wq_a, q_a_norm;        // query LoRA [q_lora, hidden] and its norm; empty without one
  Tensor wq_nope, wq_rope;      // the nope and rope rows of q_b_proj (or q_proj), per head
  Tensor wkv_latent, wkv_rope;  // kv_a_proj_with_mqa rows [0, L) and [L, L + R)
  Tensor kv_a_norm;             // [1, L]
  Tensor w_uk_t;                // [H * L, nope]: each head's key up-projection, transposed
  Tensor w_uv;                  // [H * v, L]: each head's value up-projection
  bool is_moe = false;
  Tensor router;                    // [experts, hidden]
  Tensor router_bias;               // [1, experts] e_score_correction_bias; empty if none
  std::vector<FfnWeights> experts;  // one per expert
  FfnWeights shared_expert;         // empty unless shared_expert_intermediate_size > 0
  Tensor shared_expert_gate;        // [1, hidden]; empty unless the shared expert is gated
  FfnWeights dense;                 // the MLP of a non-MoE layer
};

struct ModelWeights {
  Tensor embed;    // [vocab, hidden]
  Tensor lm_head;  // [vocab, hidden]; the same memory as embed when tied
  Tensor final_norm;
  Tensor inv_freq;  // [1, rotary_dim / 2]
  int64_t rotary_dim = 0;
  float rope_attention_scale = 1.0f;
  std::vector<LayerWeights> layers;
  std::vector<DeviceBuffer> buffers;  // owns all of the above
  size_t total_bytes = 0;
};

// With load_routed_experts false, each MoE layer's `experts` holds empty FfnWeights: an
// expert-parallel rank loads the experts it hosts itself (LoadExpertWeights).
// Quantization other than kNone needs a backend whose SupportsWeightDType says yes
// (Unimplemented otherwise).
StatusOr<ModelWeights> LoadModelWeights(const ModelConfig& config, const Checkpoint& checkpoint,
                                        Backend* backend, bool load_routed_experts = true,
                                        Quantization quantization = Quantization::kNone);

// Every weight of `config`'s architecture, random (uniform, std 0.02; norms 1) in `dtype`, made
// directly in backend memory by Backend::FillRandom: real shapes for benchmarks without files.
// Deterministic from `seed`, and the same on every backend. With quantization, the matrices are
// those same values (rounded to `dtype`) quantized as LoadModelWeights quantizes a checkpoint.
StatusOr<ModelWeights> RandomModelWeights(const ModelConfig& config, Backend* backend,
                                          uint64_t seed, DType dtype,
                                          Quantization quantization = Quantization::kNone);

// Bytes the weights of `config` take with matrices in `dtype` (vectors in f32), the quantized
// ones (at load, or in the checkpoint per config.quantization_config) as int8, int4 or fp8 rows
// with their scales: what a backend must hold before anything else.
size_t WeightBytes(const ModelConfig& config, DType dtype,
                   Quantization quantization = Quantization::kNone);

// One routed expert's weights (names from WeightNamesFor), in buffers appended to `buffers`.
StatusOr<FfnWeights> LoadExpertWeights(const ModelConfig& config, const Checkpoint& checkpoint,
                                       Backend* backend, const FfnNames& names,
                                       std::vector<DeviceBuffer>* buffers);

}  // namespace sy
