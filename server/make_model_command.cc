// `switchyard make-model`: writes a random-weight checkpoint in Hugging Face layout.
#include <cstdio>
#include <memory>
#include <string>

#include "engine/kv/kv_cache.h"
#include "engine/model/config.h"
#include "engine/model/make_model.h"
#include "engine/model/model_weights.h"
#include "engine/model/presets.h"
#include "server/commands.h"

namespace sy {
namespace {

// One line per preset: the name first (scripts grep for it), then what sizes a deployment.
void PrintPresets() {
  for (const std::string& name : PresetNames()) {
    StatusOr<std::string> text = PresetConfigText(name);
    StatusOr<ModelConfig> c = text.ok() ? ParseModelConfig(*text) : text.status();
    if (!c.ok()) {
      std::printf("%s\t(invalid: %s)\n", name.c_str(), c.status().ToString().c_str());
      continue;
    }
    const KvRowShape row = KvRowShapeFor(*c);
    auto kv_kib = [&](DType dtype) {
      return static_cast<double>(
                 KvCache::BytesPerToken(c->num_layers, row.k_dim, row.v_dim, dtype)) /
             1024;
    };
    std::printf(
        "%s\t%s\t%.2f GB bf16 weights\t%.1f KiB bf16 KV per token\t%.1f KiB fp8 KV per "
        "token\n",
        name.c_str(), std::string(ArchName(c->arch)).c_str(),
        static_cast<double>(WeightBytes(*c, DType::kBF16)) / 1e9, kv_kib(DType::kBF16),
        kv_kib(DType::kF8Row));
  }
}

}  // namespace

Command AddMakeModelCommand(CLI::App& app) {
  auto opts = std::make_shared<MakeModelOptions>();
  auto dtype = std::make_shared<std::string>("bf16");
  auto list = std::make_shared<bool>(false);
  auto quantization = std::make_shared<std::string>("none");
  CLI::App* cmd = app.add_subcommand(
      "make-model", "Write a random-weight MoE checkpoint (config.json, safetensors, tokenizer)");
  cmd->add_option("--arch", opts->arch,
                  "mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3 or glm4_moe");
  cmd->add_option("--preset", opts->preset, "a preset name (see --list-presets)");
  cmd->add_option("--set", opts->overrides, "override a config.json field: key=value")->take_all();
  cmd->add_option("--out", opts->out_dir, "output directory");
  cmd->add_option("--seed", opts->seed, "random seed (same seed, same weights)");
  cmd->add_option("--dtype", *dtype, "weight dtype: f32, bf16 or f16")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd->add_option("--router-skew", opts->router_skew,
                  "Zipf exponent of the routers' expert popularity (0: off)");
  cmd->add_option("--router-skew-seed", opts->router_skew_seed,
                  "seed of the per-layer expert popularity order");
  cmd->add_option("--max-shard-bytes", opts->max_shard_bytes, "split into shards above this size");
  cmd->add_option("--quantization", *quantization,
                  "none; fp8: matmul weights as F8_E4M3 with 128x128 block scales "
                  "(weight_scale_inv) and a quantization_config, as DeepSeek-V3 publishes; or "
                  "gptq / awq / pack-quantized: the linear layers quantized to int4 (round to "
                  "nearest) and packed as GPTQ (v1), AWQ (GEMM) or compressed-tensors "
                  "pack-quantized (symmetric) checkpoints are")
      ->check(CLI::IsMember({"none", "fp8", "gptq", "awq", "pack-quantized"}))
      ->capture_default_str();
  cmd->add_option(
         "--group-size", opts->int4_group_size,
         "with --quantization gptq/awq/pack-quantized: input columns per scale (32, 64 or 128)")
      ->capture_default_str();
  cmd->add_flag("--desc-act", opts->int4_act_order,
                "with --quantization gptq or pack-quantized: act-order (desc_act; actorder "
                "group), groups of columns in a random order per input with their g_idx "
                "(weight_g_idx), as GPTQ and llm-compressor write them");
  cmd->add_flag("--fused-experts", opts->fused_experts,
                "store each MoE layer's routed experts fused, as transformers 5 does: "
                "mlp.experts.gate_up_proj [experts, 2 * inter, hidden] and "
                "mlp.experts.down_proj [experts, hidden, inter]");
  cmd->add_flag(
      "--list-presets", *list,
      "print each preset's name, architecture, bf16 weight size and KV bytes per token (bf16 "
      "and fp8 cache)");
  return {
      cmd, [opts, dtype, list, quantization]() {
        if (*list) {
          PrintPresets();
          return 0;
        }
        opts->dtype = *dtype == "f32" ? DType::kF32 : *dtype == "f16" ? DType::kF16 : DType::kBF16;
        opts->int4_format = *quantization == "none" || *quantization == "fp8" ? "" : *quantization;
        opts->fp8 = *quantization == "fp8";
        Status st = MakeModel(
            *opts, [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); });
        if (!st.ok()) {
          std::fprintf(stderr, "make-model: %s\n", st.ToString().c_str());
          return 1;
        }
        std::fprintf(stderr, "make-model: wrote %s\n", opts->out_dir.c_str());
        return 0;
      }};
}

}  // namespace sy
