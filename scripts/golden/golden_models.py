"""Tiny random MoE models built with transformers' own classes, and the reference outputs
(prompt logits, greedy continuations) recorded from them after a save/reload round trip."""

import copy
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import (AutoModelForCausalLM, AutoTokenizer, DeepseekV2Config,
                          DeepseekV2ForCausalLM, DeepseekV3Config, DeepseekV3ForCausalLM,
                          Glm4MoeConfig, Glm4MoeForCausalLM, MixtralConfig, MixtralForCausalLM,
                          OlmoeConfig, OlmoeForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM,
                          Qwen3MoeConfig, Qwen3MoeForCausalLM)

import golden_fp8
from corpus import PROMPT_TEXTS
from golden_json import write_json
from router_gaps import router_gaps

NEW_TOKENS = 32
# Selection robustness is a gap in router logits (= log-probabilities) between the k-th and
# (k+1)-th expert: an absolute probability gap is meaningless when both probabilities are tiny.
ROUTER_MIN_GAP = 1e-3   # min router-logit gap between the k-th and (k+1)-th expert of any token
GREEDY_MIN_GAP = 1e-3   # min logit gap between the best and second-best greedy token
MIN_DISTINCT_NEW = 8    # random models fall into loops; a loop of one token tests little
MAX_SEED_TRIES = 50
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

COMMON = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=128, hidden_act="silu", num_experts_per_tok=2)


@dataclass
class ModelSpec:
    name: str
    config_class: type
    model_class: type
    tokenizer: str
    config: dict
    dtype: str = "float32"
    seed: int = 0
    weights_from: str = ""       # same weights (seed) as that spec, searched jointly
    max_shard_size: str = ""     # save sharded when set
    expected_tensors: list = field(default_factory=list)
    fp8_block: list = None       # save as an FP8 checkpoint with these [rows, cols] blocks


MOE_MLP_NAMES = ["model.layers.{S}.mlp.gate.weight",
                 "model.layers.{S}.mlp.experts.0.gate_proj.weight",
                 "model.layers.{S}.mlp.experts.0.up_proj.weight",
                 "model.layers.{S}.mlp.experts.0.down_proj.weight"]

MIXTRAL = dict(COMMON, num_hidden_layers=2, intermediate_size=16, num_local_experts=8,
               sliding_window=24, rope_theta=1e6, rms_norm_eps=1e-5, tie_word_embeddings=False)
OLMOE = dict(COMMON, num_hidden_layers=2, intermediate_size=16, num_experts=8,
             norm_topk_prob=False, rope_theta=1e4, rms_norm_eps=1e-5, tie_word_embeddings=False)
MIXTRAL_NAMES = ["model.layers.{S}.block_sparse_moe.gate.weight",
                 "model.layers.{S}.block_sparse_moe.experts.0.w1.weight",
                 "model.layers.{S}.block_sparse_moe.experts.7.w2.weight",
                 "model.layers.{S}.block_sparse_moe.experts.7.w3.weight",
                 "lm_head.weight"]
OLMOE_NAMES = MOE_MLP_NAMES + ["model.layers.{L}.self_attn.q_norm.weight",
                               "model.layers.{L}.self_attn.k_norm.weight", "lm_head.weight"]

