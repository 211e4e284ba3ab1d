"""How robust a model's expert choices are: the smallest margin, over tokens, by which a
selection could flip. A fixture is only useful if tiny float differences between two correct
implementations cannot change which experts run."""

import torch


def softmax_topk_gaps(logits, k):
    """(logit gap, probability gap) between the k-th and (k+1)-th expert (softmax routers:
    Mixtral, Qwen, OLMoE, DeepSeek-V2 greedy). Logit gaps are log-probability gaps."""
    ranked = logits.sort(dim=-1, descending=True).values
    probs = torch.softmax(ranked, dim=-1)
    return ((ranked[:, k - 1] - ranked[:, k]).min().item(),
            (probs[:, k - 1] - probs[:, k]).min().item())


def _kth_gap(values, k):
    ranked = values.sort(dim=-1, descending=True).values
    return (ranked[:, k - 1] - ranked[:, k]).min().item() if values.shape[-1] > k else float("inf")


def grouped_gaps(config, logits, bias):
    """DeepSeek-V2 group_limited_greedy (softmax, groups by max) and DeepSeek-V3 / GLM-4.5
    (sigmoid + correction bias, groups by top-2 sum): (selection gap, same). The gap is the
    smaller of the group-selection margin and the expert-selection margin among the eligible
    experts. Softmax orders like the logits (the max of a group's probabilities is the max of
    its logits), and masked experts rank last either way, so V2's margins are logit
    (log-probability) gaps as for the plain routers; V3's are gaps of biased sigmoid scores."""
    k, n_group, topk_group = config.num_experts_per_tok, config.n_group, config.topk_group
    sigmoid = bias is not None
    scores = logits.sigmoid() + bias if sigmoid else logits
    tokens, experts = scores.shape
    grouped = scores.view(tokens, n_group, experts // n_group)
    group_scores = (grouped.topk(2, dim=-1).values.sum(-1) if sigmoid
                    else grouped.max(dim=-1).values)
    gap = _kth_gap(group_scores, topk_group)
    keep = group_scores.topk(topk_group, dim=-1).indices
    mask = torch.zeros_like(group_scores).scatter_(1, keep, 1).bool()
    fill = 0.0 if sigmoid else float("-inf")
    masked = scores.masked_fill(~mask.repeat_interleave(experts // n_group, dim=1), fill)
    gap = min(gap, _kth_gap(masked, k))
    return gap, gap


def router_gaps(config, logits, bias):
    """(selection gap, probability gap) of one MoE layer's routing over these tokens."""
    grouped = getattr(config, "n_group", None) or 1
    method = getattr(config, "topk_method", None)
    if bias is None and (grouped == 1 or method == "greedy"):
        return softmax_topk_gaps(logits, config.num_experts_per_tok)
    return grouped_gaps(config, logits, bias)
