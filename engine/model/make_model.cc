#include "engine/model/make_model.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "engine/model/config.h"
#include "engine/model/fp8_blocks.h"
#include "engine/model/int4_checkpoint.h"
#include "engine/model/presets.h"
#include "engine/model/safetensors_writer.h"
#include "engine/model/weight_names.h"
#include "engine/tokenizer/bpe_synthesizer.h"

namespace sy {
namespace {

using nlohmann::json;

const std::map<std::string, std::string>& ArchClasses() {
  static const std::map<std::string, std::string> m = {
      {"mixtral", "MixtralForCausalLM"},        {"qwen2_moe", "Qwen2MoeForCausalLM"},
      {"qwen3_moe", "Qwen3MoeForCausalLM"},     {"olmoe", "OlmoeForCausalLM"},
      {"deepseek_v2", "DeepseekV2ForCausalLM"}, {"deepseek_v3", "DeepseekV3ForCausalLM"},
      {"glm4_moe", "Glm4MoeForCausalLM"}};
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

// Router skew (MakeModelOptions::router_skew). A plain random router routes about uniformly,
// because hidden states have no consistent direction. So hidden dimension 0 becomes a private
// popularity channel: every embedding row gets +a there, each router's column 0 becomes
// beta * log(p_e), and every other weight that reads the residual stream (column 0) or writes
// into it (row 0) gets 0 there. Each MoE layer's normalised input x then carries about the same
// x_0 for every token, adding the per-expert logit bias beta * log(p_e) * x_0, while the other
// dimensions give each token's logits random noise; the top-k of (bias + noise) picks experts
// roughly in proportion to p (the Gumbel-top-k argument, with Gaussian noise standing in for
// Gumbel). Two choices make it hold at every depth (measured in docs/routing-stats.md):
// - The channel is private. Were it read by attention or the experts, their outputs would share
//   a component across tokens that acts as a fixed random expert bias at the next layer.
// - a is 10x the norm of an embedding row's random part, so the channel dominates each RMS
//   norm: the sublayers see inputs shrunk tenfold and the residual stream's other dimensions
//   barely grow with depth, which keeps bias / noise the same at every layer (with a 1x channel
//   the skew faded after two or three layers as the residual grew). The model's outputs become
//   flatter; its text is gibberish either way.
class RouterSkew {
 public:
  RouterSkew(const ModelConfig& c, double skew, uint64_t seed) : hidden_(c.hidden_size) {
    const ModelWeightNames names = WeightNamesFor(c);
    rules_[names.embed] = {Rule::kShiftColumn0, {}};
    shift_ = static_cast<float>(kChannelScale * kStd * std::sqrt(static_cast<double>(hidden_)));
    if (!names.lm_head.empty()) rules_[names.lm_head] = {Rule::kZeroColumn0, {}};
    for (int64_t layer = 0; layer < c.num_layers; ++layer) {
      const LayerWeightNames& l = names.layers[layer];
      for (const std::string* reader : {&l.q, &l.k, &l.v, &l.q_a, &l.kv_a, &l.shared_expert_gate}) {
        if (!reader->empty()) rules_[*reader] = {Rule::kZeroColumn0, {}};
      }
      if (!l.o.empty()) rules_[l.o] = {Rule::kZeroRow0, {}};
      std::vector<const FfnNames*> ffns = {&l.shared_expert, &l.dense};
      for (const FfnNames& expert : l.experts) ffns.push_back(&expert);
      for (const FfnNames* ffn : ffns) {
        if (ffn->gate.empty()) continue;
        rules_[ffn->gate] = rules_[ffn->up] = {Rule::kZeroColumn0, {}};
        rules_[ffn->down] = {Rule::kZeroRow0, {}};
      }
      if (l.router.empty()) continue;
      // DeepSeek-V3's e_score_correction_bias is added to the sigmoid scores before the top-k: a
      // random one is a fixed popularity order of its own, larger than a token's noise there
      // (sigmoid shrinks logits about fourfold), which made routing nearly deterministic.
      if (!l.router_bias.empty()) rules_[l.router_bias] = {Rule::kZero, {}};
      Rule& router = rules_[l.router] = {Rule::kRouterColumn0, std::vector<float>(c.num_experts)};
      const std::vector<int32_t> order = RouterSkewOrder(seed, layer, c.num_experts);
      for (size_t r = 0; r < order.size(); ++r) {
        router.bias[order[r]] = static_cast<float>(kBiasScale * -skew * std::log(r + 1.0));
      }
    }
  }

  struct Rule {
    enum Kind { kShiftColumn0, kZeroColumn0, kZeroRow0, kRouterColumn0, kZero } kind;
    std::vector<float> bias;  // kRouterColumn0: [expert]
  };
  // The rule for tensor `name`, or null if router skew leaves it alone.
  const Rule* RuleFor(const std::string& name) const {
    auto it = rules_.find(name);
    return it == rules_.end() ? nullptr : &it->second;
  }
  // The value of element `index` of a [rows, cols] tensor under `rule`; `v` is its random value.
  float Apply(const Rule& rule, uint64_t index, uint64_t cols, float v) const {
    switch (rule.kind) {
      case Rule::kShiftColumn0:
        return index % cols == 0 ? v + shift_ : v;
      case Rule::kZeroColumn0:
        return index % cols == 0 ? 0.0f : v;
      case Rule::kZeroRow0:
        return index < cols ? 0.0f : v;
      case Rule::kRouterColumn0:
        return index % cols == 0 ? rule.bias[index / cols] : v;
      case Rule::kZero:
        return 0.0f;
    }
    return v;
  }

 private:
  static constexpr double kStd = 0.02;  // of the random weights (InitFor)
  // a / (kStd * sqrt(hidden)): the channel against the random part of an embedding row.
  static constexpr double kChannelScale = 10;
  // beta: x_0 / |rest of x| is about kChannelScale, a logit's noise is kStd * |rest of x|, and
  // Gumbel noise has std 1.28 per unit of log p: beta = kStd / (1.28 * kChannelScale).
  static constexpr double kBiasScale = kStd / (1.28 * kChannelScale);

  uint64_t hidden_;
  float shift_ = 0;
  std::map<std::string, Rule> rules_;
};

// The linear layers an int4 checkpoint stores packed: attention projections and every FFN
// matrix (experts, shared expert, dense); the router, embedding and LM head stay plain. Each
// maps to the first linear reading the same input (q for q/k/v, gate for gate/up): GPTQ's
// act-order column order depends on the input alone.
std::map<std::string, std::string> LinearNames(const ModelConfig& c) {
  std::map<std::string, std::string> names;
  for (const LayerWeightNames& l : WeightNamesFor(c).layers) {
    for (const std::string* n : {&l.q, &l.k, &l.v}) names[*n] = l.q;
    names[l.o] = l.o;
    std::vector<const FfnNames*> ffns = {&l.shared_expert, &l.dense};
    for (const FfnNames& expert : l.experts) ffns.push_back(&expert);
    for (const FfnNames* ffn : ffns) {
      if (ffn->gate.empty()) continue;
      names[ffn->gate] = ffn->gate;
      names[ffn->up] = ffn->gate;
      names[ffn->down] = ffn->down;
    }
  }
  return names;
}

// The order act-order (GPTQ desc_act, llm-compressor actorder group) visits the input columns
// of the linears reading `input`:
// by descending Hessian diagonal, which the calibration inputs decide; here a random
// permutation per input.
std::vector<int32_t> ActOrder(uint64_t seed, const std::string& input, int64_t cols) {
  std::vector<int32_t> order(static_cast<size_t>(cols));
  for (int64_t i = 0; i < cols; ++i) order[i] = static_cast<int32_t>(i);
  Rng rng(HashName(seed, "act_order." + input));
  for (int64_t i = cols - 1; i > 0; --i) {
    std::swap(order[i], order[rng.Next() % static_cast<uint64_t>(i + 1)]);
  }
  return order;
}

// 256 byte tokens and the three special tokens of the synthesized tokenizer.
constexpr int64_t kMinVocab = 259;

// For a fused checkpoint: each fused tensor's per-expert tensors, in the order their values
// follow one another in it (gate 0, up 0, gate 1, up 1, ...; down 0, down 1, ...), and Mixtral's
// renamed router. make-model draws every value under its per-expert name, so a fused checkpoint
// holds the same weights as the per-expert one of the same seed.
std::map<std::string, std::vector<std::string>> FusedParts(const ModelConfig& c) {
  std::map<std::string, std::vector<std::string>> parts;
  const ModelWeightNames names = WeightNamesFor(c);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const LayerWeightNames& per = names.layers[i];
    if (per.router.empty()) continue;
    LayerWeightNames fused = per;
    UseFusedExperts(c, i, &fused);
    if (fused.router != per.router) parts[fused.router] = {per.router};
    std::vector<std::string>& gate_up = parts[fused.experts[0].gate];
    std::vector<std::string>& down = parts[fused.experts[0].down];
    for (const FfnNames& e : per.experts) {
      gate_up.push_back(e.gate);
      gate_up.push_back(e.up);
      down.push_back(e.down);
    }
  }
  return parts;
}

Status WriteText(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return Status::Internal("cannot write " + path.string());
  return Status::Ok();
}

}  // namespace

std::vector<int32_t> RouterSkewOrder(uint64_t seed, int64_t layer, int64_t num_experts) {
  std::vector<int32_t> order(num_experts);
  for (int64_t e = 0; e < num_experts; ++e) order[e] = static_cast<int32_t>(e);
  Rng rng(HashName(seed, "router_skew." + std::to_string(layer)));
  for (int64_t i = num_experts - 1; i > 0; --i) {
    std::swap(order[i], order[rng.Next() % static_cast<uint64_t>(i + 1)]);
  }
  return order;
}

StatusOr<std::string> MakeModelConfigText(const MakeModelOptions& o) {
  if (!o.arch.empty() && ArchClasses().count(o.arch) == 0) {
    return Status::InvalidArgument("unknown --arch '" + o.arch +
                                   "' (use mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, "
                                   "deepseek_v3 or glm4_moe)");
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
  if (o.int4_act_order && o.int4_format != "gptq" && o.int4_format != "pack-quantized") {
    return Status::InvalidArgument("--desc-act needs --quantization gptq or pack-quantized");
  }
  if (!o.int4_format.empty()) {
    SY_ASSIGN_OR_RETURN(Int4CheckpointFormat f, Int4FormatFor(o.int4_format, o.int4_group_size));
    f.act_order = o.int4_act_order;
    cfg["quantization_config"] = json::parse(Int4QuantizationConfigJson(f));
  }
  if (o.fp8) {
    if (o.fp8_block < 1) return Status::InvalidArgument("the FP8 block size must be positive");
    SY_ASSIGN_OR_RETURN(const ModelConfig parsed, ParseModelConfig(cfg.dump()));
    cfg["quantization_config"] = Fp8QuantizationConfigJson(parsed, o.fp8_block);
  }
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
  if (!(o.router_skew >= 0 && o.router_skew <= 16)) {
    return Status::InvalidArgument("--router-skew must be in [0, 16]");
  }
  SY_ASSIGN_OR_RETURN(std::string config_text, MakeModelConfigText(o));
  SY_ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(config_text));
  std::optional<RouterSkew> skew;
  if (o.router_skew > 0) skew.emplace(config, o.router_skew, o.router_skew_seed);
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

  if (o.fused_experts && (!o.int4_format.empty() || o.fp8)) {
    return Status::InvalidArgument("--fused-experts writes f32, bf16 or f16 experts only");
  }
  const std::vector<WeightSpec> specs =
      ListWeights(config, o.fused_experts ? ExpertLayout::kFused : ExpertLayout::kPerExpert);
  const std::map<std::string, std::vector<std::string>> fused_parts =
      o.fused_experts ? FusedParts(config) : std::map<std::string, std::vector<std::string>>();
  std::optional<Int4CheckpointFormat> int4;
  if (!o.int4_format.empty()) {
    SY_ASSIGN_OR_RETURN(int4, Int4FormatFor(o.int4_format, o.int4_group_size));
    int4->act_order = o.int4_act_order;
  }
  if (int4 && o.fp8) return Status::InvalidArgument("choose int4 packing or FP8, not both");
  const std::map<std::string, std::string> linears =
      int4 ? LinearNames(config) : std::map<std::string, std::string>();
  auto prefix = [](const std::string& name) { return name.substr(0, name.size() - 7); };
  const std::set<std::string> fp8_names = o.fp8 ? Fp8WeightNames(config) : std::set<std::string>();
  auto is_fp8 = [&](const WeightSpec& s) { return fp8_names.count(s.name) != 0; };
  ShardedSafetensorsWriter writer(o.out_dir, o.max_shard_bytes);
  for (const WeightSpec& s : specs) {
    if (is_fp8(s)) {
      SY_RETURN_IF_ERROR(writer.Declare(s.name, DType::kE4M3, s.shape));
      SY_RETURN_IF_ERROR(writer.Declare(Fp8ScaleName(s.name), DType::kF32,
                                        Fp8ScaleShape(s.shape[0], s.shape[1], o.fp8_block)));
      continue;
    }
    if (linears.count(s.name) == 0) {
      SY_RETURN_IF_ERROR(writer.Declare(s.name, o.dtype, s.shape));
      continue;
    }
    for (const PackedInt4Tensor& t : Int4PackedLayout(*int4, s.shape[0], s.shape[1])) {
      SY_RETURN_IF_ERROR(writer.Declare(prefix(s.name) + t.suffix, t.dtype, t.shape));
    }
  }
  const size_t elem = dtype_size(o.dtype);
  for (const WeightSpec& s : specs) {
    // The tensor's values are those of `parts` (itself unless fused) one after another.
    const auto fused = fused_parts.find(s.name);
    const std::vector<std::string> parts =
        fused != fused_parts.end() ? fused->second : std::vector<std::string>{s.name};
    uint64_t numel = 1;
    for (int64_t d : s.shape) numel *= static_cast<uint64_t>(d);
    const uint64_t part_numel = numel / parts.size();
    size_t part = 0;
    Rng rng(HashName(o.seed, parts[0]));
    Init init = InitFor(parts[0]);
    const RouterSkew::Rule* rule = skew ? skew->RuleFor(parts[0]) : nullptr;
    const uint64_t cols = s.shape.size() >= 2 ? static_cast<uint64_t>(s.shape.back()) : 0;
    // Element `index` of the tensor, drawn in order: Box-Muller, one normal per draw.
    auto next_value = [&](uint64_t fused_index) {
      if (fused_index / part_numel != part) {
        part = fused_index / part_numel;
        rng = Rng(HashName(o.seed, parts[part]));
        init = InitFor(parts[part]);
        rule = skew ? skew->RuleFor(parts[part]) : nullptr;
      }
      const uint64_t index = fused_index % part_numel;
      const double r = std::sqrt(-2.0 * std::log(rng.Uniform()));
      const double z = r * std::cos(2.0 * 3.14159265358979323846 * rng.Uniform());
      const float v = init.mean + init.std * static_cast<float>(z);
      return rule != nullptr ? skew->Apply(*rule, index, cols, v) : v;
    };
    if (linears.count(s.name) != 0) {
      // The values the plain checkpoint would hold (rounded to its dtype), then packed.
      std::vector<float> values(static_cast<size_t>(s.shape[0] * s.shape[1]));
      for (size_t i = 0; i < values.size(); ++i) {
        const float v = next_value(i);
        values[i] = o.dtype == DType::kBF16  ? bf16_to_f32(f32_to_bf16(v))
                    : o.dtype == DType::kF16 ? f16_to_f32(f32_to_f16(v))
                                             : v;
      }
      const std::vector<int32_t> act_order = int4->act_order
                                                 ? ActOrder(o.seed, linears.at(s.name), s.shape[1])
                                                 : std::vector<int32_t>();
      for (const PackedInt4Tensor& t :
           PackInt4Linear(*int4, values.data(), s.shape[0], s.shape[1], act_order)) {
        SY_RETURN_IF_ERROR(writer.Write(prefix(s.name) + t.suffix, t.bytes.data()));
      }
      continue;
    }
    if (is_fp8(s)) {
      Fp8BlockWriter blocks(s.shape[0], s.shape[1], o.fp8_block);
      SY_RETURN_IF_ERROR(writer.Write(s.name, [&](uint64_t offset, std::span<std::byte> chunk) {
        blocks.Fill(offset, chunk, next_value);
      }));
      SY_RETURN_IF_ERROR(writer.Write(Fp8ScaleName(s.name), blocks.scales().data()));
      continue;
    }
    SY_RETURN_IF_ERROR(writer.Write(s.name, [&](uint64_t offset, std::span<std::byte> chunk) {
      const size_t n = chunk.size() / elem;
      for (size_t i = 0; i < n; ++i) {
        const float v = next_value(offset / elem + i);
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