SPECS = [
    ModelSpec("mixtral", MixtralConfig, MixtralForCausalLM, "sp", MIXTRAL, seed=1000,
              expected_tensors=MIXTRAL_NAMES),
    ModelSpec("mixtral_bf16", MixtralConfig, MixtralForCausalLM, "sp", MIXTRAL, dtype="bfloat16",
              weights_from="mixtral", expected_tensors=MIXTRAL_NAMES),
    ModelSpec("qwen2_moe", Qwen2MoeConfig, Qwen2MoeForCausalLM, "bpe_qwen",
              dict(COMMON, num_hidden_layers=4, intermediate_size=48, moe_intermediate_size=20,
                   shared_expert_intermediate_size=40, num_experts=4, decoder_sparse_step=2,
                   mlp_only_layers=[0], norm_topk_prob=False, qkv_bias=True, rope_theta=1e4,
                   rope_scaling={"type": "linear", "factor": 2.0}, use_sliding_window=False,
                   rms_norm_eps=1e-6, tie_word_embeddings=False),
              seed=2000,
              expected_tensors=MOE_MLP_NAMES + [
                  "model.layers.{S}.mlp.shared_expert.gate_proj.weight",
                  "model.layers.{S}.mlp.shared_expert.up_proj.weight",
                  "model.layers.{S}.mlp.shared_expert.down_proj.weight",
                  "model.layers.{S}.mlp.shared_expert_gate.weight",
                  "model.layers.{D}.mlp.gate_proj.weight",
                  "model.layers.{L}.self_attn.q_proj.bias", "lm_head.weight"]),
    ModelSpec("qwen3_moe", Qwen3MoeConfig, Qwen3MoeForCausalLM, "bpe_qwen",
              dict(COMMON, num_hidden_layers=2, head_dim=32, intermediate_size=48,
                   moe_intermediate_size=16, num_experts=8, norm_topk_prob=True,
                   max_position_embeddings=64, rope_theta=1e6, rms_norm_eps=1e-6,
                   rope_scaling={"rope_type": "yarn", "factor": 2.0,
                                 "original_max_position_embeddings": 32},
                   tie_word_embeddings=True),
              seed=3000, max_shard_size="300KB",
              expected_tensors=MOE_MLP_NAMES + ["model.layers.{L}.self_attn.q_norm.weight",
                                                "model.layers.{L}.self_attn.k_norm.weight"]),
    ModelSpec("olmoe", OlmoeConfig, OlmoeForCausalLM, "bpe_gpt2", OLMOE, seed=4000,
              expected_tensors=OLMOE_NAMES),
    ModelSpec("olmoe_f16", OlmoeConfig, OlmoeForCausalLM, "bpe_gpt2",
              dict(OLMOE, norm_topk_prob=True), dtype="float16", weights_from="olmoe",
              expected_tensors=OLMOE_NAMES),
    # Rope scaling beyond the defaults, on one-layer models. A small rope_theta spreads the
    # wavelengths 2*pi*theta^(2i/d) of a small head over 6..470 positions, so that every band or
    # ramp region below occurs. original_max_position_embeddings is 16: the longest prompt's
    # logits (positions up to 27) and its continuation (up to 59) run past it.
    # llama3, head_dim 16, theta 30: wavelength 6.3 lies in the high band (below 16 / 2:
    # unchanged), 9.6 and 14.7 in the smoothed middle band, 22.5..123 in the low band (above
    # 16 / 1: divided by factor).
    ModelSpec("mixtral_llama3rope", MixtralConfig, MixtralForCausalLM, "sp",
              dict(MIXTRAL, num_hidden_layers=1, num_local_experts=4, sliding_window=None,
                   rope_theta=30.0,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 2.0, "original_max_position_embeddings": 16}),
              seed=5000, expected_tensors=MIXTRAL_NAMES[:2] + [
                  "model.layers.{S}.block_sparse_moe.experts.3.w2.weight", "lm_head.weight"]),
    # yarn, head_dim 32, theta 100, with every optional parameter transformers 4.57 reads for
    # it: attention_factor from mscale / mscale_all_dim (1.1944649), and beta_fast 2 /
    # beta_slow 0.125 with truncate false, which ramp from dimension 0.84 to 10.47 unrounded.
    ModelSpec("qwen3_moe_yarn_params", Qwen3MoeConfig, Qwen3MoeForCausalLM, "bpe_qwen",
              dict(COMMON, num_hidden_layers=1, head_dim=32, intermediate_size=48,
                   moe_intermediate_size=16, num_experts=4, norm_topk_prob=True,
                   max_position_embeddings=64, rope_theta=100.0, rms_norm_eps=1e-6,
                   rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                 "original_max_position_embeddings": 16, "beta_fast": 2.0,
                                 "beta_slow": 0.125, "mscale": 2.0, "mscale_all_dim": 0.5,
                                 "truncate": False},
                   tie_word_embeddings=True),
              seed=6000,
              expected_tensors=MOE_MLP_NAMES + ["model.layers.{L}.self_attn.q_norm.weight",
                                                "model.layers.{L}.self_attn.k_norm.weight"]),
    # A published-FP8 checkpoint (golden_fp8.py): every projection and expert matrix in
    # float8_e4m3fn with one scale per 16 x 128 block (several row blocks per matrix; a block
    # as wide as the rows, as in 128 x 128 checkpoints of wider models), routers and LM head
    # in float32.
    ModelSpec("mixtral_fp8", MixtralConfig, MixtralForCausalLM, "sp",
              dict(MIXTRAL, num_local_experts=4), seed=7000, fp8_block=[16, 128],
              expected_tensors=MIXTRAL_NAMES[:2] + [
                  "model.layers.{S}.block_sparse_moe.experts.0.w1.weight_scale_inv",
                  "model.layers.{L}.self_attn.q_proj.weight_scale_inv", "lm_head.weight"]),
]

