"""RoPE tables as transformers builds them: for each of the four architectures and many
rope_scaling settings, the inverse frequencies and the cos/sin scale held by the model's own
rotary-embedding module. Checks the engine's tables for settings no model fixture covers."""

import json

from transformers import MixtralConfig, OlmoeConfig, Qwen2MoeConfig, Qwen3MoeConfig
from transformers.models.mixtral.modeling_mixtral import MixtralRotaryEmbedding
from transformers.models.olmoe.modeling_olmoe import OlmoeRotaryEmbedding
from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeRotaryEmbedding
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeRotaryEmbedding

BASE = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=1,
            intermediate_size=32, vocab_size=64, max_position_embeddings=128,
            num_experts_per_tok=2)
ARCHS = {
    "mixtral": (MixtralConfig, MixtralRotaryEmbedding, dict(num_local_experts=4)),
    "qwen2_moe": (Qwen2MoeConfig, Qwen2MoeRotaryEmbedding,
                  dict(num_experts=4, moe_intermediate_size=16,
                       shared_expert_intermediate_size=16)),
    "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeRotaryEmbedding,
                  dict(num_experts=4, moe_intermediate_size=16, head_dim=32)),
    "olmoe": (OlmoeConfig, OlmoeRotaryEmbedding, dict(num_experts=4)),
}
# head_dim 128 (hidden 512 over 4 heads): the real models' head size.
WIDE = dict(hidden_size=512, head_dim=128)
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 32}

# (name, config fields over BASE, architectures). Mixtral takes no yarn case: its config says
# head_dim null, which transformers 4.57's yarn reads without a fallback and fails on.
CASES = [
    ("default", dict(rope_theta=1e4), "all"),
    ("default_theta_1e6_wide", dict(WIDE, rope_theta=1e6), "all"),
    ("linear_2", dict(rope_theta=1e4, rope_scaling={"type": "linear", "factor": 2.0}), "all"),
    ("linear_3.5_wide", dict(WIDE, rope_theta=5e5,
                             rope_scaling={"rope_type": "linear", "factor": 3.5}), "all"),
    ("llama3_three_bands", dict(rope_theta=100.0, rope_scaling=LLAMA3), "all"),
    ("llama3_llama31", dict(WIDE, rope_theta=5e5, max_position_embeddings=131072,
                            rope_scaling=dict(LLAMA3, original_max_position_embeddings=8192)),
     "all"),
    ("llama3_factors_2_16", dict(rope_theta=1e4, rope_scaling=dict(
        LLAMA3, factor=2.0, low_freq_factor=2.0, high_freq_factor=16.0,
        original_max_position_embeddings=64)), "all"),
    ("yarn_defaults", dict(rope_theta=1e6, rope_scaling=YARN), "no_mixtral"),
    ("yarn_qwen3_wide", dict(WIDE, rope_theta=1e6, max_position_embeddings=131072,
                             rope_scaling=dict(YARN, original_max_position_embeddings=32768)),
     "no_mixtral"),
    ("yarn_no_original", dict(rope_theta=1e4, rope_scaling={"rope_type": "yarn", "factor": 2.0}),
     "no_mixtral"),
    ("yarn_attention_factor", dict(rope_theta=100.0, rope_scaling=dict(
        YARN, attention_factor=0.8, mscale=2.0, mscale_all_dim=0.5)), "no_mixtral"),
    ("yarn_mscale", dict(rope_theta=100.0, rope_scaling=dict(YARN, mscale=2.0,
                                                             mscale_all_dim=0.5)), "no_mixtral"),
    ("yarn_mscale_alone", dict(rope_theta=100.0, rope_scaling=dict(YARN, mscale=2.0)),
     "no_mixtral"),
    ("yarn_betas", dict(rope_theta=100.0, rope_scaling=dict(YARN, beta_fast=4.0,
                                                            beta_slow=0.25)), "no_mixtral"),
    ("yarn_betas_untruncated", dict(rope_theta=100.0, rope_scaling=dict(
        YARN, beta_fast=4.0, beta_slow=0.25, truncate=False)), "no_mixtral"),
    # transformers reads truncate with .get("truncate", True): an explicit null is falsy.
    ("yarn_truncate_null", dict(rope_theta=100.0, rope_scaling=dict(
        YARN, beta_fast=4.0, beta_slow=0.25, truncate=None)), "no_mixtral"),
    # ... and the betas with `or 32` / `or 1`: zero means the default.
    ("yarn_betas_zero", dict(rope_theta=100.0, rope_scaling=dict(YARN, beta_fast=0.0,
                                                                 beta_slow=0.0)), "no_mixtral"),
    ("yarn_factor_below_1", dict(rope_theta=1e4, rope_scaling=dict(YARN, factor=0.5)),
     "no_mixtral"),
]


def _config_json(config):
    return json.loads(config.to_json_string(use_diff=False))


def build_cases():
    """{"architectures": {arch: base config.json}, "cases": [{"name", "arch", "config":
    {fields that differ from the base}, "rotary_dim", "inv_freq", "attention_scaling"}]}."""
    bases, cases = {}, []
    for arch, (config_class, rotary_class, extra) in ARCHS.items():
        bases[arch] = _config_json(config_class(**BASE, **extra))
    for name, fields, archs in CASES:
        for arch, (config_class, rotary_class, extra) in ARCHS.items():
            if archs == "no_mixtral" and arch == "mixtral":
                continue
            config = config_class(**{**BASE, **extra, **fields})
            rotary = rotary_class(config)
            full = _config_json(config)
            diff = {k: v for k, v in full.items() if bases[arch].get(k, object()) != v}
            # 9 significant digits give back every float32 exactly.
            inv_freq = [float(f"{v:.9g}") for v in rotary.inv_freq.float().tolist()]
            cases.append({"name": f"{arch}/{name}", "arch": arch, "config": diff,
                          "rotary_dim": 2 * len(inv_freq), "inv_freq": inv_freq,
                          "attention_scaling": float(rotary.attention_scaling)})
    return {"architectures": bases, "cases": cases}
