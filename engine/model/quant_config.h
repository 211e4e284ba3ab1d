// QuantizationConfig: the `quantization_config` of a Hugging Face config.json, saying how a
// published checkpoint's weights are stored. One parser per quant_method; the loader
// (model_weights.cc) reads the tensors it names.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "engine/core/status.h"

namespace sy {

// The stored format of the quantized matrices. kFp8: e4m3fn weights with f32 (or bf16) scales,
// value = e4m3fn(q) * scale (quant_method "fp8", or "compressed-tensors" with 8-bit float
// weights). kInt4: 4-bit integer weights (quant_method "gptq", "awq", or "compressed-tensors"
// with format "pack-quantized"), read in full by engine/model/int4_checkpoint.h. New formats
// append here.
enum class QuantMethod { kNone, kFp8, kInt4 };

// Which weights share one scale.
enum class ScaleGranularity {
  kTensor,   // one scale for the matrix (scale tensor [] or [1])
  kChannel,  // one per output row ([rows] or [rows, 1])
  kBlock,    // one per block_rows x block_cols block ([ceil(rows/br), ceil(cols/bc)])
};

struct QuantizationConfig {
  QuantMethod method = QuantMethod::kNone;
  std::string quant_method;  // as config.json spells it: "fp8", "compressed-tensors"
  ScaleGranularity granularity = ScaleGranularity::kTensor;
  int64_t block_rows = 0;  // kBlock only
  int64_t block_cols = 0;
  // The tensor beside "<module>.weight" that holds its scales: "weight_scale_inv" (fp8 with
  // weight_block_size) or "weight_scale" (fp8 per tensor, compressed-tensors).
  std::string scale_name;
  // Modules the checkpoint leaves unquantized: quant_method fp8's modules_to_not_convert
  // (matching as a substring of the module name, as transformers does) or compressed-tensors'
  // ignore (an exact module name, or "re:<regex>" matched from the start of the name).
  std::vector<std::string> not_converted;
  bool not_converted_as_substring = true;
  std::string int4_json;  // kInt4: the quantization_config object as given

  // Whether the checkpoint stores the weight of `module` ("model.layers.0.self_attn.q_proj")
  // quantized: the method is not kNone and no entry of not_converted matches it.
  bool Quantizes(std::string_view module) const;

  friend bool operator==(const QuantizationConfig&, const QuantizationConfig&) = default;
};

// Parses the quantization_config object. Unimplemented, naming the field, for anything the
// loader cannot honour: another quant_method, fmt other than e4m3, static activation scales
// (activation_scheme "static", input_activations.dynamic false), integer or non-8-bit weights.
StatusOr<QuantizationConfig> ParseQuantizationConfig(const nlohmann::json& quantization_config);

// The config.json form of `q` (fp8 or compressed-tensors as parsed); null for kNone.
nlohmann::json QuantizationConfigToJson(const QuantizationConfig& q);

}  // namespace sy