# The DeepSeek family and GLM-4.5: eight routed experts in four groups of two, two groups
# eligible per token, three of their four experts chosen; a dense first layer; shared experts.
# v_head_dim differs from qk_nope_head_dim so that a swap of the two would show.
DEEPSEEK = dict(COMMON, num_hidden_layers=3, num_key_value_heads=4, intermediate_size=32,
                moe_intermediate_size=16, n_routed_experts=8, num_experts_per_tok=3, n_group=4,
                topk_group=2, first_k_dense_replace=1, kv_lora_rank=32, qk_nope_head_dim=16,
                qk_rope_head_dim=8, v_head_dim=12, rms_norm_eps=1e-6, tie_word_embeddings=False)
MLA_NAMES = ["model.layers.{L}.self_attn.kv_a_proj_with_mqa.weight",
             "model.layers.{L}.self_attn.kv_a_layernorm.weight",
             "model.layers.{L}.self_attn.kv_b_proj.weight",
             "model.layers.{S}.mlp.shared_experts.gate_proj.weight",
             "model.layers.{D}.mlp.gate_proj.weight", "lm_head.weight"]
BIAS_NAMES = ["model.layers.{S}.mlp.gate.e_score_correction_bias"]
# yarn with DeepSeek's mscale / mscale_all_dim: the rotary tables get attention factor
# get_mscale(4, 1.5) / get_mscale(4, 0.5) and the softmax scale get_mscale(4, 0.5)^2.
DEEPSEEK_YARN = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16,
                 "beta_fast": 4.0, "beta_slow": 1.0, "mscale": 1.5, "mscale_all_dim": 0.5}
