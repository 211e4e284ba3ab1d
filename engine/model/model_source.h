// ModelSource: what `--model` names. A Hugging Face model directory (config.json, safetensors,
// tokenizer), or "preset:NAME": a config from configs/presets with no files at all, whose
// weights are random (made on the device) and whose tokenizer is synthesized. With
// random_weights a directory's config and tokenizer are used, but not its weights.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "engine/backend/backend.h"
#include "engine/model/config.h"
#include "engine/model/model_weights.h"
#include "engine/model/moe_model.h"
#include "engine/tokenizer/tokenizer.h"

namespace sy {

struct ModelSource {
  std::string model;  // a directory or "preset:NAME"
  bool random_weights = false;
  uint64_t seed = 0;                                // of the random weights
  Quantization quantization = Quantization::kNone;  // applied at load, to either kind of weights

  bool is_preset() const { return model.rfind("preset:", 0) == 0; }
  std::string preset_name() const { return is_preset() ? model.substr(7) : ""; }
  // InvalidArgument for a preset without random_weights.
  Status Validate() const;
};

StatusOr<ModelConfig> LoadSourceConfig(const ModelSource& source);

// The model in `backend` memory: read from the checkpoint, or random in the config's dtype.
// Expert parallelism (load_routed_experts false) needs a checkpoint.
StatusOr<std::unique_ptr<MoeModel>> LoadSourceModel(const ModelSource& source, Backend* backend,
                                                    bool load_routed_experts = true);

StatusOr<std::unique_ptr<Tokenizer>> LoadSourceTokenizer(const ModelSource& source);

// The weight dtype a config's torch_dtype names (bf16 when it names none).
StatusOr<DType> ConfigWeightDType(const ModelConfig& config);

}  // namespace sy
