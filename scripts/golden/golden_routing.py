"""MoE routers as transformers builds them: DeepseekV2MoEGate (greedy and group_limited_greedy),
DeepseekV3TopkRouter (DeepSeek-V3 and Kimi K2 shapes, and a small case where experts of masked
groups are picked) and Glm4MoeTopkRouter, each fed random logits and a random
e_score_correction_bias. Checks sy::cpu::route's rules against the real classes."""

import numpy as np
import torch
from transformers import DeepseekV2Config, DeepseekV3Config, Glm4MoeConfig
from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2MoEGate
from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter
from transformers.models.glm4_moe.modeling_glm4_moe import Glm4MoeTopkRouter

SEED = 20250101
# Decision gaps below this are re-drawn: torch's topk(sorted=False) breaks ties in no documented
# order, and a near-tie is decided by rounding.
MIN_GAP = 1e-4

# (name, router, config fields, our args, tokens, bias scale, fixed bias or None).
# hidden_size = experts: the router weight is the identity, so the logits are the input rows.
CASES = [
    ("deepseek_v2_lite_greedy", "deepseek_v2",
     dict(n_routed_experts=64, num_experts_per_tok=6, topk_method="greedy",
          routed_scaling_factor=1.0, norm_topk_prob=False),
     dict(k=6, scoring="softmax", renormalize=False, scaling=1.0, n_group=1, topk_group=1,
          group_scoring="max"), 3, None, None),
    # norm_topk_prob true: transformers 4.57.6's DeepseekV2MoEGate ignores it.
    ("deepseek_v2_group_limited", "deepseek_v2",
     dict(n_routed_experts=64, num_experts_per_tok=6, topk_method="group_limited_greedy",
          n_group=8, topk_group=3, routed_scaling_factor=16.0, norm_topk_prob=True),
     dict(k=6, scoring="softmax", renormalize=False, scaling=16.0, n_group=8, topk_group=3,
          group_scoring="max"), 3, None, None),
    ("deepseek_v3", "deepseek_v3",
     dict(n_routed_experts=256, num_experts_per_tok=8, n_group=8, topk_group=4,
          routed_scaling_factor=2.5, norm_topk_prob=True),
     dict(k=8, scoring="sigmoid", renormalize=True, scaling=2.5, n_group=8, topk_group=4,
          group_scoring="top_two_sum"), 2, 0.05, None),
    ("deepseek_v3_no_norm", "deepseek_v3",
     dict(n_routed_experts=32, num_experts_per_tok=4, n_group=4, topk_group=2,
          routed_scaling_factor=1.5, norm_topk_prob=False),
     dict(k=4, scoring="sigmoid", renormalize=False, scaling=1.5, n_group=4, topk_group=2,
          group_scoring="top_two_sum"), 3, 0.3, None),
    # Every odd expert's bias is -1: its choice is below 0, so the two experts of the masked
    # group (0.0) are picked before it (k = 3 positive choices + 2 masked).
    ("deepseek_v3_masked_picks", "deepseek_v3",
     dict(n_routed_experts=8, num_experts_per_tok=5, n_group=4, topk_group=3,
          routed_scaling_factor=1.0, norm_topk_prob=True),
     dict(k=5, scoring="sigmoid", renormalize=True, scaling=1.0, n_group=4, topk_group=3,
          group_scoring="top_two_sum"), 4, None, [0.0, -1.0] * 4),
    ("kimi_k2", "deepseek_v3",
     dict(n_routed_experts=384, num_experts_per_tok=8, n_group=1, topk_group=1,
          routed_scaling_factor=2.827, norm_topk_prob=True),
     dict(k=8, scoring="sigmoid", renormalize=True, scaling=2.827, n_group=1, topk_group=1,
          group_scoring="top_two_sum"), 2, 0.05, None),
    ("glm4_moe", "glm4_moe",
     dict(n_routed_experts=160, num_experts_per_tok=8, n_group=1, topk_group=1,
          routed_scaling_factor=2.5, norm_topk_prob=True),
     dict(k=8, scoring="sigmoid", renormalize=True, scaling=2.5, n_group=1, topk_group=1,
          group_scoring="top_two_sum"), 2, 0.05, None),
    ("glm4_moe_groups", "glm4_moe",
     dict(n_routed_experts=32, num_experts_per_tok=4, n_group=4, topk_group=2,
          routed_scaling_factor=1.0, norm_topk_prob=True),
     dict(k=4, scoring="sigmoid", renormalize=True, scaling=1.0, n_group=4, topk_group=2,
          group_scoring="top_two_sum"), 3, 0.3, None),
]