DEEPSEEK_SPECS = [
    ModelSpec("deepseek_v3", DeepseekV3Config, DeepseekV3ForCausalLM, "bpe_qwen",
              dict(DEEPSEEK, q_lora_rank=24, n_shared_experts=1, norm_topk_prob=True,
                   routed_scaling_factor=2.5, rope_theta=1e4, rope_scaling=DEEPSEEK_YARN),
              seed=7000, expected_tensors=MOE_MLP_NAMES + MLA_NAMES + BIAS_NAMES + [
                  "model.layers.{L}.self_attn.q_a_proj.weight",
                  "model.layers.{L}.self_attn.q_a_layernorm.weight",
                  "model.layers.{L}.self_attn.q_b_proj.weight"]),
    ModelSpec("deepseek_v3_bf16", DeepseekV3Config, DeepseekV3ForCausalLM, "bpe_qwen",
              dict(DEEPSEEK, q_lora_rank=24, n_shared_experts=1, norm_topk_prob=True,
                   routed_scaling_factor=2.5, rope_theta=1e4, rope_scaling=DEEPSEEK_YARN),
              dtype="bfloat16", weights_from="deepseek_v3",
              expected_tensors=MOE_MLP_NAMES + MLA_NAMES + BIAS_NAMES),
    # DeepSeek-V3 as published: FP8 e4m3 weights with block scales (16 x 128 here so that the
    # tiny matrices hold several row blocks; golden_fp8.py), router and LM head unquantized.
    ModelSpec("deepseek_v3_fp8", DeepseekV3Config, DeepseekV3ForCausalLM, "bpe_qwen",
              dict(DEEPSEEK, q_lora_rank=24, n_shared_experts=1, norm_topk_prob=True,
                   routed_scaling_factor=2.5, rope_theta=1e4, rope_scaling=DEEPSEEK_YARN),
              seed=7100, fp8_block=[16, 128],
              expected_tensors=MOE_MLP_NAMES + MLA_NAMES + BIAS_NAMES),
    ModelSpec("deepseek_v2", DeepseekV2Config, DeepseekV2ForCausalLM, "bpe_gpt2",
              dict(DEEPSEEK, q_lora_rank=None, n_shared_experts=2, topk_method="group_limited_greedy",
                   routed_scaling_factor=1.5, rope_theta=1e4),
              seed=8000, expected_tensors=MOE_MLP_NAMES + MLA_NAMES + [
                  "model.layers.{L}.self_attn.q_proj.weight"]),
    ModelSpec("glm4_moe", Glm4MoeConfig, Glm4MoeForCausalLM, "bpe_qwen",
              dict(DEEPSEEK, head_dim=16, num_key_value_heads=2, partial_rotary_factor=0.5,
                   attention_bias=True, use_qk_norm=True, n_shared_experts=1,
                   norm_topk_prob=True, routed_scaling_factor=1.8, rope_theta=1e4),
              seed=9000, expected_tensors=MOE_MLP_NAMES + BIAS_NAMES + [
                  "model.layers.{L}.self_attn.q_proj.bias",
                  "model.layers.{L}.self_attn.q_norm.weight",
                  "model.layers.{S}.mlp.shared_experts.gate_proj.weight",
                  "model.layers.{D}.mlp.gate_proj.weight", "lm_head.weight"]),
]
SPECS += DEEPSEEK_SPECS


# ----------------------------------------------------------------------------- building

def _special_ids(tok):
    eos = tok.eos_token_id
    return dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=eos,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else eos)


def _init_std(name, param, tied):
    """(mean, std) for one parameter: unit-scale activations, decisive routing, norms != 1,
    logits ~ N(0, 2). A tied embedding must stay small, or the residual stream is dominated by
    the current token's own embedding and greedy decoding repeats it; the final norm then
    scales the logits back up."""
    if name == "model.norm.weight":
        return (4.0 if tied else 1.0), (0.4 if tied else 0.1)
    if name.endswith("norm.weight"):
        return 1.0, 0.1
    if name.endswith(".bias"):
        return 0.0, 0.2
    if name.endswith(".gate.weight"):
        return 0.0, 0.5          # router
    if name.endswith("lm_head.weight"):
        return 0.0, 0.25
    if name.endswith("embed_tokens.weight"):
        return 0.0, (0.0625 if tied else 1.0)
    return 0.0, param.shape[-1] ** -0.5   # every other Linear: 1/sqrt(fan_in)


def _init_weights(model, seed):
    gen = torch.Generator().manual_seed(seed)
    tied = model.config.tie_word_embeddings
    with torch.no_grad():
        for name, param in model.named_parameters():
            mean, std = _init_std(name, param, tied)
            param.copy_(torch.randn(param.shape, generator=gen) * std + mean)
        # DeepSeek-V3 / GLM's correction bias is a buffer (zero at init): make it matter.
        for name, buf in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buf.copy_(torch.randn(buf.shape, generator=gen) * 0.5)


def build_model(spec, tok, seed):
    torch.manual_seed(seed)
    config = spec.config_class(**spec.config, **_special_ids(tok), attn_implementation="eager")
    model = spec.model_class(config).eval()
    _init_weights(model, seed)
    if spec.fp8_block:
        model.fp8_weights = golden_fp8.quantize_model(model, spec.fp8_block)
    return model


