#include "engine/model/model_source.h"

#include "engine/model/checkpoint.h"
#include "engine/model/model_weights.h"
#include "engine/model/presets.h"
#include "engine/tokenizer/bpe_synthesizer.h"

namespace sy {

Status ModelSource::Validate() const {
  if (model.empty()) return Status::InvalidArgument("no model given");
  if (is_preset() && !random_weights) {
    return Status::InvalidArgument("--model " + model +
                                   " has no weights: add --random-weights, or make a checkpoint "
                                   "with `switchyard make-model --preset " +
                                   preset_name() + "`");
  }
  return Status::Ok();
}

StatusOr<ModelConfig> LoadSourceConfig(const ModelSource& source) {
  SY_RETURN_IF_ERROR(source.Validate());
  if (!source.is_preset()) return LoadModelConfig(source.model);
  SY_ASSIGN_OR_RETURN(std::string text, PresetConfigText(source.preset_name()));
  return ParseModelConfig(text);
}

StatusOr<DType> ConfigWeightDType(const ModelConfig& config) {
  const std::string& t = config.torch_dtype;
  if (t.empty() || t == "bfloat16") return DType::kBF16;
  if (t == "float16") return DType::kF16;
  if (t == "float32") return DType::kF32;
  return Status::Unimplemented("torch_dtype " + t + " (expected bfloat16, float16 or float32)");
}

StatusOr<std::unique_ptr<MoeModel>> LoadSourceModel(const ModelSource& source, Backend* backend,
                                                    bool load_routed_experts) {
  SY_RETURN_IF_ERROR(source.Validate());
  if (!source.random_weights) {
    return MoeModel::Load(source.model, backend, load_routed_experts, source.quantization);
  }
  if (!load_routed_experts) {
    return Status::Unimplemented("expert parallelism needs a checkpoint, not random weights");
  }
  SY_ASSIGN_OR_RETURN(ModelConfig config, LoadSourceConfig(source));
  SY_ASSIGN_OR_RETURN(DType dtype, ConfigWeightDType(config));
  SY_ASSIGN_OR_RETURN(ModelWeights weights,
                      RandomModelWeights(config, backend, source.seed, dtype, source.quantization));
  return MoeModel::Create(backend, std::move(config), std::move(weights));
}

StatusOr<std::unique_ptr<Tokenizer>> LoadSourceTokenizer(const ModelSource& source) {
  SY_RETURN_IF_ERROR(source.Validate());
  if (!source.is_preset()) return Tokenizer::Load(source.model);
  SY_ASSIGN_OR_RETURN(ModelConfig config, LoadSourceConfig(source));
  if (config.vocab_size < kMinSynthesizedVocabSize) {
    return Status::InvalidArgument("preset vocabulary is too small for a synthesized tokenizer");
  }
  const nlohmann::json tok =
      SynthesizeByteLevelBpe(static_cast<int32_t>(config.vocab_size), source.seed);
  const nlohmann::json cfg = SynthesizeTokenizerConfig(tok);
  return Tokenizer::FromTokenizerJson(tok.dump(), cfg.dump());
}

}  // namespace sy