ROUTERS = {
    "deepseek_v2": (DeepseekV2Config, DeepseekV2MoEGate),
    "deepseek_v3": (DeepseekV3Config, DeepseekV3TopkRouter),
    "glm4_moe": (Glm4MoeConfig, Glm4MoeTopkRouter),
}


def _router(kind, fields):
    config_class, router_class = ROUTERS[kind]
    experts = fields["n_routed_experts"]
    config = config_class(hidden_size=experts, num_hidden_layers=1, vocab_size=16, **fields)
    router = router_class(config)
    with torch.no_grad():
        router.weight.copy_(torch.eye(experts))
    return router


def _choices(logits, bias, args):
    """Our selection values (scores + bias, group-masked with 0.0), float64, and the sorted
    group scores: what the gaps are measured on."""
    x = logits.double()
    scores = x.softmax(-1) if args["scoring"] == "softmax" else x.sigmoid()
    choice = scores + (bias.double() if bias is not None else 0.0)
    group_scores = None
    if args["n_group"] > 1:
        grouped = choice.view(args["n_group"], -1)
        group_scores = (grouped.max(-1).values if args["group_scoring"] == "max"
                        else grouped.topk(2, -1).values.sum(-1))
        kept = group_scores.topk(args["topk_group"]).indices
        mask = torch.zeros(args["n_group"], dtype=torch.bool)
        mask[kept] = True
        choice = choice.masked_fill(~mask.repeat_interleave(grouped.shape[1]), 0.0)
        group_scores = group_scores.sort(descending=True).values
    return choice.sort(descending=True).values, group_scores


def _decisive(logits, bias, args):
    choice, group_scores = _choices(logits, bias, args)
    k = args["k"]
    if choice[k - 1] - choice[k] < MIN_GAP:
        return False
    if group_scores is not None:
        t = args["topk_group"]
        if group_scores[t - 1] - group_scores[t] < MIN_GAP:
            return False
    return True


def _route(kind, router, logits):
    with torch.no_grad():
        if kind == "deepseek_v2":
            ids, weights = router(logits.unsqueeze(0))
        else:
            ids, weights = router(logits)
    return ids, weights


def _shortest(values):
    """The shortest decimals that read back (as float32) to exactly these float32 values."""
    return [float(np.format_float_positional(np.float32(v), unique=True)) for v in values.tolist()]


def build_cases():
    """{"cases": [{"name", "router", "experts", "args", "bias" (or null), "logits": [[float]],
    "ids": [[int]] (each token's experts, ascending), "weights": [[float]] (same order)}]}."""
    gen = torch.Generator().manual_seed(SEED)
    cases = []
    for name, kind, fields, args, tokens, bias_scale, fixed_bias in CASES:
        experts = fields["n_routed_experts"]
        router = _router(kind, fields)
        bias = None
        if fixed_bias is not None:
            bias = torch.tensor(fixed_bias, dtype=torch.float32)
        elif bias_scale is not None:
            bias = (torch.randn(experts, generator=gen, dtype=torch.float64) * bias_scale).round(
                decimals=4).float()
        if bias is not None:
            router.e_score_correction_bias.copy_(bias)
        rows = []
        while len(rows) < tokens:
            # Three decimals keep the fixture small; ties are excluded below.
            row = (torch.randn(experts, generator=gen, dtype=torch.float64) * 2).round(
                decimals=3).float()
            if _decisive(row, bias, args):
                rows.append(row)
        logits = torch.stack(rows)
        ids, weights = _route(kind, router, logits)
        expected_ids, expected_weights = [], []
        for t in range(tokens):
            order = sorted(range(args["k"]), key=lambda j: int(ids[t, j]))
            expected_ids.append([int(ids[t, j]) for j in order])
            expected_weights.append([float(f"{float(weights[t, j]):.9g}") for j in order])
        cases.append({
            "name": name, "router": type(router).__name__, "experts": experts, "args": args,
            "bias": None if bias is None else _shortest(bias),
            "logits": [_shortest(row) for row in logits],
            "ids": expected_ids, "weights": expected_weights})
    return {"cases": cases}