def _check_tensor_names(model_dir, spec, config):
    """Fails unless the checkpoint has the classic hub layout: one tensor per expert.
    Patterns: {L} = every layer, {S} = sparse (MoE) layers, {D} = dense-MLP layers."""
    names = set()
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            names.update(f.keys())
    all_layers = list(range(config.num_hidden_layers))
    sparse = [i for i in all_layers if _is_sparse_layer(config, i)]
    layers_for = {"{L}": all_layers, "{S}": sparse, "{D}": [i for i in all_layers if i not in sparse]}
    for pattern in spec.expected_tensors:
        key = next((k for k in layers_for if k in pattern), None)
        expanded = [pattern.format(L=i, S=i, D=i) for i in layers_for[key]] if key else [pattern]
        missing = [n for n in expanded if n not in names]
        if missing or not expanded:
            raise RuntimeError(f"{spec.name}: saved checkpoint lacks {missing or pattern}; "
                               f"it has e.g. {sorted(names)[:12]}")
    if any("gate_up_proj" in n or re.search(r"\.experts\.(down_proj|gate_proj|w1)", n) for n in names):
        raise RuntimeError(f"{spec.name}: fused expert tensors found, not the per-expert layout")
    if config.tie_word_embeddings and "lm_head.weight" in names:
        raise RuntimeError(f"{spec.name}: tied lm_head was saved")
    return sorted(names)


def _is_sparse_layer(config, layer):
    if hasattr(config, "first_k_dense_replace"):
        return layer >= config.first_k_dense_replace
    step = getattr(config, "decoder_sparse_step", 1)
    return layer not in getattr(config, "mlp_only_layers", []) and (layer + 1) % step == 0


def save_model(model, spec, tok_dir, model_dir):
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    kwargs = {"safe_serialization": True}
    if spec.max_shard_size:
        kwargs["max_shard_size"] = spec.max_shard_size
    copy.deepcopy(model).to(DTYPES[spec.dtype]).save_pretrained(model_dir, **kwargs)
    if spec.fp8_block:
        golden_fp8.write_checkpoint(model_dir, model, model.fp8_weights, spec.fp8_block)
    for f in sorted(tok_dir.iterdir()):
        shutil.copy(f, model_dir / f.name)
    if spec.max_shard_size and not (model_dir / "model.safetensors.index.json").exists():
        raise RuntimeError(f"{spec.name}: expected a sharded checkpoint")
    return _check_tensor_names(model_dir, spec, model.config)


def load_model(model_dir, dtype):
    if golden_fp8.is_fp8_checkpoint(model_dir):
        return golden_fp8.load_dequantized(model_dir, dtype)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype,
                                                attn_implementation="eager").eval()


# ----------------------------------------------------------------------------- running

def prompt_ids(tok, target_len, text):
    """Shortest prefix of text (in characters; it may end inside a word, never on whitespace)
    that encodes to at least target_len tokens, bos included."""
    for n in range(1, len(text) + 1):
        if text[n - 1].isspace():
            continue
        ids = tok(text[:n], add_special_tokens=True)["input_ids"]
        if len(ids) >= target_len:
            return text[:n], ids
    raise RuntimeError(f"prompt too short for {target_len} tokens: {text!r}")


@torch.no_grad()
def forward_logits(model, ids):
    return model(torch.tensor([ids])).logits[0].float()


@torch.no_grad()
def greedy(model, ids, eos_id):
    out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                         do_sample=False, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                         pad_token_id=eos_id, temperature=None, top_p=None, top_k=None)
    return out[0, len(ids):].tolist()


