#include "engine/model/make_model.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "engine/model/config.h"
#include "engine/model/presets.h"
#include "engine/model/safetensors_writer.h"
#include "engine/model/weight_names.h"
#include "engine/tokenizer/bpe_synthesizer.h"

namespace sy {
namespace {

using nlohmann::json;

const std::map<std::string, std::string>& ArchClasses() {
  static const std::map<std::string, std::string> m = {{"mixtral", "MixtralForCausalLM"},
                                                       {"qwen2_moe", "Qwen2MoeForCausalLM"},
                                                       {"qwen3_moe", "Qwen3MoeForCausalLM"},
                                                       {"olmoe", "OlmoeForCausalLM"}};
  return m;
}

std::string DefaultPreset(const std::string& arch) {
  std::string name = "tiny-" + arch;
  for (char& ch : name) {
    if (ch == '_') ch = '-';
  }
  return name;
}

// splitmix64: a fast, well-mixed generator; one stream per tensor, keyed by seed and name.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1].
  double Uniform() { return (static_cast<double>(Next() >> 11) + 1.0) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

uint64_t HashName(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// How a weight is initialised: N(mean, std) per element.
struct Init {
  float mean;
  float std;
};

// RMSNorm weights start at one, as in transformers; everything else is N(0, 0.02).
Init InitFor(const std::string& name) {
  if (name.find("norm") != std::string::npos) return {1.0f, 0.0f};
  return {0.0f, 0.02f};
}

// 256 byte tokens and the three special tokens of the synthesized tokenizer.
constexpr int64_t kMinVocab = 259;

Status WriteText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return Status::Internal("cannot write " + path.string());
  return Status::Ok();
}

}  // namespace

StatusOr<std::string> MakeModelConfigText(const MakeModelOptions& o) {
  if (!o.arch.empty() && ArchClasses().count(o.arch) == 0) {
    return Status::InvalidArgument("unknown --arch '" + o.arch +
                                   "' (use mixtral, qwen2_moe, qwen3_moe or olmoe)");
  }
  if (o.arch.empty() && o.preset.empty()) {
    return Status::InvalidArgument("give --arch, --preset or both");
  }
  const std::string preset = o.preset.empty() ? DefaultPreset(o.arch) : o.preset;
  SY_ASSIGN_OR_RETURN(std::string text, PresetConfigText(preset));
  json cfg = json::parse(text);
  if (!o.arch.empty() && cfg["architectures"][0] != ArchClasses().at(o.arch)) {
    return Status::InvalidArgument("preset '" + preset + "' is a " +
                                   cfg["architectures"][0].get<std::string>() + ", not " +
                                   ArchClasses().at(o.arch));
  }
  for (const std::string& kv : o.overrides) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument("--set expects key=value, got '" + kv + "'");
    }
    const std::string key = kv.substr(0, eq);
    const std::string value = kv.substr(eq + 1);
    json parsed = json::parse(value, nullptr, /*allow_exceptions=*/false);
    cfg[key] = parsed.is_discarded() ? json(value) : parsed;
  }
  cfg["torch_dtype"] = o.dtype == DType::kF32   ? "float32"
                       : o.dtype == DType::kF16 ? "float16"
                                                : "bfloat16";
  const int64_t vocab = cfg.value("vocab_size", int64_t{0});
  if (vocab < kMinVocab) {
    return Status::InvalidArgument("vocab_size must be at least " + std::to_string(kMinVocab) +
                                   " for the generated tokenizer");
  }
  // The synthesized tokenizer ends with <|endoftext|>, <|im_start|>, <|im_end|>.
  cfg["eos_token_id"] = vocab - 3;
  cfg["bos_token_id"] = nullptr;
  text = cfg.dump(2);
  SY_RETURN_IF_ERROR(ParseModelConfig(text).status());
  return text;
}

Status MakeModel(const MakeModelOptions& o,
                 const std::function<void(const std::string&)>& progress) {
  if (o.dtype != DType::kF32 && o.dtype != DType::kBF16 && o.dtype != DType::kF16) {
    return Status::InvalidArgument("--dtype must be f32, bf16 or f16");
  }
  if (o.out_dir.empty()) return Status::InvalidArgument("--out is required");
  SY_ASSIGN_OR_RETURN(std::string config_text, MakeModelConfigText(o));
  SY_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(config_text));
  const std::filesystem::path dir(o.out_dir);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::InvalidArgument("cannot create " + o.out_dir + ": " + ec.message());

  SY_RETURN_IF_ERROR(WriteText(dir / "config.json", config_text + "\n"));
  json gen = {{"eos_token_id", config.vocab_size - 3}, {"do_sample", false}};
  SY_RETURN_IF_ERROR(WriteText(dir / "generation_config.json", gen.dump(2) + "\n"));
  const json tokenizer = SynthesizeByteLevelBpe(static_cast<int32_t>(config.vocab_size), o.seed);
  SY_RETURN_IF_ERROR(WriteText(dir / "tokenizer.json", tokenizer.dump() + "\n"));
  SY_RETURN_IF_ERROR(WriteText(dir / "tokenizer_config.json",
                               SynthesizeTokenizerConfig(tokenizer).dump(2) + "\n"));

  const std::vector<WeightSpec> specs = ListWeights(config);
  ShardedSafetensorsWriter writer(o.out_dir, o.max_shard_bytes);
  for (const WeightSpec& s : specs) SY_RETURN_IF_ERROR(writer.Declare(s.name, o.dtype, s.shape));
  const size_t elem = dtype_size(o.dtype);
  for (const WeightSpec& s : specs) {
    Rng rng(HashName(o.seed, s.name));
    const Init init = InitFor(s.name);
    SY_RETURN_IF_ERROR(writer.Write(s.name, [&](uint64_t, std::span<std::byte> chunk) {
      const size_t n = chunk.size() / elem;
      for (size_t i = 0; i < n; ++i) {
        // Box-Muller; one normal per draw keeps the stream simple.
        const double r = std::sqrt(-2.0 * std::log(rng.Uniform()));
        const double z = r * std::cos(2.0 * 3.14159265358979323846 * rng.Uniform());
        const float v = init.mean + init.std * static_cast<float>(z);
        std::byte* dst = chunk.data() + i * elem;
        if (o.dtype == DType::kF32) {
          std::memcpy(dst, &v, 4);
        } else {
          const uint16_t h = o.dtype == DType::kBF16 ? f32_to_bf16(v) : f32_to_f16(v);
          std::memcpy(dst, &h, 2);
        }
      }
    }));
    if (progress && s.name.ends_with("post_attention_layernorm.weight")) {
      progress("wrote " + s.name.substr(0, s.name.rfind(".post_attention")));
    }
  }
  return writer.Finish();
}

}  // namespace sy
