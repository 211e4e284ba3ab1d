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
// it), the router and the shared-expert gate keep their dtype. kFp8: the same matrices as FP8
// e4m3fn with one f32 scale per 128 columns of each row (DType::kF8, scale = max|w| / 448).
// Matrices a checkpoint already stores quantized (config.json quantization_config) load as
// published whatever this says; it applies to the others.
enum class Quantization { kNone, kInt8, kFp8 };

// "none", "int8" or "fp8"; InvalidArgument for anything else.
StatusOr<Quantization> ParseQuantization(std::string_view name);
std::string_view QuantizationName(Quantization q);

struct LayerWeights {
  Tensor input_norm;      // [1, hidden]
  Tensor post_attn_norm;  // [1, hidden]
  Tensor wq, wk, wv, wo;  // [out, in]
  Tensor bq, bk, bv, bo;  // [1, out]; data == nullptr when the model has no such bias
  Tensor q_norm, k_norm;  // [1, head_dim] (per head) or [1, q/k width] (full); empty if none
  bool is_moe = false;
  Tensor router;                    // [experts, hidden]
  std::vector<FfnWeights> experts;  // one per expert
  FfnWeights shared_expert;         // empty unless shared_expert_intermediate_size > 0
  Tensor shared_expert_gate;        // [1, hidden]
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
// ones (at load, or in the checkpoint per config.quantization_config) as int8 or fp8 rows with
// their scales: what a backend must hold before anything else.
size_t WeightBytes(const ModelConfig& config, DType dtype,
                   Quantization quantization = Quantization::kNone);

// One routed expert's weights (names from WeightNamesFor), in buffers appended to `buffers`.
StatusOr<FfnWeights> LoadExpertWeights(const ModelConfig& config, const Checkpoint& checkpoint,
                                       Backend* backend, const FfnNames& names,
                                       std::vector<DeviceBuffer>* buffers);

}  // namespace sy