class RouterRecorder:
    """Captures each MoE layer's router logits (and correction bias) during forward passes.
    Plain routers are nn.Linear (their output is the logits); DeepSeek's and GLM's router
    modules return their choices, so their logits are recomputed from the input."""

    def __init__(self, model):
        self.config = model.config
        self.layers, self.handles = [], []
        for name, module in model.named_modules():
            if re.search(r"\.(mlp|block_sparse_moe)\.gate$", name):
                self.handles.append(module.register_forward_hook(self._record))
        if not self.handles:
            raise RuntimeError("no router modules found")

    def _record(self, module, inputs, out):
        if isinstance(out, torch.Tensor):
            self.layers.append((out.detach().float(), None))
            return
        hidden = inputs[0].detach().reshape(-1, module.weight.shape[1]).float()
        bias = getattr(module, "e_score_correction_bias", None)
        self.layers.append((hidden @ module.weight.detach().float().T,
                            None if bias is None else bias.detach().float()))

    def min_topk_gaps(self):
        """(min selection gap, min probability gap) over every recorded layer."""
        gaps = [router_gaps(self.config, logits, bias) for logits, bias in self.layers]
        return min(g[0] for g in gaps), min(g[1] for g in gaps)

    def close(self):
        for h in self.handles:
            h.remove()


def check_prompt(model, ids, new_ids, eos_id):
    """Recomputes the greedy continuation without a KV cache (one forward over prompt +
    continuation) and returns ({gap name: value}, problems)."""
    recorder = RouterRecorder(model)
    logits = forward_logits(model, ids + new_ids)[len(ids) - 1:-1]
    router_gap, router_prob_gap = recorder.min_topk_gaps()
    recorder.close()
    problems = []
    if eos_id is not None and (logits.argmax(-1) == eos_id).any():
        problems.append("EOS would win a greedy step (min_new_tokens masking would matter)")
    masked = logits.clone()
    if eos_id is not None:
        masked[:, eos_id] = float("-inf")
    if masked.argmax(-1).tolist() != new_ids:
        problems.append("generate() differs from the cache-free recomputation")
    top2 = masked.topk(2, dim=-1).values
    greedy_gap = (top2[:, 0] - top2[:, 1]).min().item()
    if router_gap < ROUTER_MIN_GAP:
        problems.append(f"router top-k gap {router_gap:.2e} < {ROUTER_MIN_GAP}")
    if len(set(new_ids)) < MIN_DISTINCT_NEW:
        problems.append(f"greedy continuation has only {len(set(new_ids))} distinct tokens")
    if greedy_gap < GREEDY_MIN_GAP:
        problems.append(f"greedy logit gap {greedy_gap:.2e} < {GREEDY_MIN_GAP}")
    gaps = {"min_router_topk_logit_gap": router_gap, "min_router_topk_prob_gap": router_prob_gap,
            "min_greedy_logit_gap": greedy_gap}
    return gaps, problems


def _round(x):
    return float(f"{x:.7g}")


def _round_rows(t):
    return [[_round(v) for v in row] for row in t.tolist()]


def run_reference(model_dir, spec, tok):
    """Loads the saved checkpoint and records the fixture: returns (prompts, checks, problems)."""
    model = load_model(model_dir, torch.float32)
    eos = tok.eos_token_id
    prompts, problems, checks = [], [], {}
    for target, text in PROMPT_TEXTS:
        text, ids = prompt_ids(tok, target, text)
        new_ids = greedy(model, ids, eos)
        gaps, found = check_prompt(model, ids, new_ids, eos)
        for key, value in gaps.items():
            checks[key] = _round(min(value, checks.get(key, value)))
        problems += [f"prompt {len(prompts)}: {p}" for p in found]
        prompts.append({"text": text, "ids": ids,
                        "logits": _round_rows(forward_logits(model, ids)), "greedy": new_ids})
    if spec.dtype != "float32":
        native = load_model(model_dir, DTYPES[spec.dtype])
        for p in prompts:
            p["logits_native"] = _round_rows(forward_logits(native, p["ids"]))
    return prompts, checks, problems


