// make-model: writes a random-weight checkpoint in Hugging Face layout (config.json,
// safetensors, tokenizer.json) for any supported architecture at any size, deterministic from a
// seed. For demos, tests and benchmarks, since no real weights can be downloaded.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/core/status.h"
#include "kernels/dtype.h"

namespace sy {

struct MakeModelOptions {
  std::string arch;    // mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2/v3, glm4_moe
  std::string preset;  // a name from configs/presets; empty: tiny-<arch>
  std::vector<std::string> overrides;  // "key=value": a config.json field; value parsed as JSON
  std::string out_dir;
  uint64_t seed = 0;
  DType dtype = DType::kBF16;
  uint64_t max_shard_bytes = 4ull << 30;
  // Zipf exponent of the routers' expert popularity: the r-th most popular expert of each MoE
  // layer gets a share of roughly 1 / r^router_skew, in a random expert order per layer drawn
  // from router_skew_seed (RouterSkewOrder). 0: off, the weights are exactly as without it.
  double router_skew = 0;
  uint64_t router_skew_seed = 0;
  // "gptq", "awq" or "pack-quantized": the linear layers (attention projections, expert/dense FFNs;
  // not the router, embedding or LM head) quantized to int4 in groups of int4_group_size input
  // columns and packed as that library writes them, with its quantization_config
  // (int4_checkpoint.h).
  std::string int4_format;
  int64_t int4_group_size = 128;
  // With int4_format "gptq" or "pack-quantized": act-order (desc_act true; actorder "group"),
  // each linear's groups formed in a random column order shared by the linears reading the same
  // input, with its g_idx (weight_g_idx).
  bool int4_act_order = false;
  // Store the matmul weights (attention projections, expert and dense FFN matrices) as FP8
  // e4m3fn (F8_E4M3) with f32 `weight_scale_inv` per fp8_block x fp8_block block and a
  // quantization_config {quant_method: fp8, weight_block_size: [fp8_block, fp8_block]}: the
  // layout DeepSeek-V3 and Qwen3-FP8 publish. Embeddings, routers, shared-expert gates and the
  // LM head stay in `dtype` (modules_to_not_convert).
  bool fp8 = false;
  int64_t fp8_block = 128;
  // Store each MoE layer's routed experts fused (ExpertLayout::kFused), with the values the
  // per-expert tensors of the same seed would hold. Not with int4_format or fp8.
  bool fused_experts = false;
};

// Writes the checkpoint; `progress` (optional) receives a line per written tensor group.
Status MakeModel(const MakeModelOptions& options,
                 const std::function<void(const std::string&)>& progress = {});

// The experts of model layer `layer`, most popular first, that router skew with `seed` favours.
std::vector<int32_t> RouterSkewOrder(uint64_t seed, int64_t layer, int64_t num_experts);

// The config.json text MakeModel would write (preset + arch + overrides), validated.
StatusOr<std::string> MakeModelConfigText(const MakeModelOptions& options);

}  // namespace sy
