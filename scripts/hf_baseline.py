#!/usr/bin/env python3
"""Hugging Face transformers decode throughput on the GPU: the baseline `gpu_bench --decode` is
compared with (scripts/bench-gpu.sh, stage hf-*). For a local checkpoint directory (e.g. the
output of `switchyard make-model`), loaded in bfloat16 on cuda, and for each batch size: a random
prompt of --context tokens per sequence is prefilled into a DynamicCache, then --steps greedy
decode steps (model forward + argmax on the GPU) are timed one by one between
torch.cuda.synchronize() calls, after a few untimed ones. Prints a table and one JSON line;
--json FILE writes the JSON too. Never touches the network (local files only).

    python3 scripts/hf_baseline.py MODEL_DIR [--batches 1,32] [--context 512] [--steps 64]
        [--experts-impl eager|grouped_mm|batched_mm] [--attn-impl sdpa|eager] [--json out.json]
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, DynamicCache  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="checkpoint directory (config.json + safetensors)")
    p.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    p.add_argument("--context", type=int, default=512, help="prompt tokens per sequence")
    p.add_argument("--steps", type=int, default=64, help="timed decode steps per batch size")
    p.add_argument("--warmup", type=int, default=3, help="untimed decode steps first")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--experts-impl", default=None,
                   help="transformers' MoE experts implementation (default: its own choice)")
    p.add_argument("--attn-impl", default=None, help="attention implementation (default: sdpa)")
    p.add_argument("--json", default=None, help="write the results here")
    return p.parse_args()


def make_cache(model):
    try:
        return DynamicCache(config=model.config)
    except TypeError:  # transformers 4.x
        return DynamicCache()


def forward(model, ids, cache):
    """Logits of the last position only (the full [batch, len, vocab] would not fit at batch 32)."""
    try:
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
    except TypeError:  # transformers < 4.50
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, num_logits_to_keep=1)
    return out.logits[:, -1].argmax(-1, keepdim=True)


@torch.inference_mode()
def run_batch(model, vocab, batch, context, steps, warmup, gen):
    ids = torch.randint(0, vocab, (batch, context), generator=gen).cuda()
    cache = make_cache(model)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    tok = forward(model, ids, cache)
    torch.cuda.synchronize()
    prefill_s = time.perf_counter() - t0
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        tok = forward(model, tok, cache)
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    del cache, tok, ids
    torch.cuda.empty_cache()
    times.sort()
    step = statistics.median(times)
    return {"batch": batch, "prefill_ms": 1e3 * prefill_s,
            "prefill_tok_s": batch * context / prefill_s, "step_ms_median": 1e3 * step,
            "step_ms_p90": 1e3 * times[min(len(times) - 1, int(0.9 * len(times)))],
            "tok_s": batch / step}


def main():
    args = parse_args()
    if not torch.cuda.is_available():
        print("hf_baseline: no CUDA device (torch.cuda.is_available() is False)")
        return 0
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        print(f"hf_baseline: {args.model} has no config.json", file=sys.stderr)
        return 1
    batches = [int(b) for b in args.batches.split(",") if b]
    kwargs = {"dtype": torch.bfloat16, "local_files_only": True}
    if args.attn_impl:
        kwargs["attn_implementation"] = args.attn_impl
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, **kwargs).to("cuda").eval()
    if args.experts_impl:
        model.set_experts_implementation(args.experts_impl)
    load_s = time.perf_counter() - t0
    cfg = model.config
    vocab = cfg.vocab_size
    report = {
        "model": os.path.abspath(args.model), "device": torch.cuda.get_device_name(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "architecture": (cfg.architectures or ["?"])[0], "layers": cfg.num_hidden_layers,
        "experts_implementation": getattr(cfg, "_experts_implementation", None),
        "attn_implementation": getattr(cfg, "_attn_implementation", None),
        "context": args.context, "steps": args.steps, "load_s": load_s, "rows": []}
    print(f"{report['architecture']} ({cfg.num_hidden_layers} layers) from {args.model} on "
          f"{report['device']}: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"experts {report['experts_implementation']}, attention "
          f"{report['attn_implementation']}; loaded in {load_s:.1f} s")
    gen = torch.Generator().manual_seed(args.seed)
    run_batch(model, vocab, 1, 16, 2, 1, gen)  # warm-up: kernels, cuBLAS handles, allocator
    print(f"{'batch':>6} {'prefill ms':>11} {'step ms':>9} {'p90 ms':>9} {'tok/s':>10}")
    for b in batches:
        r = run_batch(model, vocab, b, args.context, args.steps, args.warmup, gen)
        report["rows"].append(r)
        print(f"{b:>6} {r['prefill_ms']:>11.1f} {r['step_ms_median']:>9.3f} "
              f"{r['step_ms_p90']:>9.3f} {r['tok_s']:>10.1f}")
    print(json.dumps(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