def check_round_trip(model, model_dir, spec, ids):
    """The reloaded checkpoint holds the in-memory weights rounded to the storage dtype, and
    (for float32) reproduces the in-memory model's logits. Not bit-exactly: CPU BLAS results
    change in the last bit with the memory alignment of the weights (seen: 2e-6)."""
    reloaded = load_model(model_dir, torch.float32)
    stored = dict(reloaded.named_parameters())
    dtype = DTYPES[spec.dtype]
    differing = [name for name, p in model.named_parameters()
                 if not torch.equal(p.detach().to(dtype).float(), stored[name])]
    if differing:
        raise RuntimeError(f"{spec.name}: reloaded weights differ: {differing[:5]}")
    if spec.dtype == "float32" and not torch.allclose(forward_logits(model, ids),
                                                      forward_logits(reloaded, ids),
                                                      rtol=1e-5, atol=1e-5):
        raise RuntimeError(f"{spec.name}: reloaded checkpoint does not reproduce the logits")


def _attempt(spec, seed, tok, tok_dir, model_dir):
    """Builds, saves and runs one model at one seed. Returns (golden fields, problems)."""
    model = build_model(spec, tok, seed)
    tensor_names = save_model(model, spec, tok_dir, model_dir)
    prompts, checks, problems = run_reference(model_dir, spec, tok)
    if not problems:
        check_round_trip(model, model_dir, spec, prompts[0]["ids"])
    return {"checks": checks, "prompts": prompts, "tensors": len(tensor_names)}, problems


def _write_outputs(spec, seed, fields, tok, model_dir, versions):
    golden = {**versions, "model": spec.name, "architecture": spec.model_class.__name__,
              "dtype": spec.dtype, "tokenizer": spec.tokenizer, "seed": seed,
              "new_tokens": NEW_TOKENS, "eos_token_id": tok.eos_token_id,
              "checks": fields["checks"], "prompts": fields["prompts"]}
    write_json(model_dir / "golden.json", golden, compact=True)
    config = json.loads((model_dir / "config.json").read_text())
    print(f"  {spec.name}: seed {seed}, {fields['tensors']} tensors, prompt lengths "
          f"{[len(p['ids']) for p in fields['prompts']]}, checks {fields['checks']}")
    experts = config.get("num_experts", config.get("num_local_experts",
                                                   config.get("n_routed_experts")))
    return {"name": spec.name, "path": f"models/{spec.name}",
            "architecture": config["architectures"][0], "dtype": spec.dtype,
            "tokenizer": spec.tokenizer,
            "tokenizer_kind": "sentencepiece" if spec.tokenizer == "sp" else "tokenizer.json",
            "sharded": bool(spec.max_shard_size), "seed": seed,
            **({"quantization": "fp8", "weight_block_size": spec.fp8_block}
               if spec.fp8_block else {}),
            "num_hidden_layers": config["num_hidden_layers"], "hidden_size": config["hidden_size"],
            "num_experts": experts, "num_experts_per_tok": config["num_experts_per_tok"],
            "vocab_size": config["vocab_size"]}


def families(specs):
    """Groups each spec with the specs that take its weights (same seed, other dtype)."""
    groups = {}
    for spec in specs:
        groups.setdefault(spec.weights_from or spec.name, []).append(spec)
    return list(groups.values())


def generate_family(family, tok_root, models_root, versions):
    """Finds the first seed at which every model of the family passes the margin checks,
    then writes their golden.json files. Returns their index.json entries."""
    base = family[0]
    tok_dir = tok_root / base.tokenizer
    tok = AutoTokenizer.from_pretrained(tok_dir)
    for seed in range(base.seed, base.seed + MAX_SEED_TRIES):
        results = []
        for spec in family:
            fields, problems = _attempt(spec, seed, tok, tok_dir, models_root / spec.name)
            if problems:
                print(f"  {spec.name} seed {seed} rejected: {problems}")
                break
            results.append((spec, fields))
        else:
            return [_write_outputs(spec, seed, fields, tok, models_root / spec.name, versions)
                    for spec, fields in results]
    raise RuntimeError(f"{base.name}: no seed passed the margin checks")
